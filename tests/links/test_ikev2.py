"""The IKEv2 dialer against a real strongSwan responder in another namespace."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from opencm.errors import InputError
from opencm.links import codes
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, DownReason
from opencm.links.charon import CharonTuning, charon_argv, strongswan_conf
from opencm.links.ikev2 import IKEv2Dialer, parse_ike_config
from opencm_lab.ikev2 import IKEv2Server, start_ikev2_server, write_client_config
from opencm_lab.lab import Lab, NetnsPair, Pki
from tests.links.conftest import DownRecorder, interfaces, need_root_and, netns_pids


def test_dialer_satisfies_the_contract() -> None:
    assert isinstance(IKEv2Dialer(), Dialer)


def test_each_instance_has_its_own_config_socket_and_run(tmp_path: Path) -> None:
    conf = strongswan_conf(tmp_path, CharonTuning())
    assert f"socket = unix://{tmp_path / 'charon.vici'}" in conf
    assert f"file = {tmp_path / 'resolv.conf'}" in conf  # never /etc/resolv.conf
    assert "kernel-libipsec" in conf and "load_modular = no" in conf
    argv = charon_argv(tmp_path, "ns1")
    assert argv[:5] == ["ip", "netns", "exec", "ns1", "unshare"]
    assert argv[-2:] == [str(tmp_path / "run"), str(tmp_path / "strongswan.conf")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server = gw\n", "ca is missing"),
        ("server = gw\nca = ca.crt\nauth = psk\n", "expected auth one of"),
        ("server = gw\nca = ca.crt\n", "auth pubkey needs cert and key"),
        ("server = gw\nca = nope.crt\nauth = eap-mschapv2\n", "no such file"),
        ("server gw\n", "expected `key = value`"),
        ("server = gw\nca = ca.crt\nauth = eap-mschapv2\nremote_ts = 10.0.0/8\n", "networks"),
    ],
)
def test_config_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "ca.crt").write_text("x")
    path = tmp_path / "c.ikev2"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        parse_ike_config(path)
    assert error.value.path == path


def test_config_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text("x")
    path = tmp_path / "c.ikev2"
    path.write_text("server = gw.example\nca = ca.crt\ncert = c.crt\nkey = c.key\n")
    config = parse_ike_config(path)
    assert (config.ca, config.key, config.remote_id) == (
        tmp_path / "ca.crt",
        tmp_path / "c.key",
        "gw.example",
    )


@pytest.fixture
def pki(lab: Lab) -> Pki:
    return lab.pki()


def _need_strongswan() -> None:
    need_root_and("ping", "unshare")
    if not Path("/usr/lib/ipsec/charon").exists():
        pytest.skip("needs strongSwan (strongswan-charon, libcharon-extra-plugins)")


@pytest.fixture
def gateway(lab: Lab, pair: NetnsPair, pki: Pki) -> IKEv2Server:
    _need_strongswan()
    return start_ikev2_server(lab, pair, pki)


def host(server: IKEv2Server, index: int = 0) -> str:
    """The gateway's own address in one of the networks behind it."""
    return server.networks[index].replace(".0/24", ".1")


def _entry(config: Path, pair: NetnsPair) -> DialEntry:
    return DialEntry("Azure", "ikev2", {"config": str(config), "netns": pair.client_ns})


def test_up_ping_dns_down(lab: Lab, pair: NetnsPair, gateway: IKEv2Server) -> None:
    dialer = IKEv2Dialer()

    async def scenario() -> None:
        link = await dialer.dial(
            _entry(gateway.client_config_path, pair), Credentials(), DownRecorder()
        )
        assert link.interface in interfaces(pair.client_ns)
        assert link.client_ip is not None and link.client_ip.startswith(
            gateway.pool.rsplit(".", 1)[0]
        )
        assert link.handle["dns"] == gateway.dns
        for network in gateway.networks:
            await asyncio.to_thread(lab.ping, pair.client_ns, network.replace(".0/24", ".1"))
        pid = int(link.handle["pid"])
        await dialer.hang_up(link)
        await dialer.hang_up(link)  # safe twice
        assert pid not in netns_pids(pair.client_ns)
        assert link.interface not in interfaces(pair.client_ns)
        assert not await asyncio.to_thread(Path(link.handle["rundir"]).exists)

    asyncio.run(scenario())


