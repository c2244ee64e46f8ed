"""The Hayes AT dialogue as an explicit state machine, free of I/O and of real time.

:class:`Dialogue` is one call: send the init string, wait for ``OK``, send ``ATDT<number>``, wait
for ``CONNECT``. It consumes result lines and clock readings and answers with what to send next,
so that it is tested line by line with a fake clock; :mod:`opencm.links.modem` drives it over a
real serial port. :func:`attempts` spells out the redial order: every number of the entry in turn,
``1 + RedialCount`` times, with ``RedialDelay`` between passes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from opencm.links import codes


class Result(enum.Enum):
    """Modem result codes, verbose text and their numeric (``ATV0``) forms."""

    OK = ("OK", "0")
    CONNECT = ("CONNECT", "1")
    RING = ("RING", "2")
    NO_CARRIER = ("NO CARRIER", "3")
    ERROR = ("ERROR", "4")
    NO_DIALTONE = ("NO DIALTONE", "6")
    BUSY = ("BUSY", "7")
    NO_ANSWER = ("NO ANSWER", "8")

    @property
    def text(self) -> str:
        return self.value[0]


_NUMERIC = {result.value[1]: result for result in Result}
_CONNECT = re.compile(r"CONNECT(?:\s+(\d+))?(?:/.*)?$")


@dataclass(frozen=True)
class ResultLine:
    result: Result
    #: The line speed of ``CONNECT 28800`` (None when the modem gave none).
    speed: int | None = None


def parse_result(line: str) -> ResultLine | None:
    """A result code from one line the modem sent, or None for echo and other chatter."""
    text = line.strip().upper()
    if text in _NUMERIC:
        return ResultLine(_NUMERIC[text])
    if text == "NO DIAL TONE":
        return ResultLine(Result.NO_DIALTONE)
    if match := _CONNECT.match(text):
        return ResultLine(Result.CONNECT, int(match.group(1)) if match.group(1) else None)
    for result in Result:
        if text == result.text:
            return ResultLine(result)
    return None


class State(enum.Enum):
    IDLE = "idle"
    INIT = "init"  # init string sent, waiting for OK
    DIALING = "dialing"  # ATD sent, waiting for CONNECT or a failure
    CONNECTED = "connected"
    FAILED = "failed"


class Event(enum.Enum):
    START = "start"
    OK = "ok"
    CONNECT = "connect"
    BUSY = "busy"
    NO_CARRIER = "no-carrier"
    NO_DIALTONE = "no-dialtone"
    NO_ANSWER = "no-answer"
    ERROR = "error"
    RING = "ring"
    TIMEOUT = "timeout"


_EVENT_OF = {
    Result.OK: Event.OK,
    Result.CONNECT: Event.CONNECT,
    Result.BUSY: Event.BUSY,
    Result.NO_CARRIER: Event.NO_CARRIER,
    Result.NO_DIALTONE: Event.NO_DIALTONE,
    Result.NO_ANSWER: Event.NO_ANSWER,
    Result.ERROR: Event.ERROR,
    Result.RING: Event.RING,
}


class Step(enum.Enum):
    """What the driver does on a transition."""

    SEND_INIT = "send-init"
    SEND_DIAL = "send-dial"
    WAIT = "wait"  # nothing to send, keep waiting (same deadline)
    DONE = "done"
    FAIL = "fail"


#: (state, event) → (next state, step, RAS error code when the step is FAIL).
TRANSITIONS: dict[tuple[State, Event], tuple[State, Step, int | None]] = {
    (State.IDLE, Event.START): (State.INIT, Step.SEND_INIT, None),
    (State.INIT, Event.OK): (State.DIALING, Step.SEND_DIAL, None),
    (State.INIT, Event.ERROR): (State.FAILED, Step.FAIL, codes.FROM_DEVICE),
    (State.INIT, Event.TIMEOUT): (State.FAILED, Step.FAIL, codes.DEVICE_TIMEOUT),
    (State.INIT, Event.RING): (State.INIT, Step.WAIT, None),
    (State.DIALING, Event.CONNECT): (State.CONNECTED, Step.DONE, None),
    (State.DIALING, Event.BUSY): (State.FAILED, Step.FAIL, codes.LINE_BUSY),
    (State.DIALING, Event.NO_CARRIER): (State.FAILED, Step.FAIL, codes.NO_CARRIER),
    (State.DIALING, Event.NO_DIALTONE): (State.FAILED, Step.FAIL, codes.NO_DIALTONE),
    (State.DIALING, Event.NO_ANSWER): (State.FAILED, Step.FAIL, codes.NO_ANSWER),
    (State.DIALING, Event.ERROR): (State.FAILED, Step.FAIL, codes.FROM_DEVICE),
    (State.DIALING, Event.TIMEOUT): (State.FAILED, Step.FAIL, codes.NO_ANSWER),
    (State.DIALING, Event.OK): (State.DIALING, Step.WAIT, None),  # a stray OK (ATX0 modems)
    (State.DIALING, Event.RING): (State.DIALING, Step.WAIT, None),
}

#: Failures after which trying again (another number, another pass) makes sense.
RETRYABLE = frozenset(
    {codes.LINE_BUSY, codes.NO_CARRIER, codes.NO_ANSWER, codes.NO_DIALTONE, codes.DEVICE_TIMEOUT}
)


@dataclass(frozen=True)
class Outcome:
    """Where a :class:`Dialogue` ended."""

    connected: bool
    number: str
    code: int | None = None
    #: What the modem said last (``BUSY``, ``NO CARRIER``, ``timeout`` …).
    said: str = ""
    speed: int | None = None


class Dialogue:
    """One dial attempt: init, then ATD; call :meth:`start`, then :meth:`feed`/:meth:`tick`.

    Each method returns the bytes to write to the modem (possibly empty). :attr:`outcome` is set
    once the attempt connected or failed.
    """

    def __init__(
        self,
        number: str,
        *,
        init: str = "ATZ",
        tone: bool = True,
        command_timeout: float = 5.0,
        answer_timeout: float = 60.0,
    ) -> None:
        self.number = number
        self.init = init
        self.tone = tone
        self.command_timeout = command_timeout
        self.answer_timeout = answer_timeout
        self.state = State.IDLE
        self.deadline = 0.0
        self.outcome: Outcome | None = None
        self.history: list[tuple[State, Event, State]] = []

    def start(self, now: float) -> bytes:
        return self._fire(Event.START, now)

    def feed(self, line: str, now: float) -> bytes:
        parsed = parse_result(line)
        if parsed is None or self.outcome is not None:
            return b""
        return self._fire(_EVENT_OF[parsed.result], now, parsed)

    def tick(self, now: float) -> bytes:
        if self.outcome is None and self.state is not State.IDLE and now >= self.deadline:
            return self._fire(Event.TIMEOUT, now)
        return b""

    def _fire(self, event: Event, now: float, parsed: ResultLine | None = None) -> bytes:
        row = TRANSITIONS.get((self.state, event))
        if row is None:
            return b""  # e.g. a RING while idle: not ours to act on
        target, step, code = row
        self.history.append((self.state, event, target))
        self.state = target
        said = parsed.result.text if parsed else event.value
        if step is Step.SEND_INIT:
            self.deadline = now + self.command_timeout
            return (self.init + "\r").encode()
        if step is Step.SEND_DIAL:
            self.deadline = now + self.answer_timeout
            return f"ATD{'T' if self.tone else 'P'}{self.number}\r".encode()
        if step is Step.DONE:
            self.outcome = Outcome(
                True, self.number, said=said, speed=parsed.speed if parsed else None
            )
        elif step is Step.FAIL:
            self.outcome = Outcome(False, self.number, code, said)
        return b""


def attempts(numbers: Sequence[str], redial_count: int) -> Iterator[tuple[int, str]]:
    """(pass, number) in dialling order: each number in turn, ``1 + redial_count`` passes."""
    for round_ in range(redial_count + 1):
        for number in numbers:
            yield round_, number


def split_numbers(value: str) -> list[str]:
    """``"5551000; 5552000"`` → the numbers in order (check each with :func:`is_dialable`)."""
    return [item.strip() for item in value.split(";") if item.strip()]


_DIALABLE = re.compile(r"[0-9*#,WwPpTt+ ()-]+")


def is_dialable(number: str) -> bool:
    """A number the modem can take after ATD (digits, ``*#,W``, spaces and dashes)."""
    return bool(_DIALABLE.fullmatch(number)) and any(char.isdigit() for char in number)
