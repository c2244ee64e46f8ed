"""The session as an explicit state machine: every allowed move is a row of :data:`TRANSITIONS`.

The states follow the connection sequence of "How Connection Manager Works" (pre-init, logon screen,
pre-connect, pre-dial, dial, pre-tunnel, tunnel, post-connect, monitored applications, disconnect)
plus the states CM's rules need: ``cancelled`` (on-cancel actions run, then nothing else),
``failed`` (on-error actions run; then redial or give up), ``redial-wait`` (``RedialDelay``),
``dropped`` (the link went down on its own: disconnect actions run right away) and ``prompting``
(the last monitored application exited: "Stay online" / "Disconnect now").

The machine only decides; :mod:`opencm.session.runner` does the work a state stands for. A row
may carry a guard on the connection type (dial-up only, direct tunnel, double dial), so the same
event leads to pre-dial or pre-tunnel as the connection needs. An event with no matching row is a
:class:`InvalidTransition`, never a silent no-op.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from opencm.errors import OpencmError
from opencm.profile.model import ConnectionType


class State(enum.StrEnum):
    PRE_INIT = "pre-init"
    READY = "ready"  # the logon screen: credentials asked, waiting for Connect
    PRE_CONNECT = "pre-connect"
    PRE_DIAL = "pre-dial"
    DIALING = "dialing"
    PRE_TUNNEL = "pre-tunnel"
    TUNNELLING = "tunnelling"
    POST_CONNECT = "post-connect"
    CONNECTED = "connected"  # monitored applications running
    PROMPTING = "prompting"  # the last monitored application exited: stay online?
    DISCONNECTING = "disconnecting"  # disconnect actions, then hang up
    DROPPED = "dropped"  # the link went down on its own: disconnect actions with the reason
    FAILED = "failed"  # an error ended the attempt: on-error actions
    REDIAL_WAIT = "redial-wait"
    CANCELLED = "cancelled"  # on-cancel actions ran; nothing runs after them
    DISCONNECTED = "disconnected"


class Event(enum.StrEnum):
    INIT_DONE = "init-done"  # the pre-init actions ran
    CONNECT = "connect"
    ACTIONS_DONE = "actions-done"  # the actions of the current pre-* / post-connect point ran
    LINK_UP = "link-up"
    LINK_DOWN = "link-down"
    ERROR = "error"
    CANCEL = "cancel"
    USER_DISCONNECT = "user-disconnect"
    LAST_APP_EXITED = "last-app-exited"
    STAY_ONLINE = "stay-online"
    PROMPT_TIMEOUT = "prompt-timeout"  # 30 s without an answer
    REDIAL = "redial"  # after an error, with attempts left
    RECONNECT = "reconnect"  # after a drop, with AutoReconnect
    GIVE_UP = "give-up"
    HUNG_UP = "hung-up"


class Guard(enum.StrEnum):
    """Which connection types a row applies to."""

    ANY = "any"
    DIALS = "dials"  # dial-up and double dial
    DIRECT = "direct"  # direct tunnel only
    DIALUP_ONLY = "dialup-only"
    DOUBLE = "double"
    TUNNELS = "tunnels"

    def admits(self, connection_type: ConnectionType) -> bool:
        match self:
            case Guard.ANY:
                return True
            case Guard.DIALS:
                return connection_type.dials
            case Guard.DIRECT:
                return connection_type is ConnectionType.DIRECT
            case Guard.DIALUP_ONLY:
                return connection_type is ConnectionType.DIALUP
            case Guard.DOUBLE:
                return connection_type is ConnectionType.DOUBLE
            case Guard.TUNNELS:
                return connection_type.tunnels


@dataclass(frozen=True)
class Transition:
    source: State
    event: Event
    target: State
    guard: Guard = Guard.ANY
    why: str = ""


S, E, G = State, Event, Guard

#: The states of a connection attempt in progress: Cancel here runs the on-cancel actions.
ATTEMPT_STATES = (
    S.PRE_CONNECT,
    S.PRE_DIAL,
    S.DIALING,
    S.PRE_TUNNEL,
    S.TUNNELLING,
    S.POST_CONNECT,
    S.REDIAL_WAIT,
)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.PRE_INIT, E.INIT_DONE, S.READY, why="pre-init ran; the logon screen shows"),
    Transition(S.PRE_INIT, E.ERROR, S.FAILED, why="a pre-init action failed"),
    Transition(S.READY, E.CONNECT, S.PRE_CONNECT, why="the user clicked Connect"),
    Transition(
        S.READY, E.CANCEL, S.DISCONNECTED, why="closing an idle window: no on-cancel actions"
    ),
    Transition(S.PRE_CONNECT, E.ACTIONS_DONE, S.PRE_DIAL, G.DIALS),
    Transition(S.PRE_CONNECT, E.ACTIONS_DONE, S.PRE_TUNNEL, G.DIRECT, "no dialing: no pre-dial"),
    Transition(S.PRE_DIAL, E.ACTIONS_DONE, S.DIALING),
    Transition(S.DIALING, E.LINK_UP, S.PRE_TUNNEL, G.DOUBLE, "the ISP link is up; now the tunnel"),
    Transition(S.DIALING, E.LINK_UP, S.POST_CONNECT, G.DIALUP_ONLY, "no tunnel: no pre-tunnel"),
    Transition(S.PRE_TUNNEL, E.ACTIONS_DONE, S.TUNNELLING),
    Transition(S.TUNNELLING, E.LINK_UP, S.POST_CONNECT),
    Transition(S.POST_CONNECT, E.ACTIONS_DONE, S.CONNECTED, why="monitored applications start"),
    # Errors end the attempt; on-error actions run in FAILED.
    *(Transition(state, E.ERROR, S.FAILED) for state in ATTEMPT_STATES if state != S.REDIAL_WAIT),
    # A link that goes down before the connection is complete is an error of the attempt.
    Transition(S.PRE_TUNNEL, E.LINK_DOWN, S.FAILED, G.DOUBLE, "the dial-up link dropped"),
    Transition(S.TUNNELLING, E.LINK_DOWN, S.FAILED),
    Transition(S.POST_CONNECT, E.LINK_DOWN, S.FAILED),
    # Cancel during an attempt: on-cancel actions, and nothing after them.
    *(Transition(state, E.CANCEL, S.CANCELLED) for state in ATTEMPT_STATES),
    Transition(S.FAILED, E.REDIAL, S.REDIAL_WAIT, why="attempts left: wait RedialDelay"),
    Transition(S.FAILED, E.GIVE_UP, S.DISCONNECTED),
    Transition(S.REDIAL_WAIT, E.REDIAL, S.PRE_DIAL, G.DIALS, "pre-dial runs before every dial"),
    Transition(S.REDIAL_WAIT, E.REDIAL, S.PRE_TUNNEL, G.DIRECT),
    Transition(S.CONNECTED, E.USER_DISCONNECT, S.DISCONNECTING),
    Transition(S.CONNECTED, E.LAST_APP_EXITED, S.PROMPTING),
    Transition(S.CONNECTED, E.LINK_DOWN, S.DROPPED, why="disconnect actions run after a drop"),
    Transition(S.PROMPTING, E.STAY_ONLINE, S.CONNECTED),
    Transition(S.PROMPTING, E.USER_DISCONNECT, S.DISCONNECTING, why="Disconnect now"),
    Transition(S.PROMPTING, E.PROMPT_TIMEOUT, S.DISCONNECTING, why="30 s without an answer"),
    Transition(S.PROMPTING, E.LINK_DOWN, S.DROPPED),
    Transition(
        S.DISCONNECTING, E.LINK_DOWN, S.DISCONNECTING, why="the hang-up we asked for reports in"
    ),
    Transition(S.DISCONNECTING, E.HUNG_UP, S.DISCONNECTED),
    Transition(S.DROPPED, E.RECONNECT, S.PRE_CONNECT, why="AutoReconnect"),
    Transition(S.DROPPED, E.GIVE_UP, S.DISCONNECTED),
    Transition(S.DISCONNECTED, E.CONNECT, S.PRE_CONNECT, why="connect again"),
    Transition(S.CANCELLED, E.CONNECT, S.PRE_CONNECT, why="connect again"),
)

#: States a session can rest in when it has ended.
FINAL_STATES = frozenset({S.DISCONNECTED, S.CANCELLED})


class InvalidTransition(OpencmError):
    """An event that the current state does not accept."""


def find_transition(
    state: State, event: Event, connection_type: ConnectionType
) -> Transition | None:
    return next(
        (
            row
            for row in TRANSITIONS
            if row.source is state and row.event is event and row.guard.admits(connection_type)
        ),
        None,
    )


def allowed_events(state: State, connection_type: ConnectionType) -> list[Event]:
    seen: list[Event] = []
    for row in TRANSITIONS:
        if row.source is state and row.guard.admits(connection_type) and row.event not in seen:
            seen.append(row.event)
    return seen


Listener = Callable[[Transition], None]


class SessionMachine:
    """The current state of one session; :meth:`fire` moves it along a table row."""

    def __init__(self, connection_type: ConnectionType, state: State = State.PRE_INIT) -> None:
        self.connection_type = connection_type
        self.state = state
        self.history: list[Transition] = []
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def can(self, event: Event) -> bool:
        return find_transition(self.state, event, self.connection_type) is not None

    def fire(self, event: Event) -> Transition:
        row = find_transition(self.state, event, self.connection_type)
        if row is None:
            allowed = ", ".join(allowed_events(self.state, self.connection_type)) or "none"
            raise InvalidTransition(
                f"event '{event}' is not allowed in state '{self.state}' for a "
                f"{self.connection_type.cli_name} connection (allowed: {allowed})"
            )
        self.state = row.target
        self.history.append(row)
        for listener in self._listeners:
            listener(row)
        return row


__all__ = [
    "ATTEMPT_STATES",
    "FINAL_STATES",
    "TRANSITIONS",
    "Event",
    "Guard",
    "InvalidTransition",
    "SessionMachine",
    "State",
    "Transition",
    "allowed_events",
    "find_transition",
]
