"""A kit names only a phone book the PBA can create and the PBS serves: one name rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencm.phonebook.store import publish_release
from tests.kit.conftest import run_cli


def _name_the_book(kit_dir: Path, name: str) -> None:
    spec = kit_dir / "kit.toml"
    text = spec.read_text()
    start = text.index("[phonebook]\nname = ")
    end = text.index("\n", start + len("[phonebook]\n"))
    spec.write_text(text[:start] + f'[phonebook]\nname = "{name}"' + text[end:])


@pytest.mark.parametrize("name", ["CON-TOSO", "A-1", "A B", "12345678", "NINECHARS", "BÜCH"])
def test_the_kit_rejects_what_the_pba_rejects(
    kit_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    pba, _, pba_err = run_cli(
        capsys, "phonebook", "--workspace", str(tmp_path / "ws"), "create", name
    )
    assert pba == 2, pba_err
    _name_the_book(kit_dir, name)
    kit, _, kit_err = run_cli(capsys, "kit", "build", str(kit_dir))
    assert kit == 2, kit_err
    assert "phonebook.name" in kit_err and repr(name) in kit_err
    assert not (kit_dir / "build").exists()
    # The PBS's store refuses the same name, so no release could ever be served under it.
    with pytest.raises(Exception, match="phone book name"):
        publish_release(tmp_path / "store", name, 1, {})


def test_a_name_all_three_accept(
    kit_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys, "phonebook", "--workspace", str(tmp_path / "ws"), "create", "CON_1"
    )
    assert code == 0, err
    _name_the_book(kit_dir, "CON_1")
    for suffix in (".pbk", ".pbr", ".ver"):
        (kit_dir / "pb" / f"CONTOSO{suffix}").rename(kit_dir / "pb" / f"CON_1{suffix}")
    code, _, err = run_cli(capsys, "kit", "build", str(kit_dir))
    assert code == 0, err
