"""The contract between the action engine and its callers (the session, the CLI).

The nine action points and what running one point returns. The connection types of
``%ConnectionType%`` describe profiles, so they live with them
(:class:`opencm.profile.model.ConnectionType`). The engine (``opencm.actions.engine``) implements
:class:`ActionRunner`; the session state machine depends only on this module, so it can be tested
with a double that obeys the same contract.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from opencm.profile.model import ConnectionType

if TYPE_CHECKING:
    import subprocess  # annotations only: the CLI's client commands never start a process


class ActionPoint(enum.StrEnum):
    """The nine points, in the order a connection meets them, and their ``.cms`` sections."""

    PRE_INIT = "pre-init"
    PRE_CONNECT = "pre-connect"
    PRE_DIAL = "pre-dial"
    PRE_TUNNEL = "pre-tunnel"
    POST_CONNECT = "post-connect"
    MONITORED = "monitored"
    DISCONNECT = "disconnect"
    ON_CANCEL = "on-cancel"
    ON_ERROR = "on-error"

    @property
    def section(self) -> str:
        return SECTIONS[self]


SECTIONS: Mapping[ActionPoint, str] = {
    ActionPoint.PRE_INIT: "Pre-Init Actions",
    ActionPoint.PRE_CONNECT: "Pre-Connect Actions",
    ActionPoint.PRE_DIAL: "Pre-Dial Actions",
    ActionPoint.PRE_TUNNEL: "Pre-Tunnel Actions",
    ActionPoint.POST_CONNECT: "Connect Actions",
    ActionPoint.MONITORED: "Auto Applications",
    ActionPoint.DISCONNECT: "Disconnect Actions",
    ActionPoint.ON_CANCEL: "On-Cancel Actions",
    ActionPoint.ON_ERROR: "On-Error Actions",
}

#: A failing action at one of these points ends the connection attempt ("Incorporating Custom
#: Actions" and "How Connection Manager Works").
FATAL_POINTS = frozenset(
    {
        ActionPoint.PRE_INIT,
        ActionPoint.PRE_CONNECT,
        ActionPoint.PRE_DIAL,
        ActionPoint.PRE_TUNNEL,
        ActionPoint.POST_CONNECT,
    }
)


def point_not_reached(point: ActionPoint, connection_type: ConnectionType) -> str | None:
    """Why a connection of ``connection_type`` never reaches ``point``, or None if it does.

    "Incorporating Custom Actions": pre-dial actions run only when a dial-up connection is made,
    pre-tunnel actions only when a tunnel is set up. The session and ``opencm actions plan`` both
    ask this.
    """
    if point is ActionPoint.PRE_DIAL and not connection_type.dials:
        return f"a {connection_type.cli_name} connection does not dial"
    if point is ActionPoint.PRE_TUNNEL and not connection_type.tunnels:
        return f"a {connection_type.cli_name} connection has no tunnel"
    return None


class ActionKind(enum.StrEnum):
    LIBRARY = "library"
    PYTHON = "python"
    EXECUTABLE = "executable"
    DOCUMENT = "document"


@dataclass(frozen=True)
class RunContext:
    """Everything an action point needs from the connection that runs it."""

    #: Macro values by name without the percent signs (case-insensitive on lookup).
    macros: Mapping[str, str]
    connection_type: ConnectionType
    #: False when nobody is at the screen (boot/logon, ``--unattended``).
    interactive: bool
    #: The folder of the ``.cmp``: relative program paths resolve from here.
    profile_dir: Path
    #: True when running at logon/boot with system rights; only allowed programs run then.
    logon: bool = False
    #: Upper bound for one synchronous (library or Python) action, in seconds.
    timeout: float = 60.0
    #: The newest link's network interface (the tunnel once it is up), and the network
    #: namespace it lives in: where built-in actions such as ``cmroute.SetRoutes`` act.
    interface: str | None = None
    netns: str | None = None


@dataclass
class ActionResult:
    """What happened to one action of a point."""

    index: int
    description: str
    kind: ActionKind | None
    program: str
    argv: Sequence[str]
    command_line: str
    flags: int
    ran: bool
    skip_reason: str | None = None
    ok: bool = True
    #: A library/Python action's return value, or an executable's exit status when awaited.
    return_value: int | None = None
    #: The user-facing message on failure: "Custom Action <Description> failed <value>".
    message: str | None = None
    duration: float = 0.0
    #: Executables, documents and monitored applications are started, not awaited.
    process: subprocess.Popen[bytes] | None = None
    #: ``N&Wait`` *(opencm)*: how long the session waits for ``process`` (None: not at all).
    wait: int | None = None


@dataclass
class PointResult:
    point: ActionPoint
    results: list[ActionResult] = field(default_factory=list)

    @property
    def failed(self) -> ActionResult | None:
        """The first failed action; at a fatal point it ended the run of the point."""
        return next((result for result in self.results if not result.ok), None)

    @property
    def ok(self) -> bool:
        return self.failed is None


class ActionRunner(Protocol):
    """Runs the actions of one point, in order, for a connection."""

    def has_actions(self, point: ActionPoint) -> bool:
        """Whether ``point``'s section lists any action (else ``run_point`` does nothing)."""
        ...

    def run_point(self, point: ActionPoint, context: RunContext) -> PointResult:
        """Run ``point``'s actions. Library and Python actions block (with ``context.timeout``);
        executables, documents and monitored applications are started and returned in
        ``ActionResult.process``. At a fatal point the first failure stops the point."""
        ...
