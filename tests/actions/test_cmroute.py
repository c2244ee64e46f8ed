"""opencm's built-in ``cmroute.dll,SetRoutes``: the route file, the switches, real routes."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opencm.actions.api import ActionKind, ActionPoint
from opencm.actions.cmroute import Route, parse_route_file, parse_switches, route_argv
from opencm.actions.engine import ActionEngine
from opencm.errors import InputError
from opencm.profile.model import load_profile
from opencm_lab.lab import Lab
from tests.actions.conftest import context_for
from tests.kit.conftest import run_cli
from tests.windows_profiles import AZURE_ROUTES, HANDWRITTEN_ROUTES, write_windows_profile


def net(text: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(text)


def test_azure_shape_crlf_default_gateway() -> None:
    routes = parse_route_file(AZURE_ROUTES.encode(), "routes.txt")
    assert routes == [
        Route("add", 1, net("10.1.0.0/16")),
        Route("add", 2, net("10.2.3.0/24")),
    ]


def test_handwritten_shape_lower_case_gateway_lf_no_final_newline() -> None:
    routes = parse_route_file(HANDWRITTEN_ROUTES.encode(), "r.txt")
    assert routes == [
        Route("add", 1, net("10.0.0.0/16"), ipaddress.IPv4Address("192.168.160.1")),
        Route("add", 2, net("172.16.5.0/24"), None, 5),
    ]


def test_delete_remove_gateway_and_if() -> None:
    data = b"DELETE 10.9.0.0 MASK 255.255.0.0 default METRIC default\r\n\r\nREMOVE_GATEWAY"
    assert parse_route_file(data, "r") == [
        Route("delete", 1, net("10.9.0.0/16")),
        Route("remove_gateway", 3),
    ]
    [route] = parse_route_file(b"add 10.0.0.0 mask 255.0.0.0 default metric 3 if 12", "r")
    assert (route.metric, route.interface) == (3, 12)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("PRINT 10.0.0.0", "expected ADD, DELETE or REMOVE_GATEWAY, found 'PRINT'"),
        ("ADD 10.0.0.0 MASK 255.0.0.0", "expected `ADD DEST MASK mask gateway|default"),
        ("ADD 10.0.0 MASK 255.0.0.0 default METRIC 1", "expected a destination IPv4 address"),
        ("ADD 10.0.0.0 NETMASK 255.0.0.0 default METRIC 1", "expected MASK, found 'NETMASK'"),
        ("ADD 10.0.0.0 MASK 255.0.0.x default METRIC 1", "expected a netmask"),
        ("ADD 10.0.0.0 MASK 255.0.255.0 default METRIC 1", "is not a network"),
        ("ADD 10.1.0.0 MASK 255.0.0.0 default METRIC 1", "is not a network"),
        ("ADD 10.0.0.0 MASK 255.0.0.0 gw METRIC 1", "expected a gateway address or `default`"),
        ("ADD 10.0.0.0 MASK 255.0.0.0 default IF 1", "expected METRIC (Windows requires it"),
        ("ADD 10.0.0.0 MASK 255.0.0.0 default METRIC x", "expected a metric or `default`"),
        ("ADD 10.0.0.0 MASK 255.0.0.0 default METRIC 1 IF", "one interface index"),
        ("ADD 10.0.0.0 MASK 255.0.0.0 default METRIC 1 DEV 2", "expected IF or the end"),
        ("ADD 10.0.0.0 MASK 255.0.0.0 default METRIC 1 IF a", "an interface index or `default`"),
        ("REMOVE_GATEWAY now", "expected nothing after REMOVE_GATEWAY"),
    ],
)
def test_a_bad_line_names_file_line_and_what_was_expected(line: str, expected: str) -> None:
    data = f"{AZURE_ROUTES}{line}\r\n".encode()
    with pytest.raises(InputError) as caught:
        parse_route_file(data, "routes.txt")
    assert str(caught.value).startswith("routes.txt:3: ")
    assert expected in str(caught.value)


def test_switches() -> None:
    switches = parse_switches(
        r"/Profile C:\x\a.cmp /STATIC_FILE_NAME routes.txt /DONT_REQUIRE_URL "
        "/URL_UPDATE_PATH http://h/r.txt /IPHLPAPI_ACCESS_DENIED_OK /TunnelRasPhonebook NULL "
        '/DialRasPhonebook NULL /ServiceName "Contoso VPN"'
    )
    assert switches.static_file == "routes.txt" and switches.url == "http://h/r.txt"
    assert switches.dont_require_url and switches.access_denied_ok
    assert switches.other["profile"] == r"C:\x\a.cmp"
    assert switches.other["servicename"] == "Contoso VPN"
    with pytest.raises(InputError, match="unknown argument '/FLUSH'"):
        parse_switches("/FLUSH")
    with pytest.raises(InputError, match="needs a value"):
        parse_switches("/STATIC_FILE_NAME")


def test_default_gateway_is_the_tunnel_and_an_explicit_one_goes_through_it() -> None:
    default, explicit = parse_route_file(HANDWRITTEN_ROUTES.encode(), "r")
    assert route_argv(explicit, "tun7", "ns1") == [
        "ip", "-n", "ns1", "route", "replace", "172.16.5.0/24", "dev", "tun7", "metric", "5",
    ]  # fmt: skip
    assert route_argv(default, "tun7", None) == [
        "ip", "route", "replace", "10.0.0.0/16", "via", "192.168.160.1", "dev", "tun7", "onlink",
    ]  # fmt: skip


def test_actions_plan_on_the_windows_profile_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    profile = write_windows_profile(tmp_path / "Cm")
    code, out, err = run_cli(capsys, "actions", "plan", str(profile.cmp), "--json")
    assert code == 0, err
    points = {p["point"]: p["actions"] for p in json.loads(out)["points"]}
    [route] = points["post-connect"]
    assert route["runs"] is True and route["skip_reason"] is None
    assert route["kind"] == "python" and route["program"] == "python:cmroute.SetRoutes"


# --- real routes in a network namespace ----------------------------------------------------


@pytest.fixture
def tunnel_ns() -> Iterator[tuple[str, str]]:
    """A namespace with an interface standing for the tunnel (one end of a veth pair: the
    kernel here has no dummy interfaces; the routes are real kernel routes either way)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with Lab() as lab:
        ns = lab.netns("r")
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "tun9", "type", "veth", "peer", "name", "tun9p"],
            check=True,
        )
        subprocess.run(["ip", "-n", ns, "addr", "add", "10.99.0.2/24", "dev", "tun9"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "tun9", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "tun9p", "up"], check=True)
        yield ns, "tun9"


