"""The kit spec: what an administrator decided about a service profile (``kit.toml``).

A kit folder holds ``kit.toml`` plus the files it names (VPN configs, action programs, icons,
the phone book). ``opencm kit new`` writes it, ``opencm kit build`` reads it. The schema is
opencm's own and is documented in ``docs/kit-spec.md``; every field error names the file and the
field (``vpn[1].link``) so an administrator can fix a hand-written spec.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from opencm.actions import flags as flagbits
from opencm.actions.api import ActionPoint
from opencm.errors import InputError
from opencm.links import registry
from opencm.phonebook.limits import check_book_name

SPEC_NAME = "kit.toml"

#: "How Connection Manager Works": at most eight characters, not all digits, no spaces or symbols.
_SHORT_NAME = re.compile(r"[A-Za-z0-9_-]{1,8}")
#: Azure's point-to-site profiles use a 36-character GUID as the short name (the .cmp, the
#: service folder and every file are named by it). Windows' CM accepts it; so does opencm.
_GUID_NAME = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")

CONNECTION_TYPES = ("direct", "dialup", "double")
ASK = "ask"
CARRIERS = ("auto", "ppp", "slip")
LOGINS = ("none", "prompt")
CREDENTIALS = ("separate", "same")
DIAL_MODES = ("tone", "pulse")
_PREFIX = re.compile(r"[0-9*#,Ww]*")
#: The ``[[vpn]]`` field holding each profile key a link may read (``ProfileKeys``), and how
#: a missing one is named.
LINK_FIELDS = {
    "Config": ("config", "its config file"),
    "Connection": ("connection", "a connection name"),
}

#: CMAK's "Run this custom action for" choices and their connection bits (``N&Flags``, as the
#: action engine reads them: :mod:`opencm.actions.flags`).
RUN_FOR: Mapping[str, int] = {
    "all": 0,
    "dialup": flagbits.DIALS,
    "tunnel": flagbits.TUNNELS,
    "tunnel-only": flagbits.DIRECT_ONLY,
    "dialup-only": flagbits.DIALUP_ONLY,
}


def check_short_name(value: str, *, what: str = "short name") -> str:
    """Validate a service profile's short name; returns it. (A phone book's name follows the
    phone book's own rule, :func:`opencm.phonebook.limits.check_book_name`.)"""
    if _GUID_NAME.fullmatch(value):
        return value
    if not _SHORT_NAME.fullmatch(value) or value.isdigit():
        raise InputError(
            f"{what} {value!r} must be 1-8 letters, digits, '_' or '-', and not all digits"
            " (or a GUID, as Azure's profiles use)"
        )
    return value


@dataclass
class VpnServer:
    """One VPN server the profile can tunnel to, and how opencm reaches it."""

    name: str
    address: str
    link: str = "openvpn"
    #: Kit-relative path of the OpenVPN or WireGuard config shipped with the profile.
    config: str | None = None
    #: NetworkManager connection name (``link = "networkmanager"``).
    connection: str | None = None


@dataclass
class Action:
    """A custom action at one of the nine points (the Add Custom Action dialog of "Incorporating
    Custom Actions")."""

    point: ActionPoint
    program: str
    parameters: str = ""
    description: str = ""
    #: Ship the program inside the profile folder ("Include the custom action program").
    include: bool = False
    #: "Program interacts with the user" (selected by default in CMAK).
    interactive: bool = True
    run_for: str = "all"
    #: opencm's ``N&Wait``: wait up to this many seconds for the program (None: start it).
    wait: int | None = None

    @property
    def flags(self) -> int:
        flags = RUN_FOR[self.run_for]
        if not self.interactive:
            flags |= flagbits.NON_INTERACTIVE
        if self.include:
            flags |= flagbits.INCLUDED
        return flags


@dataclass
class PhoneBook:
    """The dial-up POP phone book shipped with the profile and where its updates come from."""

    #: The book's eight-character name: the file stem of ``<BOOK>.pbk`` / ``.pbr`` / ``.ver``.
    name: str
    #: Kit-relative folder holding the phone-book files (copied as they are).
    dir: str | None = None
    #: The Phone Book Service URL clients ask for updates.
    pbs_url: str = ""
    #: Kit-relative path of the PBA's minisign public key (updates are verified with it).
    public_key: str | None = None


