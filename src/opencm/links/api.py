"""The custom-dialer contract ("Custom Dialers") that every link implements, built-in or plug-in.

A Windows custom dialer is a DLL exporting five entry points; an opencm dialer is a Python class
with the same five, found through the ``opencm.dialers`` entry-point group and loaded only when
its name is on the administrator's allow list:

=============================  ==================================
Windows (RAS)                  opencm :class:`Dialer`
=============================  ==================================
RasCustomDial                  :meth:`Dialer.dial`
RasCustomDialDlg               :meth:`Dialer.dial_dialog` (cancellable, may talk to the user)
RasCustomHangup                :meth:`Dialer.hang_up`
RasCustomEntryDlg              :meth:`Dialer.edit_entry`
RasCustomDeleteEntryNotify     :meth:`Dialer.entry_deleted`
=============================  ==================================
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

#: The five entry points a dialer must provide; one missing and the plug-in is rejected.
ENTRY_POINTS = ("dial", "dial_dialog", "hang_up", "edit_entry", "entry_deleted")


@dataclass(frozen=True)
class DialEntry:
    """A connection entry: what to dial and with which dialer (a RAS phone-book entry)."""

    name: str
    #: The dialer's registered name, e.g. "openvpn", "wireguard", "modem", "networkmanager".
    dialer: str
    #: Dialer-specific settings (a config file path, a device, phone numbers in order …).
    settings: Mapping[str, str] = field(default_factory=dict)


#: The per-server keys of a profile's ``[opencm]`` section a tunnel link may read, and the
#: :attr:`DialEntry.settings` key each fills: ``Config&<server>`` is a file shipped with the
#: profile (handed over as an absolute path), ``Connection&<server>`` a name the dialer knows.
PROFILE_KEYS = {"Config": "config", "Connection": "connection"}


class Stage(enum.StrEnum):
    """Where a dialer's link goes in a connection."""

    TUNNEL = "tunnel"  # a VPN link: a profile names it in [opencm] Link&<server>
    DIAL = "dial"  # the dial-up link under a tunnel (the modem)


@dataclass(frozen=True)
class ProfileKeys:
    """What a dialer reads from a service profile; a dialer class declares it as
    ``profile_keys`` (a plug-in that does not gets :data:`DEFAULT_PROFILE_KEYS`).

    The session hands the dialer exactly these: a required key that is missing, or a key the
    dialer does not read, is the profile's error (exit 2, naming the key). What the values must
    look like is the dialer's to check (:meth:`Dialer.edit_entry`, and again when it dials).
    """

    stage: Stage = Stage.TUNNEL
    #: Keys of :data:`PROFILE_KEYS` every server of this link must have.
    required: tuple[str, ...] = ()
    #: Keys of :data:`PROFILE_KEYS` a server may have.
    optional: tuple[str, ...] = ()
    #: Whether the link takes the profile's ``[opencm] Netns`` (setting ``netns``).
    netns: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.required + self.optional) - set(PROFILE_KEYS))
        if unknown:
            raise ValueError(f"profile keys {unknown} are not among {sorted(PROFILE_KEYS)}")

    @property
    def reads(self) -> tuple[str, ...]:
        return self.required + self.optional


#: For a plug-in that declares nothing: a tunnel link that may read both keys.
DEFAULT_PROFILE_KEYS = ProfileKeys(optional=("Config", "Connection"))


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    domain: str | None = None


@dataclass(frozen=True)
class LinkInfo:
    """A link that is up; fills ``%ClientIPAddress%``, ``%ServerIPAddress%`` and friends."""

    entry: str
    interface: str | None = None
    client_ip: str | None = None
    server_ip: str | None = None
    #: ``%TunnelServerAddress%``: the VPN server's address or name, for tunnels.
    tunnel_server: str | None = None
    #: Whatever the dialer needs to hang up (PIDs, socket paths …), opaque to the session.
    handle: Mapping[str, str] = field(default_factory=dict)


class DownReason(enum.StrEnum):
    """Why a link went down."""

    HANGUP = "hangup"  # we asked for it
    PEER_GONE = "peer-gone"  # the server stopped answering (ping timeout, dead WireGuard peer)
    CARRIER_LOST = "carrier-lost"  # modem NO CARRIER, serial hang-up
    PROCESS_EXITED = "process-exited"  # the link's process died
    ERROR = "error"


@dataclass(frozen=True)
class LinkDown:
    reason: DownReason
    detail: str = ""


#: Called by a dialer, from any task, when an established link goes down on its own.
LinkDownCallback = Callable[[LinkDown], Awaitable[None] | None]


class DialError(Exception):
    """A dial attempt failed; ``code`` plays the part of the Win32/RAS error code."""

    def __init__(self, message: str, *, code: int, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@runtime_checkable
class Dialer(Protocol):
    """One link type. Async methods may be cancelled (the user pressed Cancel)."""

    name: str

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        """Bring the link up without any UI; raise :class:`DialError` on failure."""
        ...

    async def dial_dialog(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        """Bring the link up, possibly asking the user; must honour cancellation (IDCANCEL)."""
        ...

    async def hang_up(self, link: LinkInfo) -> None:
        """Take the link down and release everything it holds; safe to call twice."""
        ...

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        """Validate and normalise an entry's settings (the entry dialog, minus the dialog)."""
        ...

    def entry_deleted(self, entry: DialEntry) -> None:
        """The entry was removed: forget anything stored for it."""
        ...