def routes_in(ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "route", "show"], capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines()]


def run_post_connect(cmp: Path, ns: str, interface: str) -> Any:
    profile = load_profile(cmp)
    context = dataclasses.replace(context_for(profile), interface=interface, netns=ns)
    with ActionEngine(profile.cms) as engine:
        return engine.run_point(ActionPoint.POST_CONNECT, context)


def test_the_windows_profile_action_adds_its_routes_on_the_tunnel(
    tmp_path: Path, tunnel_ns: tuple[str, str]
) -> None:
    ns, tun = tunnel_ns
    profile = write_windows_profile(tmp_path / "Cm", routes=AZURE_ROUTES + "REMOVE_GATEWAY\r\n")
    subprocess.run(["ip", "-n", ns, "route", "add", "default", "dev", tun], check=True)
    result = run_post_connect(profile.cmp, ns, tun)
    assert result.ok, result.failed and result.failed.message
    [action] = result.results
    assert action.kind is ActionKind.PYTHON and action.ran
    table = routes_in(ns)
    assert "10.1.0.0/16 dev tun9 scope link" in table
    assert "10.2.3.0/24 dev tun9 scope link" in table
    assert not any(line.startswith("default") for line in table)  # REMOVE_GATEWAY
    # The routes live on the tunnel: when the link goes, so do they.
    subprocess.run(["ip", "-n", ns, "link", "del", tun], check=True)
    assert not any(line.startswith(("10.1.", "10.2.")) for line in routes_in(ns))


def test_a_bad_route_file_fails_the_action_with_file_and_line(
    tmp_path: Path, tunnel_ns: tuple[str, str]
) -> None:
    ns, tun = tunnel_ns
    profile = write_windows_profile(
        tmp_path / "Cm", routes=AZURE_ROUTES + "ADD 10.3.0.0 MASK 255.255.0.0 default\r\n"
    )
    result = run_post_connect(profile.cmp, ns, tun)
    failed = result.failed
    assert failed is not None
    routes = profile.service_dir / "routes.txt"
    assert failed.message == (
        "Custom Action to update your routing table failed: "
        f"{routes}:3: expected `ADD DEST MASK mask gateway|default METRIC n|default "
        "[IF n|default]`, found 4 word(s) after ADD"
    )
    # Nothing is half-applied: the file is read whole before any route goes in.
    assert not any(line.startswith("10.1.") for line in routes_in(ns))
