"""Opening, as root, files that a less trusted local user named, without being led astray.

The root daemon connects profiles that a local user names by path. Whatever it opens for that
user must be what an administrator put there, and must stay so while the daemon uses it:

- :func:`resolve_as` turns the user's path into a real path the way the kernel would for that
  user: their symbolic links are followed, and every folder on the way must be searchable *by
  them* (so an error can never tell them about a folder they cannot look into);
- :class:`CheckedWalk` then opens that real path again from ``/``, one component at a time,
  with ``O_NOFOLLOW`` relative to the folder already opened (``openat``), checking owner and
  mode of what it opened (``fstat``), never of a path that could have changed since.

A user who swaps a symbolic link after :func:`resolve_as` gains nothing: the walk follows no
links, and the folders it accepts are writable by root only, so nobody else can change what
lies below them.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from opencm.errors import RefusedError

#: Symbolic links followed while resolving one path (the kernel's limit is 40 too).
MAX_SYMLINKS = 40
_READ, _WRITE, _SEARCH = 4, 2, 1
_WALK_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Never blocks on a FIFO or device: the type is checked on what was opened.
_WALK_LEAF = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class UnsafePath(RefusedError):
    """A path the daemon will not open for this caller; the message says why."""


@dataclass(frozen=True)
class Caller:
    """Who asked: a uid and the groups it has (from the password and group databases)."""

    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def of(cls, uid: int, gid: int) -> Caller:
        groups = {gid}
        try:
            name = pwd.getpwuid(uid).pw_name
            groups.update(os.getgrouplist(name, gid))
        except (KeyError, OSError):
            pass
        return cls(uid, gid, frozenset(groups))

    def may(self, info: os.stat_result, want: int) -> bool:
        """The permission bits' answer for this caller (``want``: 4 read, 2 write, 1 search)."""
        if self.uid == 0:
            return True
        if info.st_uid == self.uid:
            bits = (info.st_mode >> 6) & 7
        elif info.st_gid in self.groups:
            bits = (info.st_mode >> 3) & 7
        else:
            bits = info.st_mode & 7
        return bits & want == want


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def resolve_as(caller: Caller, path: str) -> str:
    """``path`` made absolute and free of links and ``..``, as ``caller`` would reach it.

    Raises :class:`UnsafePath` with the same message whether something does not exist or the
    caller may not look: a folder the caller cannot search is a dead end for them.
    """
    if not path.startswith("/"):
        raise UnsafePath(f"{path}: the daemon needs an absolute path")
    unreachable = UnsafePath(f"{path}: no such file or folder that uid {caller.uid} can reach")
    pending = [part for part in path.split("/") if part][::-1]
    current: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        folder = "/" + "/".join(current)
        try:
            if not caller.may(os.stat(folder), _SEARCH):
                raise unreachable
            info = os.lstat(os.path.join(folder, part))
        except OSError as error:
            raise unreachable from error
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise UnsafePath(f"{path}: too many levels of symbolic links")
            target = os.readlink(os.path.join(folder, part))
            if target.startswith("/"):
                current = []
            pending.extend([p for p in target.split("/") if p][::-1])
            continue
        current.append(part)
    return "/" + "/".join(current)


def is_under(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(root))


class CheckedWalk:
    """Opens components under folders that only root can change; every check is on an fd.

    Folders above ``trusted_root`` must belong to root and be writable by root only (or be
    sticky like ``/tmp``: others may add entries but not replace root's). From ``trusted_root``
    down, folders and files must belong to root, be writable by root only, and be readable by
    the caller (what the daemon reads for them they could read themselves).
    """

    def __init__(self, caller: Caller, trusted_root: str) -> None:
        self.caller = caller
        self.trusted_root = trusted_root

    def _check(
        self, shown: str, info: os.stat_result, *, inside: bool, is_dir: bool, readable: bool = True
    ) -> None:
        writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if info.st_uid != 0:
            raise UnsafePath(f"{shown} belongs to uid {info.st_uid}, not root")
        if writable_by_others and (inside or not info.st_mode & stat.S_ISVTX):
            raise UnsafePath(
                f"{shown} is writable by {'others' if info.st_mode & stat.S_IWOTH else 'group '}"
                f"{'' if info.st_mode & stat.S_IWOTH else _group_name(info.st_gid)}"
                ", not by root only"
            )
        if inside and readable and not self.caller.may(info, _READ | _SEARCH if is_dir else _READ):
            raise UnsafePath(f"{shown} is not readable by uid {self.caller.uid}")

    def open_dir(self, path: str) -> int:
        """An fd of the folder ``path`` (real, absolute), every folder to it checked."""
        fd = os.open("/", _WALK_DIR)
        try:
            self._check("/", os.fstat(fd), inside=self.trusted_root == "/", is_dir=True)
            walked = "/"
            for part in [p for p in path.split("/") if p]:
                child = self.open_child_dir(fd, walked, part)
                os.close(fd)
                fd = child
                walked = os.path.join(walked, part)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_child_dir(
        self, parent: int, parent_path: str, name: str, *, readable: bool = True
    ) -> int:
        """Open folder ``name`` in ``parent``, checked; ``parent`` stays open. ``readable``:
        the caller must be able to list it too (their errors may name what is inside)."""

        def check(shown: str, info: os.stat_result) -> None:
            inside = is_under(shown, self.trusted_root)
            self._check(shown, info, inside=inside, is_dir=True, readable=readable)

        return _open_checked(parent, parent_path, name, _WALK_DIR, check)

    def open_file(
        self, parent: int, parent_path: str, name: str, max_size: int, *, readable: bool = True
    ) -> int:
        """Open the regular file ``name`` in ``parent`` for reading, checked, at most
        ``max_size`` bytes long. ``parent`` stays open. ``readable``: the caller must be able to
        read it too (its text may be quoted to them in an error)."""

        def check(shown: str, info: os.stat_result) -> None:
            if not stat.S_ISREG(info.st_mode):
                raise UnsafePath(f"{shown} is not a regular file")
            self._check(shown, info, inside=True, is_dir=False, readable=readable)
            if info.st_size > max_size:
                raise UnsafePath(f"{shown} is larger than {max_size} bytes")

        return _open_checked(parent, parent_path, name, _WALK_LEAF, check)


def _open_checked(
    parent: int,
    parent_path: str,
    name: str,
    flags: int,
    check: Callable[[str, os.stat_result], None],
) -> int:
    """Open ``name`` in the folder ``parent`` with ``flags`` and ``check`` what was opened (its
    fstat, never the path again); the fd is closed when the check refuses it."""
    shown = os.path.join(parent_path, name)
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as error:
        raise _refusal(shown, error) from error
    try:
        check(shown, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, limit: int, shown: str) -> bytes:
    """All of a regular file opened by :meth:`CheckedWalk.open_file`, at most ``limit`` bytes
    (a file that grows past its checked size while being read is refused)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(1 << 20, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise UnsafePath(f"{shown} is larger than {limit} bytes")
        chunks.append(chunk)


def _refusal(shown: str, error: OSError) -> UnsafePath:
    if error.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
        return UnsafePath(f"{shown} is a symbolic link (not followed inside a profile)")
    if error.errno == errno.ENOTDIR:
        return UnsafePath(f"{shown} is not a folder")
    return UnsafePath(f"{shown}: {error.strerror}")


__all__ = [
    "MAX_SYMLINKS",
    "Caller",
    "CheckedWalk",
    "UnsafePath",
    "is_under",
    "read_fd",
    "resolve_as",
]
