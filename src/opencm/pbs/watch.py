"""Notice new releases in the publish store: inotify where the kernel offers it, polling otherwise.

A release goes live when ``STORE/<BOOK>/CURRENT`` is replaced by rename
(:mod:`opencm.phonebook.store`), so watching the store folder (books appearing or going) and each
book folder (``CURRENT`` moved in or removed) is enough: an idle server then does no work at all,
however many books it serves. The standard library has no inotify, so this calls libc's
``inotify_*`` through ctypes.

Polling remains for what inotify cannot see: a store on NFS or SMB changed by another machine
(``opencm pbs serve --poll``), a kernel without inotify, or a watch limit reached.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Iterator
from pathlib import Path

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_STORE_MASK = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ONLYDIR
_BOOK_MASK = _STORE_MASK | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF
_EVENT = struct.Struct("iIII")


class WatchUnavailable(OSError):
    """inotify cannot be used here (no support, or the watch limit): poll instead."""


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    libc = ctypes.CDLL(name, use_errno=True)
    for function in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
        if not hasattr(libc, function):
            raise WatchUnavailable(errno.ENOSYS, f"libc has no {function}")
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return libc


class StoreWatch:
    """An inotify descriptor watching a store folder and its book folders.

    ``fileno()`` becomes readable when something changed; :meth:`changed` then drains the
    events and says whether the catalog should be refreshed.
    """

    def __init__(self, store: Path) -> None:
        self.store = store
        self._libc = _libc()
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise WatchUnavailable(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd
        self._books: dict[int, str] = {}
        self._store_wd = self._add(store, _STORE_MASK)
        for entry in self._book_folders():
            self._add_book(entry)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _book_folders(self) -> Iterator[str]:
        with os.scandir(self.store) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                    yield entry.name

    def _add(self, path: Path, mask: int) -> int:
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise WatchUnavailable(code, f"inotify_add_watch {path}: {os.strerror(code)}")
        return wd

    def _add_book(self, name: str) -> None:
        try:
            self._books[self._add(self.store / name, _BOOK_MASK)] = name
        except WatchUnavailable as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR):
                return  # gone again already
            raise

    def changed(self) -> bool:
        """Drain pending events; True when a book appeared, went, or got a new ``CURRENT``."""
        relevant = False
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return relevant
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                name_bytes = data[offset + _EVENT.size : offset + _EVENT.size + length]
                offset += _EVENT.size + length
                name = name_bytes.rstrip(b"\0").decode("utf-8", "replace")
                if mask & IN_Q_OVERFLOW:
                    relevant = True
                elif wd == self._store_wd:
                    if mask & (IN_CREATE | IN_MOVED_TO) and not name.startswith("."):
                        self._add_book(name)
                    relevant = True
                elif name == "CURRENT" or mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    relevant = True
