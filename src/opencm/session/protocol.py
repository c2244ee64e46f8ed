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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencm.errors import EXIT_BAD_INPUT, EXIT_PROBLEMS, OpencmError
from opencm.paths import runtime_dir, state_home, system_state_dir
from opencm.profile.usersettings import CHOICE_KEYS

PROTOCOL_VERSION = 1
#: One request or answer line may not be longer than this (bytes).
MAX_LINE = 64 * 1024
#: Arrays and objects may nest this deep in one line; the deepest request needs 2.
MAX_DEPTH = 16
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


def _nesting(line: bytes) -> int:
    """How deep ``[``/``{`` nest in a JSON text, strings skipped (json.loads recurses per level
    and a line of 60,000 ``[`` would end in RecursionError)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes", code=EXIT_BAD_INPUT)
    if _nesting(line) > MAX_DEPTH:
        raise ProtocolError(
            f"not a request: arrays and objects nest deeper than {MAX_DEPTH}", code=EXIT_BAD_INPUT
        )
    try:
        message = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"not a JSON line: {error}", code=EXIT_BAD_INPUT) from error
    if not isinstance(message, dict):
        raise ProtocolError("expected a JSON object", code=EXIT_BAD_INPUT)
    return message


@dataclass(frozen=True)
class Field:
    """One member of a request: its JSON type, whether it must be there, what it may hold."""

    kind: type
    required: bool = False
    nullable: bool = True
    choices: frozenset[str] | None = None
    max_length: int = 4096
    members: Mapping[str, Field] | None = None

    def check(self, op: str, name: str, value: Any) -> None:
        where = f"{op}: {name}"
        if value is None:
            if self.required or not self.nullable:
                raise _bad(f"{where} is required")
            return
        # bool is an int in Python; JSON keeps them apart, so does the check.
        if type(value) is not self.kind:
            raise _bad(f"{where} must be {_JSON_NAMES[self.kind]}, not {_json_name(value)}")
        if isinstance(value, str):
            if len(value) > self.max_length:
                raise _bad(f"{where} is longer than {self.max_length} characters")
            if "\0" in value:
                raise _bad(f"{where} contains a NUL character")
            if self.choices is not None and value not in self.choices:
                raise _bad(f"{where} must be one of {', '.join(sorted(self.choices))}")
        if isinstance(value, dict) and self.members is not None:
            check_members(f"{op}: {name}", value, self.members)


_JSON_NAMES: dict[type, str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    dict: "an object",
    list: "an array",
}


def _json_name(value: Any) -> str:
    return _JSON_NAMES.get(type(value), "a number")


def _bad(message: str) -> ProtocolError:
    return ProtocolError(message, code=EXIT_BAD_INPUT)


def check_members(what: str, message: Mapping[str, Any], schema: Mapping[str, Field]) -> None:
    unknown = sorted(set(message) - set(schema))
    if unknown:
        shown = ", ".join(repr(name[:64]) for name in unknown[:5])
        expected = f"expected: {', '.join(sorted(schema))}" if schema else "it takes none"
        raise _bad(f"{what}: unknown member {shown} ({expected})")
    for name, field in schema.items():
        field.check(what, name, message.get(name))


_CREDENTIALS = {
    "username": Field(str, max_length=1024),
    "password": Field(str, max_length=1024),
    "domain": Field(str, max_length=1024),
}
#: A user's own values of a profile installed for all users (opencm.profile.usersettings):
#: only the keys a user sets, one line each.
_USER_SETTINGS = {key: Field(str, max_length=256) for key in CHOICE_KEYS}
_TARGET = {"session": Field(str, max_length=64), "profile": Field(str)}
_OPEN = {
    "profile": Field(str),
    "type": Field(str, choices=frozenset({"direct", "dialup", "double"})),
    "entry": Field(str, max_length=256),
    "unattended": Field(bool),
    "logon": Field(bool),
    "wait": Field(bool),
    "credentials": Field(dict, members=_CREDENTIALS),
    "inet_credentials": Field(dict, members=_CREDENTIALS),
    "user_settings": Field(dict, members=_USER_SETTINGS),
}
#: Every request the daemon understands and what each member must be (docs/daemon-protocol.md).
REQUESTS: dict[str, dict[str, Field]] = {
    "hello": {},
    "status": {},
    "watch": {**_TARGET, "since": Field(int)},
    "open": _OPEN,
    "connect": {**_OPEN, "session": Field(str, max_length=64)},
    "dismiss": _TARGET,
    "cancel": {**_TARGET, "wait": Field(bool)},
    "disconnect": {**_TARGET, "wait": Field(bool)},
    "answer": {
        **_TARGET,
        "choice": Field(
            str, required=True, choices=frozenset({"stay-online", "disconnect-now", "timed-out"})
        ),
    },
}


def validate_request(message: Mapping[str, Any]) -> dict[str, Any]:
    """Check a decoded request against :data:`REQUESTS`; raise :class:`ProtocolError` (exit
    code 2) naming the member that is wrong. Returns the request without its ``op``."""
    op = message.get("op")
    if not isinstance(op, str):
        raise _bad('a request needs "op": a string')
    schema = REQUESTS.get(op)
    if schema is None:
        raise _bad(f"unknown op {op[:64]!r} (expected: {', '.join(sorted(REQUESTS))})")
    body = {name: value for name, value in message.items() if name != "op"}
    check_members(op, body, schema)
    if op == "open" and not body.get("profile"):
        raise _bad("open: profile is required")
    if op == "connect" and not body.get("profile") and not body.get("session"):
        raise _bad("connect: profile (or the session opened at its logon screen) is required")
    return body


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
    "REQUESTS",
    "Client",
    "Field",
    "NoDaemon",
    "ProtocolError",
    "check",
    "decode",
    "default_socket_path",
    "default_state_dir",
    "encode",
    "peer_credentials",
    "validate_request",
]
