"""The AT dialogue state machine and the redial loop, on a fake line and a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from opencm.links import codes, hayes
from opencm.links.api import DialError
from opencm.links.hayes import Dialogue, Event, Result, State, parse_result
from opencm.links.modem import DialPlan, dial_numbers
from opencm.testing import FakeClock


@pytest.mark.parametrize(
    ("line", "result", "speed"),
    [
        ("OK", Result.OK, None),
        ("CONNECT 28800", Result.CONNECT, 28800),
        ("CONNECT 33600/ARQ/V34", Result.CONNECT, 33600),
        ("CONNECT", Result.CONNECT, None),
        ("BUSY", Result.BUSY, None),
        ("NO CARRIER", Result.NO_CARRIER, None),
        ("NO DIALTONE", Result.NO_DIALTONE, None),
        ("NO DIAL TONE", Result.NO_DIALTONE, None),
        ("NO ANSWER", Result.NO_ANSWER, None),
        ("ERROR", Result.ERROR, None),
        ("RING", Result.RING, None),
        ("7", Result.BUSY, None),  # ATV0 numeric codes
        ("3", Result.NO_CARRIER, None),
        (" ok ", Result.OK, None),
    ],
)
def test_parse_result(line: str, result: Result, speed: int | None) -> None:
    assert parse_result(line) == hayes.ResultLine(result, speed)


@pytest.mark.parametrize("line", ["ATZ", "ATDT5551234", "", "CONNECTED TO FOO", "Hello"])
def test_chatter_is_not_a_result(line: str) -> None:
    assert parse_result(line) is None


_LINE_OF = {
    Event.OK: "OK",
    Event.CONNECT: "CONNECT 28800",
    Event.BUSY: "BUSY",
    Event.NO_CARRIER: "NO CARRIER",
    Event.NO_DIALTONE: "NO DIALTONE",
    Event.NO_ANSWER: "NO ANSWER",
    Event.ERROR: "ERROR",
    Event.RING: "RING",
}


def _dialogue_in(state: State) -> Dialogue:
    dialogue = Dialogue("5551234", init="ATZ", command_timeout=5, answer_timeout=60)
    if state is not State.IDLE:
        dialogue.start(0.0)
    if state is State.DIALING:
        dialogue.feed("OK", 0.0)
    assert dialogue.state is state
    return dialogue


@pytest.mark.parametrize(("key", "row"), list(hayes.TRANSITIONS.items()), ids=str)
def test_every_transition_row(
    key: tuple[State, Event], row: tuple[State, hayes.Step, int | None]
) -> None:
    state, event = key
    target, step, code = row
    dialogue = _dialogue_in(state)
    if event is Event.START:
        sent = dialogue.start(0.0)
    elif event is Event.TIMEOUT:
        sent = dialogue.tick(dialogue.deadline)
    else:
        sent = dialogue.feed(_LINE_OF[event], 1.0)
    assert dialogue.state is target
    assert dialogue.history[-1] == (state, event, target)
    if step is hayes.Step.SEND_INIT:
        assert sent == b"ATZ\r" and dialogue.deadline == 5.0
    elif step is hayes.Step.SEND_DIAL:
        assert sent == b"ATDT5551234\r" and dialogue.deadline == 61.0
    else:
        assert sent == b""
    if step is hayes.Step.FAIL:
        assert dialogue.outcome is not None and not dialogue.outcome.connected
        assert dialogue.outcome.code == code
    elif step is hayes.Step.DONE:
        assert dialogue.outcome == hayes.Outcome(True, "5551234", said="CONNECT", speed=28800)
    else:
        assert dialogue.outcome is None


def test_no_timeout_before_the_deadline_and_pulse_dialling() -> None:
    dialogue = Dialogue("123", init="AT&F", tone=False, command_timeout=2)
    assert dialogue.start(10.0) == b"AT&F\r"
    assert dialogue.tick(11.9) == b"" and dialogue.state is State.INIT
    assert dialogue.feed("OK", 11.9) == b"ATDP123\r"


def test_attempt_order() -> None:
    assert list(hayes.attempts(["1", "2"], 1)) == [(0, "1"), (0, "2"), (1, "1"), (1, "2")]


class FakeModem:
    """Answers like a modem: each number's script is consumed call by call; SILENT never answers.

    Reading with nothing to say advances the fake clock by the whole timeout, as real time would.
    """

    def __init__(self, clock: FakeClock, scripts: dict[str, list[str]], init: str = "OK") -> None:
        self.clock = clock
        self.scripts = scripts
        self.init_answer = init
        self.pending: list[str] = []
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.sent.append(data)
        command = data.decode().strip()
        if command.startswith("ATD"):
            number = command[4:]
            script = self.scripts[number]
            answer = script.pop(0) if len(script) > 1 else script[0]
            if answer != "SILENT":
                self.clock.now += 0.3  # ringing
                self.pending.append(answer)
        elif command.startswith("AT"):
            self.pending.append(self.init_answer)

    async def read_line(self, within: float) -> str | None:
        if self.pending:
            return self.pending.pop(0)
        self.clock.now += within
        return None


def run_plan(modem: FakeModem, clock: FakeClock, plan: DialPlan) -> hayes.Outcome:
    outcome, _ = asyncio.run(dial_numbers(modem, plan, clock=clock))
    return outcome


def test_busy_then_connect_with_redial_delay() -> None:
    clock = FakeClock(auto=True)
    modem = FakeModem(clock, {"5551000": ["BUSY", "BUSY", "CONNECT 28800"]})
    plan = DialPlan(("5551000",), redial_count=3, redial_delay=10)
    outcome = run_plan(modem, clock, plan)
    assert outcome.connected and outcome.speed == 28800
    assert clock.slept == [10, 10]  # two redials, each after the delay
    assert [data for data in modem.sent if data.startswith(b"ATD")] == [b"ATDT5551000\r"] * 3


def test_alternate_numbers_are_tried_in_order_before_waiting() -> None:
    clock = FakeClock(auto=True)
    modem = FakeModem(clock, {"1": ["BUSY"], "2": ["NO ANSWER"], "3": ["CONNECT 33600"]})
    outcome = run_plan(modem, clock, DialPlan(("1", "2", "3"), redial_count=2, redial_delay=7))
    assert outcome.number == "3"
    assert clock.slept == []


def test_all_busy_gives_the_last_code_and_the_summary() -> None:
    clock = FakeClock(auto=True)
    modem = FakeModem(clock, {"1": ["BUSY"], "2": ["NO CARRIER"]})
    with pytest.raises(DialError) as failed:
        run_plan(modem, clock, DialPlan(("1", "2"), redial_count=1, redial_delay=3))
    assert failed.value.code == codes.NO_CARRIER
    assert "4 call(s)" in str(failed.value) and "1: BUSY" in str(failed.value)
    assert clock.slept == [3]


def test_no_dialtone_and_timeout() -> None:
    clock = FakeClock(auto=True)
    with pytest.raises(DialError) as no_tone:
        run_plan(FakeModem(clock, {"1": ["NO DIALTONE"]}), clock, DialPlan(("1",)))
    assert no_tone.value.code == codes.NO_DIALTONE
    clock = FakeClock(auto=True)
    with pytest.raises(DialError) as silent:
        run_plan(FakeModem(clock, {"1": ["SILENT"]}), clock, DialPlan(("1",), answer_timeout=45))
    assert silent.value.code == codes.NO_ANSWER
    assert clock.now == pytest.approx(45.0)  # the fake clock ran exactly the answer timeout


def test_init_error_is_not_retried() -> None:
    clock = FakeClock(auto=True)
    modem = FakeModem(clock, {"1": ["CONNECT"]}, init="ERROR")
    with pytest.raises(DialError) as failed:
        run_plan(modem, clock, DialPlan(("1",), redial_count=5))
    assert failed.value.code == codes.FROM_DEVICE and not failed.value.retryable
    assert len(modem.sent) == 1
