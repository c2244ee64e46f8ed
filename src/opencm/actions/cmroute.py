"""opencm's own ``cmroute.dll,SetRoutes``: the route-file action Windows profiles ship.

Microsoft's Connection Manager ships ``cmroute.dll`` as a predefined custom action ("routing
table updates", *Incorporating Custom Actions*); Azure's point-to-site profiles run it at
post-connect as::

    <short>\\cmroute.dll,SetRoutes /Profile %PROFILE% /STATIC_FILE_NAME routes.txt
        /IPHLPAPI_ACCESS_DENIED_OK /TunnelRasPhonebook %TUNNELRASPHONEBOOK%
        /DialRasPhonebook %DIALRASPHONEBOOK% /ServiceName %SERVICENAME%

It is registered as the Python action ``cmroute.SetRoutes`` (entry-point group
``opencm.actions``), so a profile naming the DLL runs this code unchanged.

The route file (both real shapes; docs/migrating.md)::

    ADD 10.1.0.0 MASK 255.255.0.0 default METRIC default IF default        (CRLF)
    add 10.0.0.0 mask 255.255.0.0 192.168.160.1 METRIC default IF default  (LF, no final EOL)
    DELETE 10.9.0.0 MASK 255.255.0.0 default METRIC default IF default
    REMOVE_GATEWAY

Keywords in any case; ``METRIC`` is mandatory (Windows fails such a line with 0x8007000B);
``IF`` is optional. A ``default`` gateway is the tunnel; every route is added on the tunnel
interface, so the kernel takes it away with the link (at disconnect, and when a daemon that
crashed is restarted and ends the leftover link). ``REMOVE_GATEWAY`` removes the tunnel's
default route after the routes are in. ``IF n`` names a Windows interface index, which means
nothing on Linux: the tunnel is used and the log says so.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opencm.actions.api import RunContext
from opencm.actions.macros import tokenize
from opencm.actions.pyactions import CURRENT_CONTEXT
from opencm.errors import InputError, OpencmError

log = logging.getLogger(__name__)

#: Switches that take a value, and flag switches (cmroute's; research notes §4.4).
VALUE_SWITCHES = frozenset(
    {"static_file_name", "url_update_path", "profile", "servicename", "tunnelrasphonebook",
     "dialrasphonebook"}
)  # fmt: skip
FLAG_SWITCHES = frozenset({"dont_require_url", "iphlpapi_access_denied_ok"})


@dataclass(frozen=True)
class Route:
    """One line of a route file."""

    action: str  # "add" | "delete" | "remove_gateway"
    line: int
    network: ipaddress.IPv4Network | None = None
    #: None: ``default`` (the tunnel).
    gateway: ipaddress.IPv4Address | None = None
    #: None: ``default``.
    metric: int | None = None
    #: None: ``default`` or absent; else the Windows interface index as written.
    interface: int | None = None


def _expect(path: Path | str, line: int, expected: str, found: str) -> InputError:
    return InputError(f"expected {expected}, found {found!r}", path=path, line=line)


def _address(token: str, what: str, path: Path | str, line: int) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(token)
    except ValueError:
        raise _expect(path, line, what, token) from None


def parse_route_line(text: str, path: Path | str, line: int) -> Route | None:
    """One route-file line; None for a blank line. Raises InputError naming what was expected."""
    tokens = text.split()
    if not tokens:
        return None
    verb = tokens[0].upper()
    if verb == "REMOVE_GATEWAY":
        if len(tokens) > 1:
            raise _expect(path, line, "nothing after REMOVE_GATEWAY", tokens[1])
        return Route("remove_gateway", line)
    if verb not in ("ADD", "DELETE"):
        raise _expect(path, line, "ADD, DELETE or REMOVE_GATEWAY", tokens[0])
    grammar = "DEST MASK mask gateway|default METRIC n|default [IF n|default]"
    if len(tokens) < 6:
        raise InputError(
            f"expected `{verb} {grammar}`, found {len(tokens) - 1} word(s) after {verb}",
            path=path,
            line=line,
        )
    destination = _address(tokens[1], "a destination IPv4 address", path, line)
    if tokens[2].upper() != "MASK":
        raise _expect(path, line, "MASK", tokens[2])
    mask = _address(tokens[3], "a netmask like 255.255.0.0", path, line)
    try:
        network = ipaddress.IPv4Network(f"{destination}/{mask}")
    except ValueError:
        raise InputError(
            f"{destination} MASK {mask} is not a network (a contiguous mask, no host bits)",
            path=path,
            line=line,
        ) from None
    gateway = (
        None
        if tokens[4].lower() == "default"
        else _address(tokens[4], "a gateway address or `default`", path, line)
    )
    if tokens[5].upper() != "METRIC":
        raise _expect(path, line, "METRIC (Windows requires it: error 0x8007000B without)",
                      tokens[5])  # fmt: skip
    if len(tokens) < 7:
        raise InputError("expected a metric or `default` after METRIC", path=path, line=line)
    metric = _int_or_default(tokens[6], "a metric or `default`", path, line)
    interface = None
    rest = tokens[7:]
    if rest:
        if rest[0].upper() != "IF":
            raise _expect(path, line, "IF or the end of the line", rest[0])
        if len(rest) != 2:
            raise InputError(
                "expected one interface index or `default` after IF", path=path, line=line
            )
        interface = _int_or_default(rest[1], "an interface index or `default`", path, line)
    return Route(verb.lower(), line, network, gateway, metric, interface)


def _int_or_default(token: str, what: str, path: Path | str, line: int) -> int | None:
    if token.lower() == "default":
        return None
    if not token.isdigit():
        raise _expect(path, line, what, token)
    return int(token)


def parse_route_file(data: bytes, path: Path | str) -> list[Route]:
    """Every line of a route file (CRLF or LF, final newline or not); the first bad line raises."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError("expected ASCII text (a route file)", path=path, line=line) from None
    routes: list[Route] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        route = parse_route_line(raw, path, number)
        if route is not None:
            routes.append(route)
    return routes


