"""The daemon's wire protocol: JSON lines over a Unix socket.

opencm's own protocol, described in docs/daemon-protocol.md.

Each request is one JSON object on one line; the daemon answers with one or more lines. The last
line of an answer has ``"ok"``; lines before it are events (``"event": ...``). Who may do what is
decided from the socket's peer credentials (``SO_PEERCRED``), never from anything in a request.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from opencm.errors import EXIT_PROBLEMS, OpencmError
from opencm.paths import runtime_dir, state_home, system_state_dir

PROTOCOL_VERSION = 1
#: One request or answer line may not be longer than this (bytes).
MAX_LINE = 64 * 1024
#: How long an ended session stays in ``status`` with its outcome, unless dismissed (seconds).
KEEP_ENDED = 600.0
#: Exit code when no daemon answers on the socket.
EXIT_NO_DAEMON = 5


class ProtocolError(OpencmError):
    """A malformed line, or the daemon refused a request."""

    def __init__(self, message: str, *, code: int = EXIT_PROBLEMS) -> None:
        super().__init__(message)
        self.exit_code = code


class NoDaemon(OpencmError):
    exit_code = EXIT_NO_DAEMON


def default_socket_path() -> Path:
    """``$OPENCM_SOCKET``, else ``/run/opencm/opencm.sock`` for root, else the runtime dir."""
    override = os.environ.get("OPENCM_SOCKET")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/run/opencm/opencm.sock")
    return runtime_dir() / "opencm" / "opencm.sock"


def default_state_dir() -> Path:
    """The journal's home: ``$OPENCM_SYSTEM_STATE_DIR`` (/var/lib/opencm) for root, else the
    user's ``$XDG_STATE_HOME/opencm``."""
    return system_state_dir() if os.geteuid() == 0 else state_home() / "opencm"


def encode(message: Mapping[str, Any]) -> bytes:
    return (json.dumps(message, ensure_ascii=False, default=str) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    try:
        message = json.loads(line)
    except ValueError as error:
        raise ProtocolError(f"not a JSON line: {error}") from error
    if not isinstance(message, dict):
        raise ProtocolError("expected a JSON object")
    return message


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class Client:
    """A blocking client for the CLI: one request, its events, its final answer."""

    def __init__(self, path: Path | None = None, *, timeout: float | None = 10.0) -> None:
        self.path = path or default_socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as error:
            self.sock.close()
            raise NoDaemon(
                f"no opencm daemon answers at {self.path} (start it with 'opencm daemon' or "
                "'systemctl start opencm', or use --foreground)"
            ) from error
        except PermissionError as error:
            self.sock.close()
            raise NoDaemon(f"cannot reach the daemon at {self.path}: permission denied") from error
        self._buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, message: Mapping[str, Any]) -> None:
        self.sock.sendall(encode(message))

    def lines(self) -> Iterator[dict[str, Any]]:
        while True:
            while b"\n" not in self._buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ProtocolError("the daemon closed the connection")
                self._buffer += chunk
                if len(self._buffer) > MAX_LINE and b"\n" not in self._buffer:
                    raise ProtocolError("the daemon sent an over-long line")
            line, self._buffer = self._buffer.split(b"\n", 1)
            yield decode(line)

    def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request and return its final answer; raise for an error answer."""
        self.send(message)
        for answer in self.lines():
            if "event" not in answer:
                return check(answer)
        raise ProtocolError("no answer")  # pragma: no cover - lines() raises first


def check(answer: dict[str, Any]) -> dict[str, Any]:
    if not answer.get("ok"):
        raise ProtocolError(
            str(answer.get("error", "the daemon refused")),
            code=int(answer.get("exit_code", EXIT_PROBLEMS)),
        )
    return answer


__all__ = [
    "EXIT_NO_DAEMON",
    "KEEP_ENDED",
    "MAX_LINE",
    "PROTOCOL_VERSION",
    "Client",
    "NoDaemon",
    "ProtocolError",
    "check",
    "decode",
    "default_socket_path",
    "default_state_dir",
    "encode",
    "peer_credentials",
]
