"""A session's status as clients see it: a frozen snapshot, and the JSON view built from it.

The daemon answers ``status`` and ``watch`` with :func:`status_view` of each session's
:class:`SessionSnapshot`; ``opencm connect --foreground`` prints the same. The fields are
documented in ``docs/daemon-protocol.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opencm.profile.model import ConnectionType
from opencm.session.machine import State


@dataclass(frozen=True)
class LinkView:
    stage: str  # "dial" or "tunnel"
    entry: str
    interface: str | None
    client_ip: str | None
    server_ip: str | None
    tunnel_server: str | None


@dataclass(frozen=True)
class ErrorView:
    code: int
    source: str
    message: str


@dataclass(frozen=True)
class SessionSnapshot:
    """Everything a status shows, taken at one moment."""

    session: str
    profile: str
    service: str
    owner_uid: int
    state: State
    connection_type: ConnectionType
    #: The entry chosen for each stage so far ("dial", "tunnel").
    entries: Mapping[str, str]
    #: The links that are up, in the order they came up.
    links: tuple[LinkView, ...]
    error: ErrorView | None
    disconnect_reason: str | None

    @property
    def top_link(self) -> LinkView | None:
        """The link whose addresses the session shows: the tunnel's, else the newest."""
        tunnel = next((link for link in self.links if link.stage == "tunnel"), None)
        return tunnel or (self.links[-1] if self.links else None)


def status_view(snapshot: SessionSnapshot) -> dict[str, Any]:
    top = snapshot.top_link
    return {
        "session": snapshot.session,
        "profile": snapshot.profile,
        "service": snapshot.service,
        "owner_uid": snapshot.owner_uid,
        "state": str(snapshot.state),
        "connection_type": snapshot.connection_type.cli_name,
        "entries": dict(snapshot.entries),
        "links": [
            {
                "stage": link.stage,
                "entry": link.entry,
                "interface": link.interface,
                "client_ip": link.client_ip,
                "server_ip": link.server_ip,
                "tunnel_server": link.tunnel_server,
            }
            for link in snapshot.links
        ],
        "client_ip": top.client_ip if top else None,
        "server_ip": top.server_ip if top else None,
        "error": (
            {
                "code": snapshot.error.code,
                "source": snapshot.error.source,
                "message": snapshot.error.message,
            }
            if snapshot.error
            else None
        ),
        "disconnect_reason": snapshot.disconnect_reason,
    }


__all__ = ["ErrorView", "LinkView", "SessionSnapshot", "status_view"]