@dataclass
class Switches:
    static_file: str | None = None
    url: str | None = None
    dont_require_url: bool = False
    access_denied_ok: bool = False
    other: dict[str, str] = field(default_factory=dict)


def parse_switches(command_line: str) -> Switches:
    """cmroute's ``/SWITCH [value]`` arguments (the command line after the entry point)."""
    # The engine joined the expanded arguments as CM does (quotes only around whitespace);
    # its own tokenizer splits them back without treating ``\`` in Windows paths as escapes.
    words = list(tokenize(command_line).words)
    switches = Switches()
    index = 0
    while index < len(words):
        word = words[index]
        name = word[1:].lower() if word.startswith("/") else ""
        if name in FLAG_SWITCHES:
            if name == "dont_require_url":
                switches.dont_require_url = True
            else:
                switches.access_denied_ok = True
            index += 1
            continue
        if name in VALUE_SWITCHES:
            if index + 1 >= len(words):
                raise InputError(f"cmroute: {word} needs a value", field=word)
            value = words[index + 1]
            if name == "static_file_name":
                switches.static_file = value
            elif name == "url_update_path":
                switches.url = value
            else:
                switches.other[name] = value
            index += 2
            continue
        raise InputError(
            f"cmroute: unknown argument {word!r} (expected one of /STATIC_FILE_NAME, "
            "/URL_UPDATE_PATH, /DONT_REQUIRE_URL, /IPHLPAPI_ACCESS_DENIED_OK, /Profile, "
            "/ServiceName, /TunnelRasPhonebook, /DialRasPhonebook)",
            field=word,
        )
    return switches


def route_file_path(switches: Switches, context: RunContext) -> Path:
    """The static route file: absolute, or relative to the service folder (then the .cmp's)."""
    from opencm.profile.model import resolve_case_insensitive

    assert switches.static_file is not None
    written = switches.static_file
    if written.startswith("/"):
        return Path(written)
    service_dir = {k.casefold(): v for k, v in context.macros.items()}.get("servicedir")
    for base in (Path(service_dir) if service_dir else None, context.profile_dir):
        if base is not None:
            found = resolve_case_insensitive(base, written)
            if found.exists():
                return found
    return resolve_case_insensitive(Path(service_dir) if service_dir else context.profile_dir,
                                    written)  # fmt: skip


