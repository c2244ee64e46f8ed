"""The caller's side of the library host (``libhost_server``): start it, send calls, restart it.

One host process serves all library calls of an engine; it forks a child per call, so a crash or
a hang in a library costs that child, never opencm. If the host itself dies (killed, out of
memory), the next call starts a new one; a call whose request never reached the host is retried
once, a call that was in flight is reported as failed (it may have run).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencm.actions import libhost_server as protocol

#: How much longer than the call's own timeout the host may take to answer before it is
#: presumed stuck and killed.
HOST_GRACE = 5.0
_SERVER = Path(protocol.__file__)


class Outcome(enum.Enum):
    RETURNED = "returned"
    ERROR = "error"
    SIGNAL = "signal"
    EXITED = "exited"
    TIMEOUT = "timeout"
    HOST_FAILED = "host-failed"


@dataclass(frozen=True)
class LibraryCall:
    """What happened to one call: the return value, or why there is none."""

    outcome: Outcome
    value: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.RETURNED and self.value is not None and self.value >= 0

    def describe(self) -> str:
        """The failure in words (for "Custom Action … failed: <this>")."""
        return self.detail


class HostDied(Exception):
    pass


class LibraryHost:
    """A long-lived ``libhost_server`` process. Thread-safe; calls are served one at a time."""

    def __init__(self, python: str = sys.executable) -> None:
        self._python = python
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        #: Hosts started so far (1 after the first call; more after restarts).
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> LibraryHost:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._reap()
        # -I -S: no user site, no environment tweaks, no site-packages; the server is stdlib only.
        self._process = subprocess.Popen(
            [self._python, "-I", "-S", str(_SERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self.starts += 1
        return self._process

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def close(self) -> None:
        """End the host (it exits when its stdin closes; killed by PID if it does not)."""
        with self._lock:
            self._reap()

    def call(self, path: Path, entry: str, command_line: str, timeout: float) -> LibraryCall:
        """Call ``entry`` of the library at ``path`` in a fresh child of the host."""
        request = {
            "path": str(path),
            "entry": entry,
            "command_line": command_line,
            "timeout": timeout,
        }
        with self._lock:
            for attempt in (1, 2):
                process = self._start()
                try:
                    self._send(process, request)
                except HostDied:
                    self._reap()
                    if attempt == 2:
                        return LibraryCall(Outcome.HOST_FAILED, detail="the library host died")
                    continue
                try:
                    answer = self._receive(process, timeout + HOST_GRACE)
                except HostDied as died:
                    self._kill_host(process)
                    return LibraryCall(Outcome.HOST_FAILED, detail=str(died))
                return _interpret(answer, timeout)
        raise AssertionError("unreachable")

    def _send(self, process: subprocess.Popen[bytes], request: dict[str, Any]) -> None:
        assert process.stdin is not None
        try:
            protocol.write_frame(process.stdin.fileno(), request)
        except (BrokenPipeError, OSError) as error:
            raise HostDied(str(error)) from error

    def _receive(self, process: subprocess.Popen[bytes], limit: float) -> Any:
        assert process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + limit
        header = self._read(fd, protocol.HEADER.size, deadline, process)
        (length,) = protocol.HEADER.unpack(header)
        return json.loads(self._read(fd, length, deadline, process))

    def _read(
        self, fd: int, count: int, deadline: float, process: subprocess.Popen[bytes]
    ) -> bytes:
        chunks: list[bytes] = []
        while count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostDied(f"the library host (PID {process.pid}) stopped answering")
            if not select.select([fd], [], [], remaining)[0]:
                continue
            chunk = os.read(fd, count)
            if not chunk:
                code = process.wait(timeout=5)
                raise HostDied(f"the library host (PID {process.pid}) died ({_status(code)})")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    def _kill_host(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.kill()
        self._reap()


def _status(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


def _interpret(answer: dict[str, Any], timeout: float) -> LibraryCall:
    status = answer.get("status")
    if status == "returned":
        value = int(answer["value"])
        return LibraryCall(Outcome.RETURNED, value, "" if value >= 0 else str(value))
    if status == "error":
        return LibraryCall(Outcome.ERROR, detail=str(answer["message"]))
    if status == "signal":
        number = int(answer["signal"])
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return LibraryCall(Outcome.SIGNAL, detail=f"crashed ({name})")
    if status == "exited":
        return LibraryCall(
            Outcome.EXITED,
            detail=f"ended its process (exit status {answer['code']}) instead of returning",
        )
    if status == "timeout":
        return LibraryCall(
            Outcome.TIMEOUT, detail=f"did not return within {timeout:g} s and was stopped"
        )
    return LibraryCall(Outcome.HOST_FAILED, detail=f"unexpected answer from the host: {answer!r}")
