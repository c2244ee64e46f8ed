"""The client side of ``opencm connect`` and ``opencm status`` through the daemon, without click.

Shared by the click commands (:mod:`opencm.cli.session_cmd`) and the lean entry point
(:mod:`opencm.cli.lean`), which runs the scriptable forms (``connect … --unattended``,
``status [--json]``) without importing click at all. What is imported here is only the socket
protocol and, to find the credentials a profile needs, the profile model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opencm.session.protocol import Client, check

if TYPE_CHECKING:
    from opencm.links.api import Credentials
    from opencm.profile.model import ServiceProfile

EXIT_CANCELLED = 4
#: Exit code per session outcome (``opencm.session.runner.Outcome`` values).
OUTCOME_EXIT: dict[str, int] = {
    "disconnected": 0,
    "closed": EXIT_CANCELLED,
    "cancelled": EXIT_CANCELLED,
    "failed": 1,
    "dropped": 1,
}


def say(text: str) -> None:
    """A line for people, on stderr (stdout is for ``--json``)."""
    print(text, file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False), flush=True)


def event_line(event: dict[str, Any]) -> str | None:
    """One event as the CLI prints it: the state, or the event's words (None: not shown)."""
    kind = event.get("event")
    if kind == "state":
        return str(event.get("state"))
    if kind in ("action-running", "missed"):
        return None  # the action's result line follows; "missed" only concerns watchers
    text = event.get("text")
    return str(text) if text else None


def follow_request(client: Client, request: dict[str, Any]) -> dict[str, Any]:
    """Send ``request``, print each event's words as it comes, return the final status."""
    client.send(request)
    for answer in client.lines():
        if "event" not in answer:
            result: dict[str, Any] = check(answer)["session"]
            return result
        line = event_line(answer)
        if line:
            say(f"opencm: {line}")
    raise AssertionError("unreachable: lines() raises when the daemon closes")  # pragma: no cover


def final_line(status: dict[str, Any]) -> str:
    if status["state"] == "connected":
        return (
            f"{status['service']}: connected (session {status['session']}"
            + (f", address {status['client_ip']}" if status.get("client_ip") else "")
            + ")"
        )
    if status.get("error"):
        error = status["error"]
        return (
            f"{status['service']}: {status['state']}: {error['message']} "
            f"(error {error['code']} from {error['source']})"
        )
    reason = status.get("disconnect_reason")
    return f"{status['service']}: {status['state']}" + (f" ({reason})" if reason else "")


def finish(status: dict[str, Any], as_json: bool) -> int:
    """Print the final status; the exit code of ``opencm connect``."""
    if as_json:
        emit_json(status)
    else:
        say(final_line(status))
    if status["state"] == "connected":
        return 0
    return OUTCOME_EXIT.get(str(status.get("outcome")), 1)


def credentials_json(credentials: Credentials | None) -> dict[str, str | None] | None:
    if credentials is None:
        return None
    return {
        "username": credentials.username,
        "password": credentials.password,
        "domain": credentials.domain,
    }


def _loaded(profile: ServiceProfile | Path) -> ServiceProfile:
    from opencm.profile.model import load_profile

    return load_profile(profile) if isinstance(profile, Path) else profile


def wants_inet(profile: ServiceProfile | Path, kind: str | None) -> bool:
    """Double dial with separate Internet credentials (``UseSameUserName=0``)."""
    from opencm.profile.model import ConnectionType
    from opencm.session.credentials import needs_inet_credentials

    profile = _loaded(profile)
    connection_type = ConnectionType.from_name(kind) if kind else profile.default_connection_type()
    return needs_inet_credentials(profile, connection_type)


def unattended_credentials(
    profile: ServiceProfile | Path, credentials_file: Path | None, kind: str = "logon"
) -> Credentials:
    """Credentials with nobody to ask: the file, else the saved store (else an error naming
    ``--credentials`` when the profile needs them)."""
    from opencm.session.credentials import credentials_for

    return credentials_for(
        _loaded(profile), kind=kind, credentials_file=credentials_file, ask=None
    ).credentials


def status_lines(sessions: list[dict[str, Any]]) -> list[str]:
    """``opencm status`` as a table; ended sessions with their outcome in words."""
    if not sessions:
        return ["no sessions"]
    lines = []
    for s in sessions:
        note = ""
        if s.get("prompt"):
            note = "  (asking: stay online? answer with: opencm answer stay|disconnect)"
        elif s.get("ended"):
            error = s.get("error")
            note = f"  (ended: {s.get('outcome')}"
            if s.get("outcome") in ("failed", "dropped") and error:
                note += f": {error['message']} (error {error['code']} from {error['source']})"
            elif s.get("disconnect_reason"):
                note += f": {s['disconnect_reason']}"
            note += ")"
        lines.append(
            f"{s['service']:<24} {s['state']:<13} {s['connection_type']:<7} "
            f"{s.get('client_ip') or '-':<16} {s['session']}{note}"
        )
    return lines


def show_status(socket_path: Path | None, as_json: bool) -> int:
    with Client(socket_path) as client:
        sessions = client.request({"op": "status"})["sessions"]
    if as_json:
        emit_json({"sessions": sessions})
    else:
        for line in status_lines(sessions):
            print(line, flush=True)
    return 0


__all__ = [
    "EXIT_CANCELLED",
    "OUTCOME_EXIT",
    "credentials_json",
    "emit_json",
    "event_line",
    "final_line",
    "finish",
    "follow_request",
    "say",
    "show_status",
    "status_lines",
    "unattended_credentials",
    "wants_inet",
]