def route_argv(route: Route, interface: str, netns: str | None) -> list[str]:
    """The ``ip`` argv for one route (never through a shell)."""
    prefix = ["ip", *(["-n", netns] if netns else []), "route"]
    if route.action == "remove_gateway":
        return [*prefix, "del", "default", "dev", interface]
    assert route.network is not None
    argv = [*prefix, "replace" if route.action == "add" else "del", str(route.network)]
    if route.gateway is not None:
        argv += ["via", str(route.gateway)]
    argv += ["dev", interface]
    if route.gateway is not None:
        argv.append("onlink")  # the gateway lies behind the tunnel, not on a local subnet
    if route.metric is not None:
        argv += ["metric", str(route.metric)]
    return argv


class RouteError(OpencmError):
    """``ip route`` refused a change."""


def apply_routes(
    routes: Sequence[Route],
    interface: str,
    netns: str | None,
    *,
    access_denied_ok: bool = False,
    source: Path | str = "",
) -> list[list[str]]:
    """Run each route's ``ip`` command; the argvs that ran. The first failure raises."""
    ran: list[list[str]] = []
    for route in routes:
        if route.interface is not None:
            log.info(
                "%s:%d: IF %d is a Windows interface index; the route uses the tunnel %s",
                source, route.line, route.interface, interface,
            )  # fmt: skip
        argv = route_argv(route, interface, netns)
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        message = done.stderr.strip()
        if done.returncode != 0:
            if route.action in ("delete", "remove_gateway") and "No such process" in message:
                continue  # already absent: the file's intent holds
            if access_denied_ok and "Operation not permitted" in message:
                log.warning("%s:%d: %s (ignored: /IPHLPAPI_ACCESS_DENIED_OK)", source,
                            route.line, message)  # fmt: skip
                continue
            raise RouteError(f"`{' '.join(argv)}` failed: {message}", path=source,
                             line=route.line)  # fmt: skip
        ran.append(argv)
    return ran


def set_routes(command_line: str, context: RunContext) -> list[list[str]]:
    """What ``cmroute.dll,SetRoutes`` does, for the link in ``context``."""
    switches = parse_switches(command_line)
    if switches.url and not switches.dont_require_url:
        # cmroute fetches the file unsigned over HTTP; opencm never changes the routing table
        # from unsigned downloaded data. Profiles that can do without it say /DONT_REQUIRE_URL.
        raise InputError(
            "cmroute: /URL_UPDATE_PATH names an unsigned download, which opencm does not use;"
            " add /DONT_REQUIRE_URL to use the static file alone",
            field="/URL_UPDATE_PATH",
        )
    if switches.static_file is None:
        raise InputError("cmroute: /STATIC_FILE_NAME is missing", field="/STATIC_FILE_NAME")
    path = route_file_path(switches, context)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the route file: {error.strerror}", path=path) from None
    routes = parse_route_file(data, path)
    if context.interface is None:
        raise InputError("cmroute: no tunnel interface is up to route through")
    return apply_routes(
        routes,
        context.interface,
        context.netns,
        access_denied_ok=switches.access_denied_ok,
        source=path,
    )


def set_routes_action(parent: None, instance: None, command_line: str, reserved: int) -> int:
    """The ``cmroute.SetRoutes`` Python action: 0, or raises with the file, line and reason."""
    context = CURRENT_CONTEXT.get()
    if context is None:
        raise InputError("cmroute: called outside a connection (no run context)")
    ran = set_routes(command_line, context)
    log.info("cmroute: %d route change(s) on %s", len(ran), context.interface)
    return 0


__all__ = [
    "Route",
    "RouteError",
    "Switches",
    "apply_routes",
    "parse_route_file",
    "parse_route_line",
    "parse_switches",
    "route_argv",
    "set_routes",
    "set_routes_action",
]