def test_two_links_run_two_charons_side_by_side(
    lab: Lab, pair: NetnsPair, gateway: IKEv2Server, pki: Pki
) -> None:
    other = lab.netns_pair()
    second = start_ikev2_server(lab, other, pki)
    dialer = IKEv2Dialer()

    async def scenario() -> None:
        first = await dialer.dial(
            _entry(gateway.client_config_path, pair), Credentials(), DownRecorder()
        )
        two = await dialer.dial(
            _entry(second.client_config_path, other), Credentials(), DownRecorder()
        )
        assert first.handle["rundir"] != two.handle["rundir"]
        await asyncio.to_thread(
            lab.ping, other.client_ns, second.networks[0].replace(".0/24", ".1")
        )
        await asyncio.to_thread(
            lab.ping, pair.client_ns, gateway.networks[0].replace(".0/24", ".1")
        )
        await dialer.hang_up(first)
        await dialer.hang_up(two)

    asyncio.run(scenario())


def test_dead_gateway_is_peer_gone(lab: Lab, pair: NetnsPair, gateway: IKEv2Server) -> None:
    dialer = IKEv2Dialer(poll_interval=0.2)
    downs = DownRecorder()

    async def scenario() -> None:
        link = await dialer.dial(_entry(gateway.client_config_path, pair), Credentials(), downs)
        os.kill(gateway.process.pid, signal.SIGKILL)
        # DPD every second, two retransmits a second apart: charon gives up after ~4 s.
        await asyncio.wait_for(downs.seen.wait(), 60)
        assert [d.reason for d in downs.events] == [DownReason.PEER_GONE]
        pid = int(link.handle["pid"])
        for _ in range(100):
            if pid not in netns_pids(pair.client_ns):
                break
            await asyncio.sleep(0.05)
        assert pid not in netns_pids(pair.client_ns)

    asyncio.run(scenario())


def test_eap_tls(lab: Lab, pair: NetnsPair, pki: Pki) -> None:
    _need_strongswan()
    server = start_ikev2_server(lab, pair, pki, auth="eap-tls")
    dialer = IKEv2Dialer()

    async def scenario() -> None:
        link = await dialer.dial(
            _entry(server.client_config_path, pair), Credentials(), DownRecorder()
        )
        await asyncio.to_thread(lab.ping, pair.client_ns, host(server))
        await dialer.hang_up(link)

    asyncio.run(scenario())


def test_eap_mschapv2_right_and_wrong_password(lab: Lab, pair: NetnsPair, pki: Pki) -> None:
    _need_strongswan()
    server = start_ikev2_server(lab, pair, pki, auth="eap-mschapv2", users={"alice": "s3cret!"})
    dialer = IKEv2Dialer()
    entry = _entry(server.client_config_path, pair)

    async def scenario() -> None:
        link = await dialer.dial(entry, Credentials("alice", "s3cret!"), DownRecorder())
        await asyncio.to_thread(lab.ping, pair.client_ns, host(server))
        await dialer.hang_up(link)
        with pytest.raises(DialError) as failed:
            await dialer.dial(entry, Credentials("alice", "wrong"), DownRecorder())
        assert failed.value.code == codes.AUTHENTICATION_FAILURE
        with pytest.raises(DialError) as missing:
            await dialer.dial(entry, Credentials(), DownRecorder())
        assert missing.value.code == codes.AUTHENTICATION_FAILURE
        assert not missing.value.retryable

    asyncio.run(scenario())


def test_wrong_gateway_certificate_fails(lab: Lab, pair: NetnsPair, gateway: IKEv2Server) -> None:
    other_ca = Lab.pki(lab, "other")
    config = write_client_config(lab.workdir / "wrongca", gateway.address, other_ca)
    dialer = IKEv2Dialer()

    async def scenario() -> None:
        with pytest.raises(DialError) as failed:
            await dialer.dial(_entry(config, pair), Credentials(), DownRecorder())
        assert failed.value.code in (codes.AUTHENTICATION_FAILURE, codes.VPN_FAILED)
        assert [p for p in netns_pids(pair.client_ns)] == []

    asyncio.run(scenario())
