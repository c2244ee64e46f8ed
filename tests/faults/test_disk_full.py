"""A full disk: each write ends with a message naming the path and the space needed, and the data
that was there before is intact. The disk is a real tmpfs of a few KiB (mounting needs root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.conftest import make_keys, write_kit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def small_disk(where: Path, size_kib: int) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(where)],
        check=True,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Use up the disk, leaving about ``leave`` bytes."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    with contextlib.suppress(OSError), (disk / ".filler").open("wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))


def opencm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opencm", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        # SQLite's -wal/-shm side files may be left empty by a failed open; the data is the
        # database file itself, compared byte for byte.
        if p.is_file() and p.name != ".filler" and not p.name.endswith(("-wal", "-shm"))
    }


def assert_disk_full_message(result: subprocess.CompletedProcess[str], path: Path) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "no space left on the device" in result.stderr
    assert str(path) in result.stderr, result.stderr


def test_phonebook_release_and_post_on_a_full_disk(tmp_path: Path) -> None:
    # The workspace and the publish store each on a small disk of their own.
    with small_disk(tmp_path / "disk", 512) as disk, small_disk(tmp_path / "pub", 256) as pub:
        workspace = disk / "ws"
        pb = ("phonebook", "--workspace", str(workspace))
        assert opencm(*pb, "create", "WORLD").returncode == 0
        assert opencm(*pb, "keygen").returncode == 0
        pops = tmp_path / "pops.txt"
        pops.write_text(
            "".join(f"{i}, 1, 0, P{i}, 425, 555{i:04d}, 0, 0, 0, 0, ISP\n" for i in range(1, 301))
        )
        assert opencm(*pb, "import", "WORLD", str(pops)).returncode == 0
        store = pub / "store"
        assert opencm(*pb, "release", "WORLD").returncode == 0
        assert opencm(*pb, "post", "WORLD", "--to", str(store)).returncode == 0
        assert opencm(*pb, "pop", "edit", "WORLD", "3", "--name", "Changed").returncode == 0
        before = snapshot(disk)
        fill(disk)
        result = opencm(*pb, "release", "WORLD")
        assert_disk_full_message(result, disk)
        (disk / ".filler").unlink()
        assert snapshot(disk) == before  # the workspace as it was
        assert opencm(*pb, "release", "WORLD").returncode == 0
        before = snapshot(pub)
        fill(pub)
        result = opencm(*pb, "post", "WORLD", "--to", str(store))
        assert_disk_full_message(result, store)
        assert snapshot(pub) == before  # the store still serves version 1, whole


def test_installing_an_update_on_a_full_disk_keeps_the_installed_version(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    kit = write_kit(tmp_path / "kit")
    packages = []
    for version in (2, 3):
        toml = kit / "kit.toml"
        toml.write_text(
            toml.read_text().replace(f"version = {version - 1}", f"version = {version}")
        )
        (kit / "files" / "help.html").write_bytes(os.urandom(20_000).hex().encode())
        out = tmp_path / f"v{version}.cmpkg.pyz"
        built = opencm("kit", "build", str(kit), "--key", str(keys.secret_path), "--out", str(out))
        assert built.returncode == 0, built.stderr
        packages.append(out)
    with small_disk(tmp_path / "home", 400) as home:
        env = {
            **os.environ,
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
        }
        trust = ("--user", "--trust", str(keys.public_path))
        first = opencm("install", str(packages[0]), *trust, env=env)
        assert first.returncode == 0, first.stderr
        before = snapshot(home)
        fill(home, leave=8_000)
        result = opencm("install", str(packages[1]), *trust, env=env)
        assert_disk_full_message(result, home)
        assert snapshot(home) == before
