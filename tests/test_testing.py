"""opencm.testing: the public doubles obey the contracts they stand in for."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from opencm.clock import Clock
from opencm.errors import RefusedError
from opencm.links import registry
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, DownReason, LinkDown
from opencm.testing import Dialers, FakeClock, ScriptedDialer, crash, fail, hang, up


def test_scripted_dialer_has_the_five_entry_points_the_registry_demands() -> None:
    dialer = ScriptedDialer("scripted")
    assert registry.missing_entry_points(dialer) == []
    assert isinstance(dialer, Dialer)


def test_scripted_dialer_follows_its_script_and_reports_a_drop() -> None:
    entry = DialEntry("Contoso", "scripted")
    downs: list[LinkDown] = []
    dialer = ScriptedDialer(
        "scripted", [fail(718, retryable=False), crash(), up(client_ip="10.9.0.2")]
    )

    async def scenario() -> None:
        with pytest.raises(DialError) as failed:
            await dialer.dial(entry, Credentials(), downs.append)
        assert (failed.value.code, failed.value.retryable) == (718, False)
        with pytest.raises(RuntimeError):
            await dialer.dial_dialog(entry, Credentials(), downs.append)
        link = await dialer.dial(entry, Credentials(), downs.append)
        assert link.client_ip == "10.9.0.2"
        await dialer.drop(DownReason.CARRIER_LOST, "line dropped")
        await dialer.hang_up(link)

    anyio.run(scenario)
    assert downs == [LinkDown(DownReason.CARRIER_LOST, "line dropped")]
    assert dialer.dialed == ["Contoso"] * 3
    assert dialer.hung_up == ["Contoso"]


def test_a_hanging_dial_ends_only_by_cancel() -> None:
    dialer = ScriptedDialer("scripted", [hang()])

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(dialer.dial, DialEntry("E", "scripted"), Credentials(), print)
            await dialer.dialing.wait()
            group.cancel_scope.cancel()

    anyio.run(scenario)
    assert dialer.cancelled == 1


def test_dialers_lookup_refuses_an_unknown_name() -> None:
    lookup = Dialers([ScriptedDialer("openvpn")])
    assert lookup("openvpn").name == "openvpn"
    with pytest.raises(RefusedError):
        lookup("modem")


def test_fake_clock_wakes_a_sleeper_only_when_its_time_has_come() -> None:
    fake = FakeClock()
    clock: Clock = fake  # type-checked: the double satisfies the seam's protocol
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(30)
        woke.append(clock.monotonic())

    async def scenario() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(sleeper)
            await fake.wait_for_sleepers(1)
            fake.advance(29.9)
            await anyio.lowlevel.checkpoint()
            assert woke == []
            fake.advance(0.1)

    anyio.run(scenario)
    assert woke == [pytest.approx(30.0)]
    assert clock.wall() - clock.monotonic() == FakeClock.EPOCH


def test_auto_fake_clock_moves_time_by_each_sleep() -> None:
    clock = FakeClock(auto=True)
    anyio.run(clock.sleep, 5.0)
    anyio.run(clock.sleep, 2.5)
    assert clock.monotonic() == 7.5
    assert clock.slept == [5.0, 2.5]