@dataclass
class Dialup:
    """The dial-up entry: the modem, how IP runs over the line, and whose credentials."""

    #: Serial port (``/dev/ttyS0``) or ``ask`` (each user sets their own).
    device: str = ASK
    #: Line speed, or None for ``ask``.
    speed: int | None = 115200
    #: Modem init string, or ``ask``.
    init: str = "ATZ"
    #: ``auto`` (PPP when the kernel has it), ``ppp`` or ``slip``.
    carrier: str = "auto"
    #: The line's addresses (SLIP needs them; pppd negotiates its own).
    local_ip: str | None = None
    peer_ip: str | None = None
    #: ``none`` or ``prompt``: the access server's text login (see docs/dialers.md).
    login: str = "none"
    #: Fixed numbers (``;``-separated) for a profile without a phone book.
    numbers: str | None = None
    #: Double dial: ``separate`` Internet credentials, or the ``same`` as the tunnel's.
    credentials: str = "separate"


@dataclass
class Dialing:
    """The dialing rules a user starts with (their location; users change them)."""

    country: int | None = None
    area_code: str = ""
    outside_line: str = ""
    dial_mode: str = "tone"
    calling_card: str = ""


@dataclass
class KitSpec:
    service_name: str
    short_name: str
    #: The profile's release number: packages of a lower version are refused on re-install.
    version: int = 1
    connection_types: list[str] = field(default_factory=lambda: ["direct"])
    redial_count: int = 3
    redial_delay: int = 5
    auto_reconnect: bool = True
    dun: str | None = None
    tunnel_dun: str | None = None
    vpn: list[VpnServer] = field(default_factory=list)
    phonebook: PhoneBook | None = None
    actions: list[Action] = field(default_factory=list)
    icon: str | None = None
    small_icon: str | None = None
    tray_icon: str | None = None
    help_file: str | None = None
    additional_files: list[str] = field(default_factory=list)
    #: Built service profiles (folders) merged into this top-level profile.
    components: list[str] = field(default_factory=list)
    dialup: Dialup | None = None
    dialing: Dialing | None = None
    #: Realm: put in front of / after the user name sent to the server.
    user_prefix: str = ""
    user_suffix: str = ""
    #: The logon screen asks for a user name and password (``[opencm] Credentials=password``).
    ask_password: bool = False
    #: The logon screen's banner (``Logo``).
    logo: str | None = None

    @property
    def dials(self) -> bool:
        return "dialup" in self.connection_types or "double" in self.connection_types

    @property
    def tunnels(self) -> bool:
        return "direct" in self.connection_types or "double" in self.connection_types

    @property
    def dun_name(self) -> str:
        return self.dun or self.service_name

    @property
    def tunnel_dun_name(self) -> str:
        return self.tunnel_dun or f"{self.short_name} Tunnel"


# -- reading ---------------------------------------------------------------------------------


