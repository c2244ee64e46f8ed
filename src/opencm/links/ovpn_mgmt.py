"""OpenVPN's management protocol: parse the real-time lines, quote the commands we send.

Only what a Connection Manager needs: ``>STATE:``, ``>BYTECOUNT:``, ``>HOLD:``, ``>PASSWORD:``,
``>LOG:``, ``>FATAL:`` and the ``SUCCESS:``/``ERROR:`` answers to commands. Pure functions, so
that they are tested on recorded lines without a running OpenVPN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class State:
    """``>STATE:time,name,description,tun local ip,remote ip,remote port,...``."""

    name: str
    description: str
    local_ip: str
    remote_ip: str
    remote_port: str


@dataclass(frozen=True)
class ByteCount:
    received: int
    sent: int


@dataclass(frozen=True)
class Hold:
    #: OpenVPN's own back-off hint in seconds (0 on the first hold).
    wait: int


@dataclass(frozen=True)
class PasswordRequest:
    """``>PASSWORD:Need 'Auth' username/password`` and friends."""

    kind: str  # "Auth", "Private Key", …
    what: str  # "username/password", "password", …


@dataclass(frozen=True)
class PasswordFailed:
    """``>PASSWORD:Verification Failed: 'Auth'``: the server refused the credentials."""

    kind: str


@dataclass(frozen=True)
class Log:
    flags: str
    text: str


@dataclass(frozen=True)
class Fatal:
    text: str


@dataclass(frozen=True)
class Reply:
    """``SUCCESS: …`` or ``ERROR: …``, the answer to a command."""

    ok: bool
    text: str


@dataclass(frozen=True)
class Other:
    line: str


Event = State | ByteCount | Hold | PasswordRequest | PasswordFailed | Log | Fatal | Reply | Other

_NEED = re.compile(r"Need '([^']+)' (.+)")
_FAILED = re.compile(r"Verification Failed: '([^']+)'")


def parse_line(line: str) -> Event:
    """Turn one line from the management socket into an event."""
    line = line.rstrip("\r\n")
    if line.startswith("SUCCESS:"):
        return Reply(True, line[8:].strip())
    if line.startswith("ERROR:"):
        return Reply(False, line[6:].strip())
    if not line.startswith(">") or ":" not in line:
        return Other(line)
    tag, _, body = line[1:].partition(":")
    if tag == "STATE":
        fields = body.split(",")
        fields += [""] * (6 - len(fields))
        return State(fields[1], fields[2], fields[3], fields[4], fields[5])
    if tag == "BYTECOUNT":
        received, _, sent = body.partition(",")
        if received.isdigit() and sent.isdigit():
            return ByteCount(int(received), int(sent))
    elif tag == "HOLD":
        wait = body.rsplit(":", 1)[-1].strip()
        return Hold(int(wait) if wait.isdigit() else 0)
    elif tag == "PASSWORD":
        if match := _FAILED.match(body):
            return PasswordFailed(match.group(1))
        if match := _NEED.match(body):
            return PasswordRequest(match.group(1), match.group(2))
    elif tag == "LOG":
        parts = body.split(",", 2)
        if len(parts) == 3:
            return Log(parts[1], parts[2])
    elif tag == "FATAL":
        return Fatal(body)
    return Other(line)


def quote(value: str) -> str:
    """A value for ``username``/``password`` commands: double-quoted, ``\\`` and ``"`` escaped.

    Line breaks cannot be sent at all (they would end the command), so they are refused.
    """
    if "\n" in value or "\r" in value:
        raise ValueError("a management-interface value cannot contain a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: Why a running client restarted or exited (the description of RECONNECTING/EXITING states, or
#: the ``signal`` a --down script sees) and what that means for the user.
RESTART_CAUSES = {
    "ping-restart": "no packet from the server within the ping-restart time (server gone?)",
    "ping-exit": "no packet from the server within the ping-exit time (server gone?)",
    "connection-reset": "the server reset the TCP connection",
    "server-pushed-connection-reset": "the server announced that it is shutting down",
    "server-pushed-halt": "the server told the client to stop",
    "tls-error": "the TLS handshake or renegotiation failed",
    "auth-failure": "the server refused the credentials",
    "SIGTERM": "openvpn was told to stop",
    "SIGHUP": "openvpn was told to restart",
    "SIGUSR1": "openvpn restarted the connection",
}

#: Causes that mean the other end went away (as opposed to a local or configuration problem).
PEER_CAUSES = frozenset(
    {"ping-restart", "ping-exit", "connection-reset", "server-pushed-connection-reset",
     "server-pushed-halt"}
)  # fmt: skip

_TUN_OPENED = re.compile(r"TUN/TAP device (\S+) opened")
_PUSH_GATEWAY = re.compile(r"route-gateway ([0-9.]+)")
_PUSH_IFCONFIG = re.compile(r"ifconfig ([0-9.]+) ([0-9.]+)")


def tun_device(log_text: str) -> str | None:
    """The tunnel interface name from ``TUN/TAP device tun0 opened``."""
    match = _TUN_OPENED.search(log_text)
    return match.group(1) if match else None


def pushed_gateway(log_text: str) -> str | None:
    """The server's tunnel address from a logged ``PUSH_REPLY`` (route-gateway, or p2p peer)."""
    if "PUSH_REPLY" not in log_text:
        return None
    if match := _PUSH_GATEWAY.search(log_text):
        return match.group(1)
    match = _PUSH_IFCONFIG.search(log_text)
    if match and not match.group(2).startswith("255."):
        return match.group(2)  # net30/p2p: "ifconfig local remote"
    return None
