"""Releases: delta property, cab contents, signatures, and the client apply API."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencm.errors import InputError, RefusedError
from opencm.phonebook.cabinet import read_cab
from opencm.phonebook.delta import build_delta, format_delta, parse_delta
from opencm.phonebook.pbk import Pop, format_pbk
from opencm.phonebook.pbr import format_pbr
from opencm.phonebook.release import (
    Snapshot,
    build_release,
    delta_bases,
    full_cab,
    verify_release_file,
)
from opencm.phonebook.update import apply_update, installed_version
from opencm.phonebook.versionfile import first_integer
from tests.phonebook.conftest import Keys, need_tool
from tests.phonebook.strategies import books, region_names


def snapshot(version: int, pops: list[Pop], regions: list[str]) -> Snapshot:
    return Snapshot(version, format_pbk(pops), format_pbr(regions), len(pops))


def install_full(directory: Path, book: str, snap: Snapshot) -> None:
    apply_update(
        directory, book, full_cab(book, snap), kind="full", base=None, version=snap.version
    )


def test_window_is_the_five_previous_versions() -> None:
    assert list(delta_bases(1)) == []
    assert list(delta_bases(3)) == [1, 2]
    assert list(delta_bases(10)) == [5, 6, 7, 8, 9]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=st.lists(st.tuples(books(25), region_names), min_size=2, max_size=8))
def test_delta_from_any_base_in_the_window_gives_the_full_book(
    history: list[tuple[list[Pop], list[str]]], keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> None:
    snaps = {v: snapshot(v, pops, regions) for v, (pops, regions) in enumerate(history, start=1)}
    latest = snaps[len(history)]
    files = build_release("WORLD", latest, snaps, keys.secret)
    full = read_cab(files["full.cab"])
    assert set(files) == {"full.cab", "full.cab.minisig"} | {
        f"delta-{b}.cab{s}" for b in delta_bases(latest.version) for s in ("", ".minisig")
    }
    for base in delta_bases(latest.version):
        directory = tmp_path_factory.mktemp("svc")
        install_full(directory, "WORLD", snaps[base])
        assert installed_version(directory, "WORLD") == base
        new = apply_update(
            directory,
            "WORLD",
            files[f"delta-{base}.cab"],
            kind="delta",
            base=base,
            version=latest.version,
        )
        assert new == latest.version
        for suffix in (".pbk", ".pbr", ".ver"):
            assert (directory / f"WORLD{suffix}").read_bytes() == full[f"WORLD{suffix}"]


def test_delta_file_marks_added_changed_deleted() -> None:
    old = [Pop(1, 1, 0, "A", "1", "1"), Pop(2, 1, 0, "B", "2", "2"), Pop(3, 1, 0, "C", "3", "3")]
    new = [Pop(1, 1, 0, "A", "1", "1"), Pop(3, 1, 0, "C2", "3", "3"), Pop(4, 1, 0, "D", "4", "4")]
    delta = build_delta(
        "W", 1, 2, format_pbk(old), format_pbr(["X"]), format_pbk(new), format_pbr(["X", "Y"])
    )
    text = format_delta(delta).decode()
    assert (
        "\r\n-,2\r\n*,3,1,0,C2,3,3,0,0,0,0,\r\n+,4,1,0,D,4,4,0,0,0,0,\r\nR,2\r\nX\r\nY\r\n" in text
    )
    again = parse_delta(format_delta(delta))
    assert (again.deleted, again.added, again.changed, again.regions) == (
        [2],
        {4: "4,1,0,D,4,4,0,0,0,0,"},
        {3: "3,1,0,C2,3,3,0,0,0,0,"},
        ["X", "Y"],
    )


def test_release_cabs_hold_the_book_and_pass_the_real_tools(tmp_path: Path, keys: Keys) -> None:
    cabextract = need_tool("cabextract")
    gcab = need_tool("gcab")
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "5550001")], ["North"])
    v2 = snapshot(2, [Pop(1, 1, 1, "A", "1", "5550001"), Pop(2, 1, 0, "B", "", "1")], ["North"])
    files = build_release("WORLD", v2, {1: v1}, keys.secret)
    assert set(read_cab(files["full.cab"])) == {"WORLD.pbk", "WORLD.pbr", "WORLD.ver"}
    assert set(read_cab(files["delta-1.cab"])) == {"WORLD.dlt", "WORLD.ver"}
    assert first_integer(read_cab(files["full.cab"])["WORLD.ver"]) == 2
    for name in ("full.cab", "delta-1.cab"):
        (tmp_path / name).write_bytes(files[name])
        subprocess.run([cabextract, "-t", str(tmp_path / name)], check=True, capture_output=True)
        subprocess.run([gcab, "-l", str(tmp_path / name)], check=True, capture_output=True)


# -- signatures --------------------------------------------------------------------------------


@pytest.fixture
def two_releases(keys: Keys) -> tuple[dict[str, bytes], dict[str, bytes]]:
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "5550001")], [])
    v2 = snapshot(2, [Pop(1, 1, 0, "A", "1", "5550002")], [])
    return build_release("WORLD", v1, {}, keys.secret), build_release(
        "WORLD", v2, {1: v1}, keys.secret
    )


def test_genuine_release_verifies(keys: Keys, two_releases) -> None:  # type: ignore[no-untyped-def]
    _, r2 = two_releases
    signed = verify_release_file(
        r2["delta-1.cab"],
        r2["delta-1.cab.minisig"],
        keys.public,
        "WORLD",
        "delta",
        version=2,
        base=1,
        installed=1,
    )
    assert signed.get("kind") == "delta" and signed.get("base") == "1"


def test_tampered_cab_is_refused(keys: Keys, two_releases) -> None:  # type: ignore[no-untyped-def]
    _, r2 = two_releases
    cab = bytearray(r2["full.cab"])
    cab[-3] ^= 1
    with pytest.raises(RefusedError, match="signature check failed"):
        verify_release_file(bytes(cab), r2["full.cab.minisig"], keys.public, "WORLD", "full")


def test_wrong_key_is_refused(other_keys: Keys, two_releases) -> None:  # type: ignore[no-untyped-def]
    _, r2 = two_releases
    with pytest.raises(RefusedError, match="signature check failed"):
        verify_release_file(
            r2["full.cab"], r2["full.cab.minisig"], other_keys.public, "WORLD", "full"
        )


def test_replayed_older_release_is_refused(keys: Keys, two_releases) -> None:  # type: ignore[no-untyped-def]
    r1, _ = two_releases
    with pytest.raises(RefusedError, match="not newer than the installed version 2"):
        verify_release_file(
            r1["full.cab"], r1["full.cab.minisig"], keys.public, "WORLD", "full", installed=2
        )
    with pytest.raises(RefusedError, match="version=1, expected version=2"):
        verify_release_file(
            r1["full.cab"], r1["full.cab.minisig"], keys.public, "WORLD", "full", version=2
        )


def test_cab_for_another_book_or_kind_is_refused(keys: Keys, two_releases) -> None:  # type: ignore[no-untyped-def]
    _, r2 = two_releases
    with pytest.raises(RefusedError, match="book=WORLD, expected book=OTHER"):
        verify_release_file(r2["full.cab"], r2["full.cab.minisig"], keys.public, "OTHER", "full")
    with pytest.raises(RefusedError, match="kind=full, expected kind=delta"):
        verify_release_file(r2["full.cab"], r2["full.cab.minisig"], keys.public, "WORLD", "delta")


# -- client apply --------------------------------------------------------------------------------


def test_delta_for_another_base_is_refused_and_book_kept(tmp_path: Path, keys: Keys) -> None:
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "1")], [])
    v2 = snapshot(2, [Pop(1, 1, 0, "B", "1", "1")], [])
    v3 = snapshot(3, [Pop(1, 1, 0, "C", "1", "1")], [])
    install_full(tmp_path, "WORLD", v1)
    files = build_release("WORLD", v3, {1: v1, 2: v2}, keys.secret)
    before = (tmp_path / "WORLD.pbk").read_bytes()
    with pytest.raises(RefusedError, match="from version 2, but version 1 is installed"):
        apply_update(tmp_path, "WORLD", files["delta-2.cab"], kind="delta", base=2, version=3)
    assert (tmp_path / "WORLD.pbk").read_bytes() == before
    assert apply_update(tmp_path, "WORLD", files["delta-1.cab"], kind="delta", base=1, version=3)
    assert installed_version(tmp_path, "WORLD") == 3


def test_files_are_matched_case_insensitively(tmp_path: Path, keys: Keys) -> None:
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "1")], [])
    v2 = snapshot(2, [Pop(1, 1, 0, "B", "1", "1")], [])
    for suffix, data in ((".PBK", v1.pbk), (".Pbr", v1.pbr), (".ver", b"1\r\n")):
        (tmp_path / f"World{suffix}").write_bytes(data)
    assert installed_version(tmp_path, "WORLD") == 1
    files = build_release("WORLD", v2, {1: v1}, keys.secret)
    apply_update(tmp_path, "WORLD", files["delta-1.cab"], kind="delta", base=1, version=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["World.PBK", "World.Pbr", "World.ver"]
    assert (tmp_path / "World.PBK").read_bytes() == v2.pbk


def test_modified_installed_book_refuses_delta(tmp_path: Path, keys: Keys) -> None:
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "1")], [])
    v2 = snapshot(2, [Pop(1, 1, 0, "B", "1", "1")], [])
    install_full(tmp_path, "WORLD", v1)
    (tmp_path / "WORLD.pbk").write_bytes(v1.pbk + b"9,1,0,X,1,1,0,0,0,0,\r\n")
    files = build_release("WORLD", v2, {1: v1}, keys.secret)
    with pytest.raises(RefusedError, match="full update is needed"):
        apply_update(tmp_path, "WORLD", files["delta-1.cab"], kind="delta", base=1, version=2)


def test_cab_with_wrong_version_or_kind_is_refused(tmp_path: Path) -> None:
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "1")], [])
    with pytest.raises(RefusedError, match="version 1, expected 2"):
        apply_update(tmp_path, "WORLD", full_cab("WORLD", v1), kind="full", base=None, version=2)
    with pytest.raises(InputError, match="kind must be"):
        apply_update(tmp_path, "WORLD", full_cab("WORLD", v1), kind="half", base=None, version=1)
    assert not list(tmp_path.iterdir())


def test_minisign_tool_accepts_release_signatures(tmp_path: Path, keys: Keys) -> None:
    minisign = need_tool("minisign")
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "1")], [])
    files = build_release("WORLD", v1, {}, keys.secret)
    (tmp_path / "full.cab").write_bytes(files["full.cab"])
    (tmp_path / "full.cab.minisig").write_bytes(files["full.cab.minisig"])
    (tmp_path / "pba.pub").write_bytes(keys.public_bytes)
    result = subprocess.run(
        [minisign, "-V", "-p", str(tmp_path / "pba.pub"), "-m", str(tmp_path / "full.cab")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "opencm-phonebook book=WORLD version=1 kind=full" in result.stdout


def test_older_full_book_is_refused_same_version_reinstalls(tmp_path: Path) -> None:
    v1 = snapshot(1, [Pop(1, 1, 0, "A", "1", "1")], [])
    v2 = snapshot(2, [Pop(1, 1, 0, "B", "1", "1")], [])
    install_full(tmp_path, "WORLD", v2)
    with pytest.raises(RefusedError, match="version 2 is installed; refusing to go back"):
        install_full(tmp_path, "WORLD", v1)
    (tmp_path / "WORLD.pbk").write_bytes(b"damaged")
    install_full(tmp_path, "WORLD", v2)
    assert (tmp_path / "WORLD.pbk").read_bytes() == v2.pbk
