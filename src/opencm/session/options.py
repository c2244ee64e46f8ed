"""What a :class:`~opencm.session.runner.Session` is given besides its profile and actions.

Two groups, so that a caller names only what it changes:

- :class:`ConnectOptions`: what the user (or the boot) asked of this connection: the type, the
  entry to try first, the credentials, whether anyone is at the screen, timeouts;
- :class:`SessionDeps`: the collaborators, each replaceable (the daemon passes its journal and
  prompt; tests pass a fake clock and scripted dialers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from opencm.clock import Clock, RealClock
from opencm.links.api import Credentials, Dialer
from opencm.profile.model import ConnectionType
from opencm.session.journal import Journal
from opencm.session.log import SessionLog
from opencm.session.prompt import PROMPT_TIMEOUT, DisconnectPrompt

#: Finds the dialer an entry names (and enforces the allow list); raises an OpencmError.
DialerLookup = Callable[[str], Dialer]


def default_dialer_lookup(name: str) -> Dialer:
    """The links' registry, with the administrator's allow list."""
    from opencm.links.registry import load_dialer  # only a session that dials imports the links

    return load_dialer(name)


@dataclass(frozen=True)
class ConnectOptions:
    #: None: the profile's default connection type.
    connection_type: ConnectionType | None = None
    #: The VPN server (or dial-up entry) to try first; None: the profile's order.
    entry: str | None = None
    credentials: Credentials = field(default_factory=Credentials)
    #: A double dial's own Internet (dial-up) credentials; None: none given.
    inet_credentials: Credentials | None = None
    #: Someone is at the screen: prompts are asked, interactive actions run.
    interactive: bool = True
    #: A boot/logon run: only actions the root-owned allow list names may run.
    logon: bool = False
    #: A front end with a screen of its own asks the dialers for their dialogs ("Custom
    #: Dialers": ``RasCustomDialDlg``, :meth:`Dialer.dial_dialog`) instead of the silent
    #: ``dial``; only when someone is at the screen. Cancel closes the dialog (IDCANCEL).
    dial_dialog: bool = False
    #: The user the session belongs to (who may see and end it); None: this process's user.
    owner_uid: int | None = None
    #: None: a new random id.
    session_id: str | None = None
    #: "Stay online?" unanswered this long disconnects ("Incorporating Custom Actions": 30 s).
    prompt_timeout: float = PROMPT_TIMEOUT
    #: How long a library action may run before it counts as failed.
    action_timeout: float = 60.0


@dataclass(frozen=True)
class SessionDeps:
    dialer_lookup: DialerLookup = default_dialer_lookup
    clock: Clock = field(default_factory=RealClock)
    #: Asks "Stay online?"; None: the terminal's when interactive (unattended always answers
    #: "Disconnect now").
    prompt: DisconnectPrompt | None = None
    #: None: no log (``open_session`` gives every session its profile's log).
    log: SessionLog | None = None
    #: None: nothing is journaled (no crash recovery), as for a foreground test run.
    journal: Journal | None = None


__all__ = ["ConnectOptions", "DialerLookup", "SessionDeps", "default_dialer_lookup"]
