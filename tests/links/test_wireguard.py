"""The WireGuard dialer against a real wireguard-go peer, and the dead-peer rule on a fake clock."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from opencm.errors import InputError
from opencm.links import codes
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, DownReason, LinkDown
from opencm.links.wireguard import DeadPeerDetector, WireGuardDialer, parse_config
from opencm.testing import FakeClock
from opencm_lab.lab import Lab, NetnsPair, WireGuardPeer, start_wireguard_server
from tests.links.conftest import (
    DownRecorder,
    interfaces,
    need_root_and,
    netns_pids,
    wait_until_gone,
)


def test_dead_peer_needs_rx_stall_and_tx_growth_over_the_window() -> None:
    clock = FakeClock()
    detector = DeadPeerDetector(3.0, clock)
    assert not detector.update(100, 100)
    for second in range(1, 4):  # rx frozen, tx grows by a keepalive each second
        clock.now += 1
        assert not detector.update(100, 100 + 32 * second)
    clock.now += 0.5
    assert detector.update(100, 100 + 32 * 4)
    assert detector.silent_for() == pytest.approx(3.5)


def test_rx_movement_resets_the_window_and_idle_links_are_not_dead() -> None:
    clock = FakeClock()
    detector = DeadPeerDetector(3.0, clock)
    detector.update(0, 0)
    clock.now += 2.5
    assert not detector.update(64, 64)  # rx moved: alive
    clock.now += 2.5
    assert not detector.update(64, 96)  # 2.5 s since rx moved: still within the window
    idle = DeadPeerDetector(3.0, clock)
    idle.update(10, 10)
    clock.now += 60
    assert not idle.update(10, 10)  # nothing sent, nothing received: idle, not dead


def test_parse_config_splits_wg_quick_keys(tmp_path: Path) -> None:
    config = tmp_path / "wg.conf"
    config.write_text(
        "[Interface]\nPrivateKey = AAAA\nAddress = 10.0.0.2/24, fd00::2/64\nMTU = 1380\n"
        "DNS = 10.0.0.1\n\n[Peer]\nPublicKey = BBBB\nEndpoint = 192.0.2.1:51820\n"
        "AllowedIPs = 10.0.0.0/24\nPersistentKeepalive = 1\n"
    )
    parsed = parse_config(config)
    assert parsed.addresses == ("10.0.0.2/24", "fd00::2/64")
    assert parsed.mtu == 1380
    assert parsed.keepalive
    assert parsed.endpoints == ("192.0.2.1:51820",)
    assert "Address" not in parsed.setconf_text and "DNS" not in parsed.setconf_text
    assert "PrivateKey = AAAA" in parsed.setconf_text


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[Interface]\nAddress = 10.0.0.2/24\nPostUp = rm -rf /\n", 3, "shell commands"),
        ("[Interface]\nAddress 10.0.0.2/24\n", 2, "Key = Value"),
        ("[Wat]\n", 1, "unknown section"),
        ("[Interface]\nPrivateKey = x\n", None, "needs an Address"),
    ],
)
def test_parse_config_rejects_with_line(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    config = tmp_path / "wg.conf"
    config.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        parse_config(config)
    assert error.value.line == line and error.value.path == config


@pytest.fixture
def peer(lab: Lab, pair: NetnsPair) -> WireGuardPeer:
    need_root_and("wireguard-go", "wg", "ping")
    return start_wireguard_server(lab, pair)


def test_dialer_satisfies_the_contract() -> None:
    assert isinstance(WireGuardDialer(), Dialer)


def test_up_ping_down(lab: Lab, pair: NetnsPair, peer: WireGuardPeer) -> None:
    dialer = WireGuardDialer()
    downs: list[LinkDown] = []
    entry = DialEntry(
        "WG", "wireguard", {"config": str(peer.client_config_path), "netns": pair.client_ns}
    )

    async def scenario() -> None:
        link = await dialer.dial(entry, Credentials(), downs.append)
        assert link.client_ip == peer.client_ip
        assert link.tunnel_server == pair.server_ip
        assert link.interface in interfaces(pair.client_ns)
        await asyncio.to_thread(lab.ping, pair.client_ns, peer.tunnel_ip)
        pid = int(link.handle["pid"])
        await dialer.hang_up(link)
        assert pid not in netns_pids(pair.client_ns)
        assert link.interface not in interfaces(pair.client_ns)
        assert not await asyncio.to_thread(Path(f"/var/run/wireguard/{link.interface}.sock").exists)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert downs == []


def test_dead_peer_is_detected(lab: Lab, pair: NetnsPair, peer: WireGuardPeer) -> None:
    dialer = WireGuardDialer(poll_interval=0.25)
    downs = DownRecorder()

    entry = DialEntry(
        "WG",
        "wireguard",
        {"config": str(peer.client_config_path), "netns": pair.client_ns, "dead_peer_after": "2"},
    )

    async def scenario() -> None:
        link = await dialer.dial(entry, Credentials(), downs)
        await asyncio.to_thread(lab.ping, pair.client_ns, peer.tunnel_ip)
        await asyncio.sleep(1.5)
        assert downs.events == []  # keepalives both ways: alive
        lab.kill(peer.process, signal.SIGKILL)
        await asyncio.wait_for(downs.seen.wait(), 15)
        await wait_until_gone(int(link.handle["pid"]), pair.client_ns)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert len(downs.events) == 1
    assert downs.events[0].reason is DownReason.PEER_GONE
    assert "rx stalled" in downs.events[0].detail


def test_no_handshake_times_out(lab: Lab, pair: NetnsPair, peer: WireGuardPeer) -> None:
    lab.kill(peer.process, signal.SIGKILL)
    entry = DialEntry(
        "WG",
        "wireguard",
        {"config": str(peer.client_config_path), "netns": pair.client_ns, "timeout": "1.5"},
    )

    async def scenario() -> None:
        with pytest.raises(DialError) as failed:
            await WireGuardDialer().dial(entry, Credentials(), lambda down: None)
        assert failed.value.code == codes.VPN_FAILED

    asyncio.run(scenario())
    assert netns_pids(pair.client_ns) == []


def test_stale_socket_of_a_killed_wireguard_go_is_reclaimed(
    lab: Lab, pair: NetnsPair, peer: WireGuardPeer
) -> None:
    dialer = WireGuardDialer()
    entry = DialEntry(
        "WG",
        "wireguard",
        {
            "config": str(peer.client_config_path),
            "netns": pair.client_ns,
            "interface": lab.prefix + "k",
        },
    )

    async def scenario() -> None:
        link = await dialer.dial(entry, Credentials(), lambda down: None)
        os.kill(int(link.handle["pid"]), signal.SIGKILL)  # the socket file stays behind
        await dialer.hang_up(link)
        again = await dialer.dial(entry, Credentials(), lambda down: None)
        await asyncio.to_thread(lab.ping, pair.client_ns, peer.tunnel_ip)
        await dialer.hang_up(again)
        assert not await asyncio.to_thread(Path(f"/var/run/wireguard/{lab.prefix}k.sock").exists)

    asyncio.run(scenario())


def test_hang_up_from_a_fresh_dialer_ends_wireguard_go(
    lab: Lab, pair: NetnsPair, peer: WireGuardPeer
) -> None:
    entry = DialEntry(
        "WG", "wireguard", {"config": str(peer.client_config_path), "netns": pair.client_ns}
    )

    async def scenario() -> None:
        crashed = WireGuardDialer()
        link = await crashed.dial(entry, Credentials(), lambda down: None)
        await WireGuardDialer().hang_up(link)
        assert int(link.handle["pid"]) not in netns_pids(pair.client_ns)
        assert link.interface not in interfaces(pair.client_ns)
        await crashed.hang_up(link)  # only to end this test's watcher tasks

    asyncio.run(scenario())
