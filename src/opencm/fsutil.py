"""Crash-safe file writes: nothing is ever left half-written.

Every file opencm writes for a user goes through :func:`atomic_write`: the data goes to a
temporary file in the same directory, is flushed to disk, and is renamed over the target, so a
reader (or a power cut) sees either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from opencm.errors import DiskFullError, is_disk_full


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename).

    The new file keeps the old file's permission bits unless ``mode`` is given.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    # Imported here: tempfile pulls in random, shutil and the compression modules (~5 ms), a
    # cost every ``opencm`` start would pay though most commands never write a file.
    import tempfile

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if is_disk_full(error):
            raise DiskFullError(target, len(data)) from error
        raise
    fsync_dir(directory)
