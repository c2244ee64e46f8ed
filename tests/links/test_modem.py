"""The modem dialer against opencm's pty modem emulator; IP over the line; double dial."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencm.clock import RealClock
from opencm.errors import InputError
from opencm.links import codes, hayes
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, DownReason, LinkDown
from opencm.links.modem import DialPlan, ModemDialer, SerialLine, dial_numbers, pppd_argv
from opencm.links.openvpn import OpenVPNDialer
from opencm_lab.lab import (
    Lab,
    ModemLine,
    NetnsPair,
    Pki,
    start_modem_emulator,
    start_openvpn_server,
)
from tests.links.conftest import DownRecorder, interfaces, need_root_and, netns_pids


@pytest.fixture
def plain_lab() -> Iterator[Lab]:
    """A lab for pty-only tests: no namespaces, so no root needed."""
    with Lab() as lab:
        yield lab


def dial_over_pty(modem: ModemLine, plan: DialPlan) -> tuple[hayes.Outcome, list[hayes.Outcome]]:
    async def scenario() -> tuple[hayes.Outcome, list[hayes.Outcome]]:
        line = SerialLine(str(modem.device), 115200)
        try:
            return await dial_numbers(line, plan, clock=RealClock())
        finally:
            line.close()

    return asyncio.run(scenario())


def test_dialer_satisfies_the_contract() -> None:
    assert isinstance(ModemDialer(), Dialer)


def test_busy_then_connect_with_redial_on_a_real_pty(plain_lab: Lab) -> None:
    modem = start_modem_emulator(plain_lab, {"5551000": ["BUSY", "BUSY", "CONNECT 28800"]})
    outcome, tried = dial_over_pty(modem, DialPlan(("5551000",), redial_count=3, redial_delay=0.1))
    assert [attempt.said for attempt in tried] == ["BUSY", "BUSY", "CONNECT"]
    assert outcome.connected and outcome.speed == 28800
    events = modem.events()
    assert events.count("<- ATZ") == 3 and events.count("<- ATDT5551000") == 3


def test_alternate_number_after_busy_and_no_answer(plain_lab: Lab) -> None:
    modem = start_modem_emulator(
        plain_lab, {"5551000": "BUSY", "5552000": "NO ANSWER", "5553000": "CONNECT 33600"}
    )
    outcome, tried = dial_over_pty(modem, DialPlan(("5551000", "5552000", "5553000")))
    assert [attempt.said for attempt in tried] == ["BUSY", "NO ANSWER", "CONNECT"]
    assert outcome.number == "5553000"


@pytest.mark.parametrize(
    ("script", "code", "plan_extra"),
    [
        ("NO CARRIER", codes.NO_CARRIER, {}),
        ("NO DIALTONE", codes.NO_DIALTONE, {}),
        ("SILENT", codes.NO_ANSWER, {"answer_timeout": 0.6}),
    ],
)
def test_failures_map_to_ras_codes(
    plain_lab: Lab, script: str, code: int, plan_extra: dict[str, float]
) -> None:
    modem = start_modem_emulator(plain_lab, {"5551000": script})
    with pytest.raises(DialError) as failed:
        dial_over_pty(modem, DialPlan(("5551000",), **plan_extra))  # type: ignore[arg-type]
    assert failed.value.code == code


def test_modem_that_never_answers_commands_times_out(tmp_path: Path) -> None:
    master, slave = os.openpty()  # a "modem" that reads but never answers
    try:
        with pytest.raises(DialError) as failed:
            dial_over_pty_path(os.ttyname(slave), DialPlan(("1",), command_timeout=0.3))
        assert failed.value.code == codes.DEVICE_TIMEOUT
        assert b"ATZ\r" in os.read(master, 100)
    finally:
        os.close(master)
        os.close(slave)


def dial_over_pty_path(device: str, plan: DialPlan) -> None:
    async def scenario() -> None:
        line = SerialLine(device, 115200)
        try:
            await dial_numbers(line, plan, clock=RealClock())
        finally:
            line.close()

    asyncio.run(scenario())


def modem_entry(modem: ModemLine, netns: str, **extra: str) -> DialEntry:
    settings = {
        "device": str(modem.device),
        "numbers": "5551000; 5553000",
        "netns": netns,
        "local_ip": modem.near_ip,
        "peer_ip": modem.far_ip,
        "escape_guard": "0.2",
        "redial_delay": "0.1",
        "carrier": "slip",
        **extra,
    }
    return DialEntry("Dial-up POP", "modem", settings)


def test_dial_carries_ip_and_hangs_up_with_escape_and_ath(lab: Lab) -> None:
    need_root_and("ping")
    server_ns, client_ns = lab.netns("s"), lab.netns("c")
    modem = start_modem_emulator(
        lab, {"5551000": "BUSY", "5553000": "CONNECT 28800"}, far_ns=server_ns
    )
    dialer = ModemDialer()
    downs: list[LinkDown] = []

    async def scenario() -> None:
        link = await dialer.dial(modem_entry(modem, client_ns), Credentials(), downs.append)
        assert link.handle["number"] == "5553000" and link.handle["speed"] == "28800"
        assert link.client_ip == modem.near_ip and link.server_ip == modem.far_ip
        assert link.interface in interfaces(client_ns)
        await asyncio.to_thread(lab.ping, client_ns, modem.far_ip)
        await dialer.hang_up(link)
        assert netns_pids(client_ns) == []
        assert link.interface not in interfaces(client_ns)

    asyncio.run(scenario())
    assert downs == []
    events = modem.events()
    assert "escape +++: command mode" in events and "hang up (ATH)" in events


def test_carrier_loss_is_reported(lab: Lab) -> None:
    need_root_and()
    server_ns, client_ns = lab.netns("s"), lab.netns("c")
    modem = start_modem_emulator(lab, {"5553000": "CONNECT 28800"}, far_ns=server_ns)
    dialer = ModemDialer()
    downs = DownRecorder()

    async def scenario() -> None:
        entry = modem_entry(modem, client_ns, numbers="5553000")
        link = await dialer.dial(entry, Credentials(), downs)
        os.kill(modem.emulator.pid, signal.SIGUSR1)  # the line goes dead
        await asyncio.wait_for(downs.seen.wait(), 10)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert downs.events == [LinkDown(DownReason.CARRIER_LOST, "the modem reported NO CARRIER")]


def test_double_dial_openvpn_over_the_modem_line(lab: Lab, shared_pki: Pki) -> None:
    """Dial-up first, then OpenVPN over the line: the namespaces share no other path."""
    need_root_and("openvpn", "ping")
    server_ns, client_ns = lab.netns("s"), lab.netns("c")
    modem = start_modem_emulator(lab, {"5553000": "CONNECT 28800"}, far_ns=server_ns)
    modem_dialer, vpn_dialer = ModemDialer(), OpenVPNDialer()
    downs: list[LinkDown] = []

    async def scenario() -> None:
        line = await modem_dialer.dial(
            modem_entry(modem, client_ns, numbers="5553000"), Credentials(), downs.append
        )
        # The server listens on the far end of the phone line only.
        pair = NetnsPair(server_ns, client_ns, modem.far_ip, modem.near_ip, "", "")
        server = await asyncio.to_thread(
            start_openvpn_server, lab, pair, shared_pki, listen_ip=modem.far_ip
        )
        entry = DialEntry(
            "Corp VPN", "openvpn", {"config": str(server.client_config_path), "netns": client_ns}
        )
        tunnel = await vpn_dialer.dial(entry, Credentials(), downs.append)
        assert tunnel.tunnel_server == modem.far_ip
        assert tunnel.server_ip == server.tunnel_ip
        await asyncio.to_thread(lab.ping, client_ns, server.tunnel_ip)
        await vpn_dialer.hang_up(tunnel)
        await modem_dialer.hang_up(line)

    asyncio.run(scenario())
    assert downs == []
    assert netns_pids(client_ns) == []


def test_cancel_while_ringing_aborts_the_call(plain_lab: Lab) -> None:
    modem = start_modem_emulator(plain_lab, {"5551000": "SILENT"})
    entry = DialEntry(
        "E", "modem", {"device": str(modem.device), "numbers": "5551000", "carrier": "slip",
                       "local_ip": "10.0.0.2", "peer_ip": "10.0.0.1",
                       # Generous: on a loaded machine the init dialogue alone can take seconds,
                       # and this test is about the cancel, not about timeouts.
                       "command_timeout": "30"},
    )  # fmt: skip

    async def scenario() -> None:
        task = asyncio.create_task(ModemDialer().dial_dialog(entry, Credentials(), print))
        for _ in range(1000):
            if "dial 5551000" in modem.events():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    aborted = ("dial aborted by a keystroke", "DTR drop: hang up")
    for _ in range(250):
        if any(words in modem.events() for words in aborted):
            break
        time.sleep(0.02)
    assert any(words in modem.events() for words in aborted), modem.events()


def test_pppd_argv_keeps_the_password_off_the_command_line() -> None:
    argv = pppd_argv(
        5,
        {"device": "/dev/ttyS0", "baud": "57600", "local_ip": "10.0.0.2", "peer_ip": "10.0.0.1"},
        Credentials("alice", "s3cret"),
        7,
    )
    assert argv[:3] == ["pppd", "/dev/ttyS0", "57600"]
    assert "10.0.0.2:10.0.0.1" in argv and "s3cret" not in " ".join(argv)
    assert argv[argv.index("passwordfd") + 1] == "7"
    assert argv[argv.index("user") + 1] == "alice"


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({"numbers": "1"}, "E.device", "needs 'device'"),
        ({"device": "/dev/ttyS0"}, "E.numbers", "needs 'numbers'"),
        ({"device": "/dev/ttyS0", "numbers": "555;ATH"}, "E.numbers", "not a phone number"),
        ({"device": "/dev/ttyS0", "numbers": "1\r+++"}, "E.numbers", "not a phone number"),
        ({"device": "/dev/ttyS0", "numbers": "1", "init": "ATZ\rATD911"}, "E.init", "one AT"),
        (
            {"device": "/dev/ttyS0", "numbers": "1", "redial_count": "-1"},
            "E.redial_count",
            "between",
        ),
        ({"device": "/dev/ttyS0", "numbers": "1", "baud": "fast"}, "E.baud", "between"),
        ({"device": "/dev/ttyS0", "numbers": "1", "local_ip": "10.0.0"}, "E.local_ip", "IPv4"),
        ({"device": "/dev/ttyS0", "numbers": "1", "carrier": "x25"}, "E.carrier", "auto, ppp"),
    ],
)
def test_edit_entry_names_the_bad_field(settings: dict[str, str], field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as error:
        ModemDialer().edit_entry(DialEntry("E", "modem", settings))
    assert error.value.field == field


def test_edit_entry_normalises_numbers() -> None:
    entry = ModemDialer().edit_entry(
        DialEntry("E", "modem", {"device": "/dev/ttyS0", "numbers": " 555-1000 ;; 9,5552000 "})
    )
    assert entry.settings["numbers"] == "555-1000;9,5552000"


def test_hang_up_from_a_fresh_dialer_ends_the_carrier(lab: Lab) -> None:
    need_root_and()
    server_ns, client_ns = lab.netns("s"), lab.netns("c")
    modem = start_modem_emulator(lab, {"5553000": "CONNECT 28800"}, far_ns=server_ns)

    async def scenario() -> None:
        entry = modem_entry(modem, client_ns, numbers="5553000")
        crashed = ModemDialer()
        link = await crashed.dial(entry, Credentials(), lambda down: None)
        assert netns_pids(client_ns)
        await ModemDialer().hang_up(link)
        for _ in range(100):
            if not netns_pids(client_ns):
                break
            await asyncio.sleep(0.05)
        assert netns_pids(client_ns) == []
        await crashed.hang_up(link)  # only to close this test's port; the carrier is gone

    asyncio.run(scenario())


def test_ppp_is_used_only_where_the_kernel_has_it() -> None:
    try:
        fd = os.open("/dev/ppp", os.O_RDWR)
    except OSError:
        kernel_ppp = False
    else:
        os.close(fd)
        kernel_ppp = True
    from shutil import which

    from opencm.links.modem import ppp_available

    assert ppp_available() == (kernel_ppp and which("pppd") is not None)
