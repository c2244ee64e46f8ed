"""The OpenVPN dialer against a real OpenVPN 2.6 server in a network namespace."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from opencm.errors import InputError
from opencm.links import codes
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, DownReason
from opencm.links.openvpn import OpenVPNDialer
from opencm_lab.lab import Lab, NetnsPair, OpenVPNServer, Pki, start_openvpn_server
from tests.links.conftest import (
    DownRecorder,
    interfaces,
    need_root_and,
    netns_pids,
    wait_until_gone,
)


@pytest.fixture
def server(lab: Lab, pair: NetnsPair, shared_pki: Pki) -> OpenVPNServer:
    need_root_and("openvpn", "ping")
    return start_openvpn_server(lab, pair, shared_pki)


def entry_for(server: OpenVPNServer, pair: NetnsPair, **extra: str) -> DialEntry:
    settings = {"config": str(server.client_config_path), "netns": pair.client_ns, **extra}
    return DialEntry("Corp VPN", "openvpn", settings)


def test_dialer_satisfies_the_contract() -> None:
    assert isinstance(OpenVPNDialer(), Dialer)


def test_up_ping_bytecounts_hang_up(lab: Lab, pair: NetnsPair, server: OpenVPNServer) -> None:
    dialer = OpenVPNDialer()
    downs = DownRecorder()

    async def scenario() -> None:
        link = await dialer.dial(entry_for(server, pair), Credentials(), downs)
        assert link.entry == "Corp VPN"
        assert link.client_ip is not None and link.client_ip.startswith(server.tunnel_prefix + ".")
        assert link.server_ip == server.tunnel_ip
        assert link.tunnel_server == server.address
        assert link.interface in interfaces(pair.client_ns)
        pid = int(link.handle["pid"])
        assert pid in netns_pids(pair.client_ns)

        await asyncio.to_thread(lab.ping, pair.client_ns, server.tunnel_ip, timeout=10)
        # OpenVPN reports byte counts once a second; a loaded machine may take a while longer.
        deadline = time.monotonic() + 60
        received, sent = dialer.byte_counts(link)
        while not (received > 0 and sent > 0) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            received, sent = dialer.byte_counts(link)
        assert received > 0 and sent > 0

        await dialer.hang_up(link)
        assert pid not in netns_pids(pair.client_ns)
        assert link.interface not in interfaces(pair.client_ns)
        assert not await asyncio.to_thread(Path(link.handle["management"]).exists)
        await dialer.hang_up(link)  # safe twice

    asyncio.run(scenario())
    assert downs.events == []  # an orderly hang-up is not a drop


def test_server_killed_mid_session_reports_peer_gone(
    lab: Lab, pair: NetnsPair, server: OpenVPNServer
) -> None:
    dialer = OpenVPNDialer()
    downs = DownRecorder()

    async def scenario() -> None:
        link = await dialer.dial(entry_for(server, pair), Credentials(), downs)
        await asyncio.to_thread(lab.ping, pair.client_ns, server.tunnel_ip)
        lab.kill(server.process, signal.SIGKILL)
        started = time.monotonic()
        # The client config says ping 1 / ping-restart 2: the drop shows within a few seconds.
        await asyncio.wait_for(downs.seen.wait(), 15)
        assert time.monotonic() - started < 15
        await wait_until_gone(int(link.handle["pid"]), pair.client_ns)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert len(downs.events) == 1
    assert downs.events[0].reason is DownReason.PEER_GONE
    assert "ping-restart" in downs.events[0].detail
    assert server.address in downs.events[0].detail or "server" in downs.events[0].detail


def test_server_shutdown_is_reported_with_its_cause(
    lab: Lab, pair: NetnsPair, shared_pki: Pki
) -> None:
    need_root_and("openvpn", "ping")
    server = start_openvpn_server(lab, pair, shared_pki, explicit_exit_notify=True)
    dialer = OpenVPNDialer()
    downs = DownRecorder()

    async def scenario() -> None:
        link = await dialer.dial(entry_for(server, pair), Credentials(), downs)
        lab.kill(server.process, signal.SIGTERM)
        await asyncio.wait_for(downs.seen.wait(), 10)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert downs.events[0].reason is DownReason.PEER_GONE
    assert "server-pushed-connection-reset" in downs.events[0].detail


def test_tcp_server_killed_is_a_connection_reset(
    lab: Lab, pair: NetnsPair, shared_pki: Pki
) -> None:
    need_root_and("openvpn")
    server = start_openvpn_server(lab, pair, shared_pki, proto="tcp-server")
    dialer = OpenVPNDialer()
    downs = DownRecorder()

    async def scenario() -> None:
        link = await dialer.dial(entry_for(server, pair), Credentials(), downs)
        lab.kill(server.process, signal.SIGKILL)
        await asyncio.wait_for(downs.seen.wait(), 10)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert downs.events[0].reason is DownReason.PEER_GONE
    assert "connection-reset" in downs.events[0].detail


def test_client_process_killed_is_process_exited(
    lab: Lab, pair: NetnsPair, server: OpenVPNServer
) -> None:
    dialer = OpenVPNDialer()
    downs = DownRecorder()

    async def scenario() -> None:
        link = await dialer.dial(entry_for(server, pair), Credentials(), downs)
        import os

        os.kill(int(link.handle["pid"]), signal.SIGKILL)
        await asyncio.wait_for(downs.seen.wait(), 10)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert downs.events[0].reason is DownReason.PROCESS_EXITED
    assert "exit status" in downs.events[0].detail


def test_user_and_password_go_over_the_management_socket(
    lab: Lab, pair: NetnsPair, shared_pki: Pki
) -> None:
    need_root_and("openvpn", "ping")
    server = start_openvpn_server(lab, pair, shared_pki, users={"alice": 'pa"ss wo\\rd'})
    dialer = OpenVPNDialer()
    downs = DownRecorder()

    async def scenario() -> None:
        with pytest.raises(DialError) as refused:
            await dialer.dial(entry_for(server, pair), Credentials("alice", "wrong"), downs)
        assert refused.value.code == codes.AUTHENTICATION_FAILURE
        assert not refused.value.retryable
        with pytest.raises(DialError) as missing:
            await dialer.dial(entry_for(server, pair), Credentials(), downs)
        assert missing.value.code == codes.AUTHENTICATION_FAILURE
        link = await dialer.dial(
            entry_for(server, pair), Credentials("alice", 'pa"ss wo\\rd'), downs
        )
        await asyncio.to_thread(lab.ping, pair.client_ns, server.tunnel_ip)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert netns_pids(pair.client_ns) == []


def test_unreachable_server_times_out_and_leaves_nothing(
    lab: Lab, pair: NetnsPair, server: OpenVPNServer
) -> None:
    dialer = OpenVPNDialer()
    # A port nobody listens on; the entry's remote replaces the config's.
    entry = entry_for(server, pair, remote=f"{server.address} 1195", timeout="2")

    async def scenario() -> None:
        with pytest.raises(DialError) as failed:
            await dialer.dial(entry, Credentials(), DownRecorder())
        assert failed.value.code == codes.VPN_FAILED
        assert "within 2 s" in str(failed.value)

    asyncio.run(scenario())
    assert netns_pids(pair.client_ns) == []


def test_cancel_while_dialing_ends_openvpn(
    lab: Lab, pair: NetnsPair, server: OpenVPNServer
) -> None:
    dialer = OpenVPNDialer()
    entry = entry_for(server, pair, remote=f"{server.address} 1195")

    async def scenario() -> None:
        task = asyncio.create_task(dialer.dial_dialog(entry, Credentials(), DownRecorder()))
        for _ in range(200):
            if netns_pids(pair.client_ns):
                break
            await asyncio.sleep(0.01)
        assert netns_pids(pair.client_ns)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert netns_pids(pair.client_ns) == []


def test_missing_namespace_is_a_clear_dial_error(tmp_path: Path) -> None:
    config = tmp_path / "c.ovpn"
    config.write_text("client\n")
    entry = DialEntry("E", "openvpn", {"config": str(config), "netns": "ocm-no-such-ns"})
    with pytest.raises(DialError, match="does not exist") as failed:
        asyncio.run(OpenVPNDialer().dial(entry, Credentials(), DownRecorder()))
    assert not failed.value.retryable


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({}, "E.config", "needs 'config'"),
        ({"config": "/nonexistent.ovpn"}, "E.config", "no such OpenVPN config"),
        ({"config": "CFG", "netns": "../etc"}, "E.netns", "not a network namespace"),
        ({"config": "CFG", "remote": "host 99999"}, "E.remote", "HOST [PORT"),
        ({"config": "CFG", "remote": "--up /bin/sh"}, "E.remote", "HOST [PORT"),
        ({"config": "CFG", "timeout": "soon"}, "E.timeout", "positive number"),
        ({"config": "CFG", "colour": "red"}, "E.colour", "unknown setting"),
    ],
)
def test_edit_entry_names_the_bad_field(
    tmp_path: Path, settings: dict[str, str], field: str, message: str
) -> None:
    config = tmp_path / "c.ovpn"
    config.write_text("client\n")
    settings = {key: str(config) if value == "CFG" else value for key, value in settings.items()}
    with pytest.raises(InputError, match=message.replace("[", r"\[")) as error:
        OpenVPNDialer().edit_entry(DialEntry("E", "openvpn", settings))
    assert error.value.field == field


def test_edit_entry_normalises_the_config_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.ovpn").write_text("client\n")
    monkeypatch.chdir(tmp_path)
    entry = OpenVPNDialer().edit_entry(DialEntry("E", "openvpn", {"config": "c.ovpn"}))
    assert entry.settings["config"] == str(tmp_path / "c.ovpn")


def test_hang_up_from_a_fresh_dialer_ends_the_client_by_pid(
    lab: Lab, pair: NetnsPair, server: OpenVPNServer
) -> None:
    """After a daemon restart only the LinkInfo handle is left (the session's journal)."""
    downs = DownRecorder()

    async def scenario() -> None:
        crashed = OpenVPNDialer()
        link = await crashed.dial(entry_for(server, pair), Credentials(), downs)
        pid = int(link.handle["pid"])
        await OpenVPNDialer().hang_up(link)
        assert pid not in netns_pids(pair.client_ns)
        assert not await asyncio.to_thread(Path(link.handle["rundir"]).exists)
        await crashed.hang_up(link)  # only to close this test's sockets; the link is gone

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("client\nscript-security 2\nup /tmp/evil.sh\n", 3, "'up' is not allowed"),
        ("client\n--plugin /tmp/evil.so\n", 2, "'plugin' is not allowed"),
        ("client\nlog /etc/passwd\n", 2, "'log' is not allowed"),
        ("client\ndaemon\n", 2, "'daemon' is not allowed"),
        ("client\nauth-user-pass /etc/shadow\n", 2, "must not name a file"),
        # Options a deny list missed: each writes a file or reads one for the server.
        ("client\ngenkey secret /etc/opencm/dialers.allow\n", 2, "'genkey' is not allowed"),
        ("client\nwritepid /etc/passwd\n", 2, "'writepid' is not allowed"),
        ("client\ntmp-dir /root\n", 2, "'tmp-dir' is not allowed"),
        ("client\nhttp-proxy p 8080 /root/secret\n", 2, "must not name a credentials file"),
        ("client\nsocks-proxy p 1080 /root/secret\n", 2, "must not name a credentials file"),
        ("client\nsome-future-option x\n", 2, "'some-future-option' is not allowed"),
        ("client\n<connection>\nremote h\nup /tmp/x\n</connection>\n", 4, "'up' is not"),
        ("client\n<script>\nx\n</script>\n", 2, "inline block <script> is not allowed"),
    ],
)
def test_configs_that_would_run_code_as_root_are_refused(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    config = tmp_path / "c.ovpn"
    config.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        OpenVPNDialer().edit_entry(DialEntry("E", "openvpn", {"config": str(config)}))
    assert error.value.line == line and error.value.path == config


def test_inline_blocks_and_comments_are_not_directives(tmp_path: Path) -> None:
    config = tmp_path / "c.ovpn"
    config.write_text("client\n# up /tmp/x\n; log /x\nauth-user-pass\n<ca>\nup\nlog x\n</ca>\n")
    OpenVPNDialer().edit_entry(DialEntry("E", "openvpn", {"config": str(config)}))


def test_a_typical_client_config_is_allowed(tmp_path: Path) -> None:
    config = tmp_path / "c.ovpn"
    config.write_text(
        "client\ndev tun\nproto udp\nremote vpn.example.com 1194\nresolv-retry infinite\n"
        "nobind\npersist-key\npersist-tun\nremote-cert-tls server\ncipher AES-256-GCM\n"
        "data-ciphers AES-256-GCM:AES-128-GCM\nauth SHA256\nkey-direction 1\nverb 3\n"
        "setenv opt block-outside-dns\nhttp-proxy proxy 3128 auto\n"
        "<connection>\nremote a 443 tcp\n</connection>\n"
        "<ca>\nX\n</ca>\n<tls-auth>\nY\n</tls-auth>\n"
    )
    OpenVPNDialer().edit_entry(DialEntry("E", "openvpn", {"config": str(config)}))
