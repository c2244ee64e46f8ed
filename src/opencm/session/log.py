"""A log per profile: one JSON object per line (opencm's own format, ``docs/session.md``).

Lines record state changes (``{"kind": "state", "from", "to", "event"}``), every action run
(``{"kind": "action", "point", "index", "description", "argv", "ran", "ok", "exit_code",
"duration", "message"}``), link events and errors. As in CM the log lives in the temp folder by
default (``$TMPDIR/opencm-<user>/<SHORT>.log``); ``[opencm] LogDir`` or ``--log-dir`` moves it.
Each line is written with one ``write`` on an ``O_APPEND`` descriptor, so a crash can cut off
at most the last line.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opencm.errors import InputError


def open_log_file(path: Path) -> int:
    """Open ``path`` for appending, never through a link or in a folder someone else controls.

    The default folder is in the shared temp folder, where any user may have made
    ``opencm-root`` first (a link to /etc, say): writing through it would let them choose what
    root overwrites.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise InputError(
            f"cannot use this log folder: {error.strerror}", path=path.parent
        ) from error
    try:
        info = os.fstat(folder)
        others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if info.st_uid != os.geteuid() or (others_write and not info.st_mode & stat.S_ISVTX):
            raise InputError(
                f"the log folder belongs to uid {info.st_uid} or others may write to it; "
                f"opencm (uid {os.geteuid()}) writes logs only into a folder it owns",
                path=path.parent,
            )
        try:
            fd = os.open(
                path.name,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                0o600,
                dir_fd=folder,
            )
        except OSError as error:
            raise InputError(f"cannot open the log: {error.strerror}", path=path) from error
    finally:
        os.close(folder)
    log_info = os.fstat(fd)
    if not stat.S_ISREG(log_info.st_mode) or log_info.st_uid != os.geteuid():
        os.close(fd)
        raise InputError("the log is not a regular file of opencm's own", path=path)
    return fd


def default_log_dir() -> Path:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Path(tempfile.gettempdir()) / f"opencm-{user}"


class SessionLog:
    def __init__(
        self, path: Path | None, *, session_id: str = "", wall: Callable[[], float] | None = None
    ) -> None:
        self.path = path
        self.session_id = session_id
        self._wall = wall
        self._fd: int | None = None
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        if path is not None:
            self._fd = open_log_file(path)

    @classmethod
    def for_profile(cls, short_name: str, log_dir: Path | None, session_id: str) -> SessionLog:
        folder = log_dir or default_log_dir()
        return cls(folder / f"{short_name}.log", session_id=session_id)

    def subscribe(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Also hand every record to ``listener`` (the daemon's event stream for front ends)."""
        self._listeners.append(listener)

    def write(self, kind: str, **fields: Any) -> None:
        for listener in self._listeners:
            listener(kind, fields)
        if self._fd is None:
            return
        moment = self._wall() if self._wall else dt.datetime.now(dt.UTC).timestamp()
        record = {
            "time": dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="milliseconds"),
            "session": self.session_id,
            "kind": kind,
            **fields,
        }
        os.write(self._fd, (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["SessionLog", "default_log_dir", "read_log"]
