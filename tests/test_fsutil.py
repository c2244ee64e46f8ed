"""opencm.fsutil, the one crash-safe writer: all or nothing, never through a planted link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opencm.errors import RefusedError
from opencm.fsutil import atomic_write, atomic_write_all, atomic_write_folder


def test_atomic_write_replaces_the_file_keeps_its_mode_and_leaves_no_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "secret.txt"
    atomic_write(target, b"one", mode=0o600)
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["secret.txt"]


def test_a_planted_symlink_is_refused_and_what_it_points_at_is_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "profile.cms"
    link.symlink_to(victim)
    with pytest.raises(RefusedError, match="symbolic link") as refused:
        atomic_write(link, b"attack")
    assert refused.value.path == link
    assert victim.read_bytes() == b"keep" and link.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["profile.cms", "victim"]


def test_write_all_changes_nothing_when_one_file_cannot_be_staged(tmp_path: Path) -> None:
    first = tmp_path / "book.pbk"
    first.write_bytes(b"old")
    missing_folder = tmp_path / "gone" / "book.ver"
    with pytest.raises(FileNotFoundError):
        atomic_write_all([(first, b"new", None), (missing_folder, b"2", None)])
    assert first.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["book.pbk"]


def test_write_all_refuses_a_link_before_writing_anything(tmp_path: Path) -> None:
    first = tmp_path / "book.pbk"
    first.write_bytes(b"old")
    (tmp_path / "book.ver").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RefusedError):
        atomic_write_all([(first, b"new", 0o644), (tmp_path / "book.ver", b"2", 0o644)])
    assert first.read_bytes() == b"old"
    assert not (tmp_path / "elsewhere").exists()


def test_write_folder_creates_it_whole_or_not_at_all(tmp_path: Path) -> None:
    release = tmp_path / "7"
    atomic_write_folder(release, {"full.cab": b"cab", "manifest.json": b"{}"})
    assert sorted(os.listdir(release)) == ["full.cab", "manifest.json"]
    assert release.stat().st_mode & 0o777 == 0o755
    with pytest.raises(OSError):
        atomic_write_folder(release, {"full.cab": b"other"})
    assert (release / "full.cab").read_bytes() == b"cab"
    assert os.listdir(tmp_path) == ["7"]  # the staging folder is gone
