"""The NetworkManager dialer against a real NetworkManager (1.42 + nm-openvpn), not a mock.

NetworkManager runs inside the client namespace on a private system bus
(``opencm_lab.nm``), an OpenVPN server in the server namespace; the connection NetworkManager
activates is the server's ``.ovpn`` imported with nmcli. Activation, deactivation and a drop
(the connection taken down behind opencm's back) through the dialer; then the same through
``opencm connect`` with the profile's disconnect actions. python-dbusmock stays only for what a
real daemon cannot be made to do here (test_networkmanager.py). Root only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opencm.links import codes
from opencm.links.api import Credentials, DialEntry, DialError, DownReason
from opencm.links.networkmanager import NetworkManagerDialer
from opencm_lab.lab import Lab, LabError, NetnsPair, start_openvpn_server
from opencm_lab.nm import RealNM, missing, start_networkmanager
from tests.links.conftest import DownRecorder, need_root_and
from tests.session.foreground import ForegroundConnect

pytestmark = [pytest.mark.root, pytest.mark.slow]
ROOT = Path(__file__).parents[2]


@dataclass
class Setup:
    lab: Lab
    pair: NetnsPair
    nm: RealNM
    tunnel_ip: str
    uuid: str


@pytest.fixture
def setup() -> Iterator[Setup]:
    need_root_and("openvpn", "ping")
    if missing():
        pytest.skip(f"needs {', '.join(missing())} (scripts/bootstrap.sh installs them)")
    with Lab() as lab:
        try:
            pair = lab.netns_pair()
            server = start_openvpn_server(lab, pair, lab.pki())
            with start_networkmanager(lab, pair.client_ns) as nm:
                nm.base_connection(pair)
                ovpn = lab.workdir / "opencm-vpn.ovpn"
                ovpn.write_text(server.client_config_text)
                uuid = nm.import_openvpn(ovpn, "opencm-vpn")
                yield Setup(lab, pair, nm, server.tunnel_ip, uuid)
        except LabError as error:
            pytest.skip(f"the NetworkManager lab cannot run here: {error}")


def vpn_state(nm: RealNM) -> str:
    out = nm.nmcli("-t", "-f", "NAME,STATE", "connection", "show", "--active")
    states = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return states.get("opencm-vpn", "inactive")


def tun_ping(setup: Setup) -> None:
    """A ping that leaves through the tunnel device (the base route's gateway owns the tunnel
    address too: a plain ping would be answered without any tunnel)."""
    out = subprocess.run(
        ["ip", "-n", setup.pair.client_ns, "-o", "link", "show", "type", "tun"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    device = out.split(": ")[1].split("@")[0]
    subprocess.run(
        ["ip", "netns", "exec", setup.pair.client_ns, "ping", "-c1", "-W5", "-n", "-q",
         "-I", device, setup.tunnel_ip],
        check=True, capture_output=True,
    )  # fmt: skip


def test_activate_then_deactivate_and_a_drop_is_reported(setup: Setup) -> None:
    dialer = NetworkManagerDialer(bus_address=setup.nm.bus_address)
    entry = DialEntry("Main", "networkmanager", {"connection": "opencm-vpn", "timeout": "60"})

    async def scenario() -> None:
        downs = DownRecorder()
        link = await dialer.dial(entry, Credentials(), downs)
        assert vpn_state(setup.nm) == "activated"
        await asyncio.to_thread(tun_ping, setup)
        await dialer.hang_up(link)
        assert vpn_state(setup.nm) == "inactive"
        assert downs.events == []  # our own deactivation is no drop

        by_uuid = DialEntry("Main", "networkmanager", {"connection": setup.uuid})
        link = await dialer.dial(by_uuid, Credentials(), downs)
        assert link.handle["connection"] == "opencm-vpn" and link.handle["type"] == "vpn"
        await asyncio.to_thread(setup.nm.nmcli, "connection", "down", "opencm-vpn")
        await asyncio.wait_for(downs.seen.wait(), 30)
        assert [d.reason for d in downs.events] == [DownReason.HANGUP]
        await dialer.hang_up(link)  # after a drop: nothing left to do, no error

    asyncio.run(scenario())


def test_an_unknown_connection_names_the_ones_networkmanager_has(setup: Setup) -> None:
    entry = DialEntry("Main", "networkmanager", {"connection": "Home"})

    async def scenario() -> None:
        dialer = NetworkManagerDialer(bus_address=setup.nm.bus_address)
        with pytest.raises(DialError, match=r"has no connection 'Home'.*opencm-vpn") as failed:
            await dialer.dial(entry, Credentials(), DownRecorder())
        assert failed.value.code == codes.BAD_ENTRY and not failed.value.retryable

    asyncio.run(scenario())


def test_connect_and_a_drop_run_the_disconnect_actions(setup: Setup, tmp_path: Path) -> None:
    """``opencm connect`` with a profile whose link is NetworkManager; the connection goes
    down behind opencm's back (nmcli): the disconnect actions run with the reason."""
    from tests.session.conftest import build_profile, recorded

    root = tmp_path / "profile"
    _, record = build_profile(
        root, points=["post-connect", "disconnect"], servers=("Main",), link="networkmanager",
        opencm=["Connection&Main=opencm-vpn"], modem=False,
    )  # fmt: skip
    cms = root / "CONTOSO" / "CONTOSO.cms"
    cms.write_bytes(cms.read_bytes().replace(b"Config&Main=CONTOSO\\main.ovpn\r\n", b""))
    env = {**setup.nm.env, "HOME": os.environ.get("HOME", "/root")}
    run = ForegroundConnect(str(root), "--unattended", env=env)
    try:
        run.wait_connected()
        assert vpn_state(setup.nm) == "activated"
        setup.nm.nmcli("connection", "down", "opencm-vpn")  # behind opencm's back
        status = run.finish()
    finally:
        run.close()
    assert (status["outcome"], status["disconnect_reason"]) == ("dropped", "hangup"), run.stderr
    assert [row["point"] for row in recorded(record)] == ["post-connect", "disconnect"]
    assert recorded(record)[1]["DisconnectReason"] == "hangup"