class _Fields:
    """Typed access to one TOML table that names the field in every error."""

    def __init__(self, table: Mapping[str, Any], prefix: str, path: Path | None) -> None:
        self.table = table
        self.prefix = prefix
        self.path = path
        self.used: set[str] = set()

    def _error(self, key: str, message: str) -> InputError:
        return InputError(message, path=self.path, field=f"{self.prefix}{key}")

    def _get(self, key: str, kind: type | tuple[type, ...], what: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self._error(key, "missing; expected " + what)
            return None
        value = self.table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self._error(key, f"expected {what}, got {value!r}")
        return value

    def text(self, key: str, *, required: bool = False) -> str | None:
        value: str | None = self._get(key, str, "a string", required)
        return value

    def checked_text(self, key: str, check: Callable[[str], object]) -> str:
        """A required string that ``check`` accepts; its refusal is reported on this field."""
        value = self.text(key, required=True) or ""
        try:
            check(value)
        except InputError as error:
            raise self._error(key, error.message) from None
        return value

    def text_or(self, key: str, default: str) -> str:
        return self.text(key) or default

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value: int | None = self._get(key, int, "an integer", False)
        if value is None:
            return default
        if value < minimum:
            raise self._error(key, f"expected an integer >= {minimum}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value: bool | None = self._get(key, bool, "true or false", False)
        return default if value is None else value

    def texts(self, key: str) -> list[str]:
        value: list[Any] | None = self._get(key, list, "a list of strings", False)
        if value is None:
            return []
        for item in value:
            if not isinstance(item, str):
                raise self._error(key, f"expected a list of strings, found {item!r}")
        return list(value)

    def choice(self, key: str, choices: tuple[str, ...] | Mapping[str, int], default: str) -> str:
        value = self.text_or(key, default)
        if value not in choices:
            raise self._error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def tables(self, key: str) -> list[Mapping[str, Any]]:
        value: list[Any] | None = self._get(key, list, "an array of tables", False)
        if value is None:
            return []
        for item in value:
            if not isinstance(item, dict):
                raise self._error(key, f"expected an array of tables ([[{key}]]), got {item!r}")
        return list(value)

    def table_of(self, key: str) -> Mapping[str, Any] | None:
        value: Mapping[str, Any] | None = self._get(key, dict, f"a table ([{key}])", False)
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self._error(unknown[0], "unknown field (see docs/kit-spec.md)")


def _check_link(entry: _Fields, server: VpnServer, path: Path | None, index: int) -> None:
    """The link must be one the registry allows, given the keys its dialer declares."""
    named_by = f"vpn[{index}].link in {path or 'the kit spec'}"
    try:
        keys = registry.tunnel_link(server.link, named_by=named_by)
    except InputError as error:
        raise entry._error("link", error.message) from error
    for key, (field_name, words) in LINK_FIELDS.items():
        given = getattr(server, field_name)
        if given and key not in keys.reads:
            reads = ", ".join(LINK_FIELDS[k][0] for k in keys.reads) or "neither"
            raise entry._error(
                field_name, f"a {server.link} server does not take {field_name} (it takes: {reads})"
            )
        if not given and key in keys.required:
            raise entry._error(field_name, f"a {server.link} server needs {words}")


def _kit_file(fields: _Fields, key: str, *, required: bool = False) -> str | None:
    """A path inside the kit folder: relative, no ``..``; checked for existence by the build."""
    value = fields.text(key, required=required)
    return None if value is None else _check_kit_path(fields, key, value)


def _check_kit_path(fields: _Fields, key: str, value: str) -> str:
    if not value or Path(value).is_absolute() or ".." in Path(value).parts or "\\" in value:
        raise fields._error(key, f"expected a relative path inside the kit folder, got {value!r}")
    return value


def spec_from_mapping(data: Mapping[str, Any], path: Path | None = None) -> KitSpec:
    top = _Fields(data, "", path)
    service_table = top.table_of("service")
    if service_table is None:
        raise InputError("missing [service] table", path=path, field="service")
    service = _Fields(service_table, "service.", path)
    short = service.checked_text("short", check_short_name)
    name = service.text("name", required=True) or ""
    if not name.strip() or any(c in name for c in '[]"%') or not name.isprintable():
        raise InputError(
            'expected a one-line name without [ ] " or %', path=path, field="service.name"
        )
    types = service.texts("connection_types") or ["direct"]
    for kind in types:
        if kind not in CONNECTION_TYPES:
            raise InputError(
                f"expected some of {', '.join(CONNECTION_TYPES)}, got {kind!r}",
                path=path,
                field="service.connection_types",
            )
    spec = KitSpec(
        service_name=name,
        short_name=short,
        version=service.integer("version", 1, minimum=1),
        connection_types=types,
        redial_count=service.integer("redial_count", 3),
        redial_delay=service.integer("redial_delay", 5),
        auto_reconnect=service.boolean("auto_reconnect", True),
        dun=service.text("dun"),
        tunnel_dun=service.text("tunnel_dun"),
        user_prefix=service.text_or("user_prefix", ""),
        user_suffix=service.text_or("user_suffix", ""),
        ask_password=service.boolean("ask_password", False),
    )
    for key in ("user_prefix", "user_suffix"):
        value = getattr(spec, key)
        if not value.isprintable() or any(char in value for char in " %;="):
            raise InputError(
                "expected a realm without spaces, '%', ';' or '='",
                path=path,
                field=f"service.{key}",
            )
    service.finish()
    _read_dialup(top, spec, path)

    for index, table in enumerate(top.tables("vpn")):
        entry = _Fields(table, f"vpn[{index}].", path)
        server = VpnServer(
            name=entry.text("name", required=True) or "",
            address=entry.text("address", required=True) or "",
            link=entry.text_or("link", registry.DEFAULT_LINK),
            config=_kit_file(entry, "config"),
            connection=entry.text("connection"),
        )
        _check_link(entry, server, path, index)
        entry.finish()
        spec.vpn.append(server)
    if spec.tunnels and not spec.vpn:
        raise InputError(
            "a profile with direct or double-dial connections needs at least one [[vpn]] server",
            path=path,
            field="vpn",
        )

    book_table = top.table_of("phonebook")
    if book_table is not None:
        book = _Fields(book_table, "phonebook.", path)
        spec.phonebook = PhoneBook(
            name=book.checked_text("name", check_book_name),
            dir=_kit_file(book, "dir"),
            pbs_url=book.text_or("pbs_url", ""),
            public_key=_kit_file(book, "public_key"),
        )
        book.finish()

    for index, table in enumerate(top.tables("action")):
        entry = _Fields(table, f"action[{index}].", path)
        point_name = entry.choice("point", tuple(p.value for p in ActionPoint), "post-connect")
        include = entry.boolean("include", False)
        program = (
            _kit_file(entry, "program", required=True)
            if include
            else entry.text("program", required=True)
        ) or ""
        action = Action(
            point=ActionPoint(point_name),
            program=program,
            parameters=entry.text_or("parameters", ""),
            description=entry.text_or("description", ""),
            include=include,
            interactive=entry.boolean("interactive", True),
            run_for=entry.choice("run_for", RUN_FOR, "all"),
            wait=entry._get("wait", int, "a number of seconds (0-3600)", False),
        )
        if action.wait is not None and not 0 <= action.wait <= 3600:
            raise entry._error("wait", f"expected 0 to 3600 seconds, got {action.wait}")
        for key, text in (("program", action.program), ("parameters", action.parameters)):
            if "\n" in text or "\r" in text:
                raise entry._error(key, "expected one line")
        # CMAK offers pre-dial actions only to profiles that dial, pre-tunnel only with a VPN.
        if action.point is ActionPoint.PRE_DIAL and not spec.dials:
            raise entry._error("point", "pre-dial actions need a dialup or double connection")
        if action.point is ActionPoint.PRE_TUNNEL and not spec.tunnels:
            raise entry._error("point", "pre-tunnel actions need a direct or double connection")
        entry.finish()
        spec.actions.append(action)

    files_table = top.table_of("files")
    if files_table is not None:
        files = _Fields(files_table, "files.", path)
        spec.icon = _kit_file(files, "icon")
        spec.small_icon = _kit_file(files, "small_icon")
        spec.tray_icon = _kit_file(files, "tray_icon")
        spec.logo = _kit_file(files, "logo")
        spec.help_file = _kit_file(files, "help")
        spec.additional_files = [
            _check_kit_path(files, "additional", item) for item in files.texts("additional")
        ]
        files.finish()
    spec.components = top.texts("components")
    top.finish()
    return spec


def _read_dialup(top: _Fields, spec: KitSpec, path: Path | None) -> None:
    table = top.table_of("dialup")
    if table is not None:
        fields = _Fields(table, "dialup.", path)
        speed_value = fields._get("speed", (int, str), 'an integer or "ask"', False)
        if isinstance(speed_value, str) and speed_value != ASK:
            raise fields._error("speed", f'expected an integer or "ask", got {speed_value!r}')
        if isinstance(speed_value, int) and not 300 <= speed_value <= 4_000_000:
            raise fields._error("speed", f"expected 300 to 4000000, got {speed_value}")
        dialup = Dialup(
            device=fields.text_or("device", ASK),
            speed=None if speed_value == ASK else (speed_value or 115200),
            init=fields.text_or("init", "ATZ"),
            carrier=fields.choice("carrier", CARRIERS, "auto"),
            local_ip=fields.text("local_ip"),
            peer_ip=fields.text("peer_ip"),
            login=fields.choice("login", LOGINS, "none"),
            numbers=fields.text("numbers"),
            credentials=fields.choice("credentials", CREDENTIALS, "separate"),
        )
        if dialup.device != ASK and not dialup.device.startswith("/"):
            raise fields._error("device", f'expected a device path or "ask", got {dialup.device!r}')
        if dialup.init != ASK and (
            not dialup.init.upper().startswith("AT") or not dialup.init.isprintable()
        ):
            raise fields._error(
                "init", f'expected one AT command line or "ask", got {dialup.init!r}'
            )
        for key in ("local_ip", "peer_ip"):
            value = getattr(dialup, key)
            if value is not None:
                try:
                    ipaddress.IPv4Address(value)
                except ValueError:
                    raise fields._error(key, f"expected an IPv4 address, got {value!r}") from None
        if dialup.numbers is not None and not re.fullmatch(r"[0-9*#,Ww ;()-]+", dialup.numbers):
            raise fields._error("numbers", "expected phone numbers separated by ';'")
        fields.finish()
        spec.dialup = dialup
    rules = top.table_of("dialing")
    if rules is not None:
        fields = _Fields(rules, "dialing.", path)
        country = fields._get("country", int, "a country calling code (1, 44 …)", False)
        dialing = Dialing(
            country=country,
            area_code=fields.text_or("area_code", ""),
            outside_line=fields.text_or("outside_line", ""),
            dial_mode=fields.choice("dial_mode", DIAL_MODES, "tone"),
            calling_card=fields.text_or("calling_card", ""),
        )
        if country is not None and not 1 <= country <= 999:
            raise fields._error("country", f"expected a calling code 1-999, got {country}")
        if not dialing.area_code.isdigit() and dialing.area_code:
            raise fields._error("area_code", f"expected digits, got {dialing.area_code!r}")
        for key in ("outside_line", "calling_card"):
            if not _PREFIX.fullmatch(getattr(dialing, key)):
                raise fields._error(key, "expected digits, '*', '#', ',' (pause) or 'W'")
        fields.finish()
        spec.dialing = dialing
    if spec.dialup is not None and not spec.dials:
        raise InputError(
            "a [dialup] table needs a dialup or double connection type",
            path=path,
            field="dialup",
        )


def load_spec(path: str | Path) -> KitSpec:
    """Read a ``kit.toml`` (or the one in a kit folder)."""
    target = Path(path)
    if target.is_dir():
        target = target / SPEC_NAME
    try:
        raw = target.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read kit spec: {error.strerror}", path=target) from error
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InputError("kit spec is not UTF-8", path=target) from error
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"not valid TOML: {error}", path=target) from error
    return spec_from_mapping(data, target)


# -- writing ---------------------------------------------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _table(lines: list[str], header: str, items: Mapping[str, object]) -> None:
    lines.append("")
    lines.append(header)
    for key, value in items.items():
        if value is not None and value != []:
            lines.append(f"{key} = {_toml_value(value)}")


def _section(
    item: Dialup | Dialing | VpnServer | PhoneBook | Action, **written: object
) -> dict[str, object]:
    """A table's keys are its dataclass's field names, in their order (docs/kit-spec.md, and
    what :func:`spec_from_mapping` reads); ``written`` gives the values written otherwise."""
    return {
        key: written[key] if key in written else getattr(item, key)
        for key in (each.name for each in fields(item))
    }


def render_spec(spec: KitSpec) -> str:
    """The spec as ``kit.toml`` text; ``spec_from_mapping(tomllib.loads(...))`` reads it back."""
    lines = ["# opencm kit spec: see docs/kit-spec.md. `opencm kit build` reads this file."]
    if spec.components:
        lines.append(f"components = {_toml_value(spec.components)}")
    _table(
        lines,
        "[service]",
        {
            "name": spec.service_name,
            "short": spec.short_name,
            "version": spec.version,
            "connection_types": spec.connection_types,
            "redial_count": spec.redial_count,
            "redial_delay": spec.redial_delay,
            "auto_reconnect": spec.auto_reconnect,
            "dun": spec.dun,
            "tunnel_dun": spec.tunnel_dun,
            "user_prefix": spec.user_prefix or None,
            "user_suffix": spec.user_suffix or None,
            "ask_password": spec.ask_password or None,
        },
    )
    if spec.dialup is not None:
        speed = spec.dialup.speed
        _table(lines, "[dialup]", _section(spec.dialup, speed=ASK if speed is None else speed))
    if spec.dialing is not None:
        rules = spec.dialing
        _table(
            lines,
            "[dialing]",
            _section(
                rules,
                area_code=rules.area_code or None,
                outside_line=rules.outside_line or None,
                calling_card=rules.calling_card or None,
            ),
        )
    for server in spec.vpn:
        _table(lines, "[[vpn]]", _section(server))
    if spec.phonebook is not None:
        _table(lines, "[phonebook]", _section(spec.phonebook))
    for action in spec.actions:
        _table(lines, "[[action]]", _section(action, point=action.point.value))
    files = {
        "icon": spec.icon,
        "small_icon": spec.small_icon,
        "tray_icon": spec.tray_icon,
        "logo": spec.logo,
        "help": spec.help_file,
        "additional": spec.additional_files,
    }
    if any(value for value in files.values()):
        _table(lines, "[files]", files)
    return "\n".join(lines) + "\n"
