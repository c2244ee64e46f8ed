"""Crash-safe file writes: nothing is ever left half-written. The one home of that mechanism.

Every file opencm writes goes through this module. The data go to a temporary file in the
target's folder, are flushed to disk (fsync), and the file is renamed over the target; then the
folder is flushed, so the rename itself survives a power cut. A reader sees the old file or the
new one, never a mix.

- :func:`atomic_write`: one file.
- :func:`atomic_write_all`: several files that belong together (an installed profile, a phone
  book and its version file): all are staged first, so a full disk leaves every target as it
  was; then they are renamed in the order given (the one readers check last goes last).
- :func:`atomic_write_folder`: a new folder with its files, renamed into place whole.

A symbolic link where a file is to be written is refused (:class:`~opencm.errors.RefusedError`),
never written through nor silently replaced: someone planted it, and the user must see it. Running
out of space (or quota) is a :class:`~opencm.errors.DiskFullError` naming the path and the space
the write needed, with the old files left as they were.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from opencm.errors import DiskFullError, RefusedError, is_disk_full

#: Permission bits of a new file when the caller gives none and no file is there yet.
DEFAULT_MODE = 0o644


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename, fsync of the folder).

    The new file keeps the old file's permission bits unless ``mode`` is given.
    """
    atomic_write_all([(Path(path), data, mode)])


def atomic_write_all(writes: Sequence[tuple[Path, bytes, int | None]]) -> None:
    """Write every ``(path, data, mode)`` aside and flush it, then rename each into place in order.

    A failure while staging (a full disk) leaves every target untouched; only the renames, which
    need no space, change them. ``mode`` None keeps an existing file's permission bits.
    """
    targets = [_refuse_symlink(Path(path)) for path, _, _ in writes]
    staged: list[tuple[str, Path]] = []
    try:
        for target, (_, data, mode) in zip(targets, writes, strict=True):
            try:
                staged.append((_stage(target, data, mode), target))
            except OSError as error:
                if is_disk_full(error):
                    needed = sum(len(data) for _, data, _ in writes)
                    raise DiskFullError(target, needed) from error
                raise
        for temporary, target in staged:
            os.replace(temporary, target)
    finally:
        for temporary, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    for folder in dict.fromkeys(_folder(target) for target in targets):
        fsync_dir(folder)


def atomic_write_folder(target: Path, files: Mapping[str, bytes], *, mode: int = 0o755) -> None:
    """Create the folder ``target`` holding ``files`` (name → data), all at once.

    The files are written into a hidden private folder beside ``target``, each flushed, then
    that folder is flushed and renamed to ``target``, and the parent flushed. ``target`` must
    not exist yet.
    """
    import shutil
    import tempfile

    parent = _folder(target)
    incoming = Path(tempfile.mkdtemp(prefix=f".incoming-{target.name}-", dir=parent))
    try:
        for name, data in files.items():
            with open(incoming / name, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(incoming, mode)
        fsync_dir(incoming)
        os.rename(incoming, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            shutil.rmtree(incoming)
        if is_disk_full(error):
            raise DiskFullError(parent, sum(len(data) for data in files.values())) from error
        raise
    fsync_dir(parent)


def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _refuse_symlink(target: Path) -> Path:
    if target.is_symlink():
        raise RefusedError(
            "is a symbolic link: opencm writes only regular files, never through or over a link",
            path=target,
        )
    return target


def _stage(target: Path, data: bytes, mode: int | None) -> str:
    """Write ``data`` to a new temporary file beside ``target``, flushed; return its name."""
    if mode is None:
        try:
            mode = os.lstat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = DEFAULT_MODE
    # Imported here: tempfile pulls in random, shutil and the compression modules, a
    # cost every ``opencm`` start would pay though most commands never write a file.
    import tempfile

    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=_folder(target))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(name, mode)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    return name
