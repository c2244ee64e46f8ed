"""What a session needs from a service profile: connection types, redial policy, link entries.

Read from the ``.cms``: ``[Connection Manager]`` (CMAK's keys: ``RedialCount``, ``RedialDelay``,
``AutoReconnect``, ``DUN``, ``TunnelDUN``, ``Dialup``/``Direct``/``Tunnel``/``ConnectionType``)
and ``[opencm]`` (opencm's own keys, written by the kit builder: the VPN servers and their links;
plus the dial-up modem keys and ``Netns``/``LogDir``). ``docs/session.md`` lists every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from opencm.actions.api import ConnectionType
from opencm.errors import InputError
from opencm.links.api import DialEntry
from opencm.profile.model import CM, ServiceProfile

OPENCM = "opencm"
#: ``Link&<name>`` values and the dialer each one names.
LINK_DIALERS = {
    "openvpn": "openvpn",
    "wireguard": "wireguard",
    "networkmanager": "networkmanager",
    "ikev2": "ikev2",
}
MAX_SERVERS = 1000


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

    @property
    def service_name(self) -> str:
        return self.profile.service_name

    def entries_for(self, stage: str, preferred: str | None = None) -> list[DialEntry]:
        """The entries to try for ``stage`` ("dial" or "tunnel"), ``preferred`` first and the
        others after it in profile order."""
        entries = list(self.tunnel_entries if stage == "tunnel" else self.dial_entries)
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
                "a tunnel needs a VPN server: [opencm] VpnServer0 is missing",
                path=self.profile.cms_path,
                field="[opencm] VpnServer0",
            )
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


def _tunnel_entries(
    profile: ServiceProfile, netns: str | None, addresses: dict[str, str]
) -> list[DialEntry]:
    entries: list[DialEntry] = []
    for index in range(MAX_SERVERS):
        name = (profile.cms.get(OPENCM, f"VpnServer{index}") or "").strip()
        if not name:
            break  # like the action sections, the list ends at the first missing number
        link = (profile.cms.get(OPENCM, f"Link&{name}") or "openvpn").strip().casefold()
        if link not in LINK_DIALERS:
            raise InputError(
                f"expected one of {', '.join(LINK_DIALERS)}, got '{link}'",
                path=profile.cms_path,
                line=profile.cms.line_of(OPENCM, f"Link&{name}"),
                field=f"[{OPENCM}] Link&{name}",
            )
        # Each dialer takes only its own settings (it rejects others): the address is kept
        # for %TunnelServerAddress% until the link reports the server it reached.
        settings: dict[str, str] = {}
        address = (profile.cms.get(OPENCM, f"Address&{name}") or "").strip()
        if address:
            addresses[name] = address
        config = (profile.cms.get(OPENCM, f"Config&{name}") or "").strip()
        if config:
            settings["config"] = str(profile.resolve(config))
        elif link in ("openvpn", "wireguard", "ikev2"):
            _required(profile, f"Config&{name}", f"the {link} config file of server '{name}'")
        connection = (profile.cms.get(OPENCM, f"Connection&{name}") or "").strip()
        if connection:
            settings["connection"] = connection
        elif link == "networkmanager":
            _required(profile, f"Connection&{name}", f"the NetworkManager connection of '{name}'")
        if netns and link != "networkmanager":  # NetworkManager has its own namespaces
            settings["netns"] = netns
        entries.append(DialEntry(name=name, dialer=LINK_DIALERS[link], settings=settings))
    return entries


def _dial_entries(profile: ServiceProfile, dun: str, netns: str | None) -> list[DialEntry]:
    device = (profile.cms.get(OPENCM, "ModemDevice") or "").strip()
    if not device:
        return []
    settings = {
        "device": device,
        "init": (profile.cms.get(OPENCM, "ModemInit") or "ATZ").strip(),
        "baud": str(_int(profile, OPENCM, "ModemBaud", 115200, low=1)),
        "numbers": ";".join(
            number.strip()
            for number in (profile.cms.get(OPENCM, "DialNumbers") or "").split(";")
            if number.strip()
        )
        or ";".join(_phonebook_numbers(profile)),
    }
    # Without PPP in the kernel the modem dialer carries IP over the line itself and needs
    # both ends' addresses.
    for key, setting in (("ModemLocalIP", "local_ip"), ("ModemPeerIP", "peer_ip")):
        value = (profile.cms.get(OPENCM, key) or "").strip()
        if value:
            settings[setting] = value
    if not settings["numbers"]:
        _required(profile, "DialNumbers", "the phone numbers to dial (';'-separated)")
    if netns:
        settings["netns"] = netns
    return [DialEntry(name=dun, dialer="modem", settings=settings)]


def _phonebook_numbers(profile: ServiceProfile) -> list[str]:
    """The dial order from the profile's phone book: the chosen POP, then its alternates.

    The user's choices (what CM's dialog asks) are ``[opencm] PopCountry``, ``PopRegion``,
    ``PopServiceType`` and ``PopIndex``; ``DialPrefix`` (an outside line, say ``9,``) goes in
    front of every number. Same selection as ``opencm pops``.
    """
    from opencm.phonebook.select import dial_numbers, read_offered, select
    from opencm.profile.isp import read_isp_filters

    if profile.phonebook_path() is None:
        return []

    def choice(key: str) -> str | None:
        return (profile.cms.get(OPENCM, key) or "").strip() or None

    view = read_offered(profile)
    country = choice("PopCountry")
    index = choice("PopIndex")
    chosen = select(
        view.pops,
        read_isp_filters(profile.cms),
        country=int(country) if country and country.isdigit() else None,
        region=choice("PopRegion"),
        service_type=choice("PopServiceType"),
    )
    prefix = choice("DialPrefix") or ""
    first = int(index) if index and index.isdigit() else None
    return [prefix + number for number in dial_numbers(chosen, first=first)]


def session_config(profile: ServiceProfile) -> SessionConfig:
    """Read a loaded profile; raises :class:`InputError` naming the key that is wrong."""
    netns = (profile.cms.get(OPENCM, "Netns") or "").strip() or None
    log_dir_text = (profile.cms.get(OPENCM, "LogDir") or "").strip()
    dun = (profile.cms.get(CM, "DUN") or "").strip() or profile.service_name
    tunnel_dun = (profile.cms.get(CM, "TunnelDUN") or "").strip() or (
        f"{profile.short_name} Tunnel"
    )
    types = tuple(profile.supported_types())
    addresses: dict[str, str] = {}
    tunnel_entries = tuple(_tunnel_entries(profile, netns, addresses))
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
        dial_entries=tuple(_dial_entries(profile, dun, netns)),
        netns=netns,
        log_dir=profile.resolve(log_dir_text) if log_dir_text else None,
        notes=list(profile.notes),
    )


__all__ = ["LINK_DIALERS", "OPENCM", "SessionConfig", "session_config"]
