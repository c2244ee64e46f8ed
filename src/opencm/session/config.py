"""What a session needs from a service profile: connection types, redial policy, link entries.

Read from the ``.cms``: ``[Connection Manager]`` (CMAK's keys: ``RedialCount``, ``RedialDelay``,
``AutoReconnect``, ``DUN``, ``TunnelDUN``, ``Dialup``/``Direct``/``Tunnel``/``ConnectionType``)
and ``[opencm]`` (opencm's own keys, written by the kit builder: the VPN servers and their links;
plus the dial-up modem keys and ``Netns``/``LogDir``). ``docs/session.md`` lists every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from opencm.errors import InputError
from opencm.links import registry
from opencm.links.api import PROFILE_KEYS, DialEntry, ProfileKeys
from opencm.phonebook.dialing import DialChoice, choose_numbers
from opencm.profile.model import CM, ConnectionType, ServiceProfile
from opencm.profile.rasbook import ras_hint
from opencm.profile.usersettings import UserSettings

OPENCM = "opencm"
#: How a missing required key is named: "the openvpn config file of server 'Main' is missing".
KEY_WORDS = {"Config": "config file", "Connection": "connection"}
MAX_SERVERS = 1000


class LeftToTheUser(InputError):
    """A dial-up value the profile leaves to each user (``ask``) that this user has not set:
    only a connection that dials needs it, so a direct connection goes ahead without it."""


@dataclass
class DialState:
    """What the last dial-up entry was made from (for ``%PopName%``/``%CurrentFavorite%``)."""

    choice: DialChoice | None = None


@dataclass(frozen=True)
class SessionConfig:
    profile: ServiceProfile
    supported_types: tuple[ConnectionType, ...]
    default_type: ConnectionType
    redial_count: int
    redial_delay: float
    auto_reconnect: bool
    dun: str
    tunnel_dun: str
    #: The VPN servers in ``VpnServerN`` order: the first is the default, the rest alternates.
    tunnel_entries: tuple[DialEntry, ...] = ()
    #: The dial-up entry (the modem), when the profile dials.
    dial_entries: tuple[DialEntry, ...] = ()
    #: ``Address&<name>`` of each VPN server.
    addresses: dict[str, str] = field(default_factory=dict)
    netns: str | None = None
    log_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    dial_state: DialState = field(default_factory=DialState)
    #: ``[Connection Manager] UseSameUserName``: double dial sends the tunnel's credentials to
    #: the dial-up server too.
    use_same_credentials: bool = False
    #: Why there is no dial-up entry although the profile dials: a value left to the user.
    dial_problem: LeftToTheUser | None = None

    @property
    def service_name(self) -> str:
        return self.profile.service_name

    def entries_for(self, stage: str, preferred: str | None = None) -> list[DialEntry]:
        """The entries to try for ``stage`` ("dial" or "tunnel"), ``preferred`` first and the
        others after it in profile order."""
        if stage == "tunnel":
            entries = list(self.tunnel_entries)
        elif self.dial_entries:
            # Read at each dial, after the pre-dial actions ("Incorporating Custom Actions": "a
            # program to change the telephone number"), from the user's .cmp.
            entries = dial_entries(self.profile, self.dun, self.netns, self.dial_state)
        else:
            entries = []
        if preferred is not None:
            names = [entry.name for entry in entries]
            if preferred not in names:
                raise InputError(
                    f"no {stage} entry named '{preferred}' (the profile has: "
                    f"{', '.join(names) or 'none'})",
                    path=self.profile.cms_path,
                )
            start = names.index(preferred)
            entries = entries[start:] + entries[:start]
        return entries

    def dial_macros(self) -> dict[str, str]:
        """``%PopName%`` and ``%CurrentFavorite%`` of the POP chosen for the last dial."""
        choice = self.dial_state.choice
        macros: dict[str, str] = {}
        if choice is not None and choice.pop is not None and choice.pop.pop.name:
            macros["PopName"] = choice.pop.pop.name
        if choice is not None and choice.favorite:
            macros["CurrentFavorite"] = choice.favorite
        return macros

    def check_type(self, connection_type: ConnectionType) -> None:
        if connection_type not in self.supported_types:
            offered = ", ".join(kind.cli_name for kind in self.supported_types)
            raise InputError(
                f"the profile does not offer {connection_type.cli_name} connections "
                f"(it offers: {offered})",
                path=self.profile.cms_path,
                field="[Connection Manager] Dialup/Direct/Tunnel",
            )
        if connection_type.tunnels and not self.tunnel_entries:
            raise InputError(
                "a tunnel needs a VPN server: [opencm] VpnServer0 is missing"
                + ras_hint(self.profile),
                path=self.profile.cms_path,
                field="[opencm] VpnServer0",
            )
        if connection_type.dials and self.dial_problem is not None:
            raise self.dial_problem
        if connection_type.dials and not self.dial_entries:
            raise InputError(
                "dial-up needs a modem: [opencm] ModemDevice is missing",
                path=self.profile.cms_path,
                field="[opencm] ModemDevice",
            )


def _int(profile: ServiceProfile, section: str, key: str, default: int, low: int = 0) -> int:
    value = profile.cms.get_int(section, key, default)
    if value < low:
        raise InputError(
            f"expected an integer >= {low}, got {value}",
            path=profile.cms_path,
            line=profile.cms.line_of(section, key),
            field=f"[{section}] {key}",
        )
    return value


def _required(profile: ServiceProfile, key: str, what: str) -> str:
    value = (profile.cms.get(OPENCM, key) or "").strip()
    if not value:
        raise InputError(f"{what} is missing", path=profile.cms_path, field=f"[{OPENCM}] {key}")
    return value


def _link_keys(profile: ServiceProfile, server: str, link: str) -> ProfileKeys:
    """What the tunnel dialer ``link`` reads, from the registry (the one list of dialers); a
    plug-in the allow list refuses raises RefusedError naming the allow list and this key."""
    try:
        return registry.tunnel_link(
            link, named_by=f"[{OPENCM}] Link&{server} in {profile.cms_path}"
        )
    except InputError as error:
        raise InputError(
            error.message,
            path=profile.cms_path,
            line=profile.cms.line_of(OPENCM, f"Link&{server}"),
            field=f"[{OPENCM}] Link&{server}",
        ) from error


def _tunnel_entries(
    profile: ServiceProfile, netns: str | None, addresses: dict[str, str]
) -> list[DialEntry]:
    entries: list[DialEntry] = []
    for index in range(MAX_SERVERS):
        name = (profile.cms.get(OPENCM, f"VpnServer{index}") or "").strip()
        if not name:
            break  # like the action sections, the list ends at the first missing number
        link = (profile.cms.get(OPENCM, f"Link&{name}") or registry.DEFAULT_LINK).strip().casefold()
        keys = _link_keys(profile, name, link)
        # The address is kept for %TunnelServerAddress% until the link reports the server it
        # reached; the dialer gets only the keys it declares (profile_keys).
        address = (profile.cms.get(OPENCM, f"Address&{name}") or "").strip()
        if address:
            addresses[name] = address
        settings: dict[str, str] = {}
        for key, setting in PROFILE_KEYS.items():
            field_name = f"{key}&{name}"
            value = (profile.cms.get(OPENCM, field_name) or "").strip()
            if value and key not in keys.reads:
                raise InputError(
                    f"the {link} link does not read {key}& (it reads: "
                    f"{', '.join(k + '&' for k in keys.reads) or 'no per-server keys'})",
                    path=profile.cms_path,
                    line=profile.cms.line_of(OPENCM, field_name),
                    field=f"[{OPENCM}] {field_name}",
                )
            if value:
                settings[setting] = str(profile.resolve(value)) if key == "Config" else value
            elif key in keys.required:
                _required(profile, field_name, f"the {link} {KEY_WORDS[key]} of server '{name}'")
        if netns and keys.netns:
            settings["netns"] = netns
        entries.append(DialEntry(name=name, dialer=link, settings=settings))
    return entries


#: ``.cms`` ``[opencm]`` modem keys and the modem dialer settings they fill; ``ask`` in the
#: first three leaves the value to the user (their ``.cmp``, see opencm.profile.usersettings).
MODEM_KEYS = (
    ("ModemDevice", "device"),
    ("ModemBaud", "baud"),
    ("ModemInit", "init"),
    ("ModemCarrier", "carrier"),
    ("ModemLocalIP", "local_ip"),
    ("ModemPeerIP", "peer_ip"),
    ("ModemLogin", "login"),
)
ASK = "ask"


def _modem_value(profile: ServiceProfile, user: UserSettings, key: str) -> str:
    value = (profile.cms.get(OPENCM, key) or "").strip()
    if value.casefold() != ASK:
        if key == "ModemBaud" and value:
            return str(_int(profile, OPENCM, key, 115200, low=1))
        return value
    mine = user.get(key)
    if not mine:
        raise LeftToTheUser(
            f"the profile leaves {key} to you: set it with "
            f"`opencm profile set {profile.cmp_path or profile.cms_path} opencm {key} VALUE`",
            path=profile.cmp_path or profile.cms_path,
            field=f"[{OPENCM}] {key}",
        )
    return mine


def dial_entries(
    profile: ServiceProfile, dun: str, netns: str | None, state: DialState | None = None
) -> list[DialEntry]:
    """The dial-up entry, read now: the user's ``.cmp`` again (a pre-dial action may have
    changed the number), the chosen POP and the dialing rules (opencm.phonebook.dialing)."""
    if not (profile.cms.get(OPENCM, "ModemDevice") or "").strip():
        return []
    user = UserSettings(profile)
    settings: dict[str, str] = {}
    for key, setting in MODEM_KEYS:
        value = _modem_value(profile, user, key)
        if value:
            settings[setting] = value
    settings.setdefault("init", "ATZ")
    settings.setdefault("baud", "115200")
    choice = choose_numbers(profile, user)
    if not choice.numbers:
        _required(profile, "DialNumbers", "the phone numbers to dial (';'-separated)")
    settings["numbers"] = ";".join(choice.numbers)
    settings["dial_mode"] = "tone" if choice.rules.tone else "pulse"
    if netns:
        settings["netns"] = netns
    if state is not None:
        state.choice = choice
    return [DialEntry(name=dun, dialer="modem", settings=settings)]


def profile_log_dir(profile: ServiceProfile) -> Path | None:
    """``[opencm] LogDir`` (relative to the ``.cmp`` folder); None: the default folder.

    Read on its own too: a recovery writes the dead session's log without building its whole
    configuration (its dialers may no longer be installed or allowed)."""
    text = (profile.cms.get(OPENCM, "LogDir") or "").strip()
    return profile.resolve(text) if text else None


def session_config(profile: ServiceProfile) -> SessionConfig:
    """Read a loaded profile; raises :class:`InputError` naming the key that is wrong."""
    netns = (profile.cms.get(OPENCM, "Netns") or "").strip() or None
    dun = (profile.cms.get(CM, "DUN") or "").strip() or profile.service_name
    tunnel_dun = (profile.cms.get(CM, "TunnelDUN") or "").strip() or (
        f"{profile.short_name} Tunnel"
    )
    types = tuple(profile.supported_types())
    addresses: dict[str, str] = {}
    dial_state = DialState()
    tunnel_entries = tuple(_tunnel_entries(profile, netns, addresses))
    dial_problem: LeftToTheUser | None = None
    try:
        dialup = tuple(dial_entries(profile, dun, netns, dial_state))
    except LeftToTheUser as problem:
        dialup, dial_problem = (), problem
    return SessionConfig(
        profile=profile,
        supported_types=types,
        default_type=profile.default_connection_type(),
        redial_count=_int(profile, CM, "RedialCount", 3),
        redial_delay=float(_int(profile, CM, "RedialDelay", 5)),
        auto_reconnect=profile.cms.get_bool(CM, "AutoReconnect", False),
        dun=dun,
        tunnel_dun=tunnel_dun,
        tunnel_entries=tunnel_entries,
        addresses=addresses,
        dial_entries=dialup,
        dial_problem=dial_problem,
        dial_state=dial_state,
        use_same_credentials=profile.cms.get_bool(CM, "UseSameUserName", False),
        netns=netns,
        log_dir=profile_log_dir(profile),
        notes=list(profile.notes),
    )


__all__ = [
    "OPENCM",
    "DialState",
    "SessionConfig",
    "dial_entries",
    "profile_log_dir",
    "session_config",
]
