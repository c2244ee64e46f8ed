"""The modem dialer: a Hayes AT dialogue over a serial port, then IP over the line.

The dialogue (:mod:`opencm.links.hayes`) tries the entry's numbers in order, ``1 + redial_count``
passes with ``redial_delay`` seconds between passes. After ``CONNECT`` the line is handed on:

- to **pppd** when the kernel has PPP (``/dev/ppp`` opens); the password goes to pppd over a
  pipe (``passwordfd`` plug-in), never on its command line;
- otherwise to opencm's **userspace SLIP bridge** (:mod:`opencm.links.slip`), which makes a TUN
  device with ``local_ip``/``peer_ip``. That is how the tests and the demo carry IP, and then an
  OpenVPN tunnel, over the emulated line (this kernel has neither PPP nor SLIP).

Settings of an entry:

``device`` (required)      serial port, e.g. ``/dev/ttyS0`` or ``/dev/ttyUSB0``
``numbers`` (required)     phone numbers separated by ``;``, tried in order
``init``                   init string (default ``ATZ``)
``baud``                   line speed (default 115200)
``netns``                  network namespace that gets the link's device
``local_ip``, ``peer_ip``  the link's addresses (required for SLIP; pppd negotiates them)
``interface``              device name (default ``ocmsl`` + 4 hex digits, SLIP only)
``carrier``                ``auto`` (default), ``ppp`` or ``slip``
``redial_count``           extra passes over the numbers after the first (default 0)
``redial_delay``           seconds between passes (default 5)
``dial_mode``              ``tone`` (default) or ``pulse``
``answer_timeout``         seconds to wait for CONNECT after ATD (default 60)
``command_timeout``        seconds to wait for OK (default 5)
``escape_guard``           the ``+++`` guard time in seconds (default 1, the Hayes S12 default)
``mtu``                    link MTU (default 1006, SLIP's traditional value)
``login``                  ``none`` (default) or ``prompt``: the access server asks for the
                           dial-up credentials at a text prompt (``login:``/``Username:``, then
                           ``Password:``) before IP starts, as SLIP access servers did; pppd
                           sends them itself (PAP/CHAP)

A carrier loss while up (the modem's unsolicited ``NO CARRIER``, or the port hanging up) is
reported as :attr:`DownReason.CARRIER_LOST`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import serial  # pyserial

from opencm.clock import Clock, RealClock
from opencm.errors import InputError
from opencm.links import codes, hayes, proc, slip
from opencm.links.api import (
    Credentials,
    DialEntry,
    DialError,
    DownReason,
    LinkDown,
    LinkDownCallback,
    LinkInfo,
    ProfileKeys,
    Stage,
)
from opencm.links.base import LinkDialer
from opencm.links.settings import check_netns, check_settings, existing_netns
from opencm.links.tasks import LinkState
from opencm.process import end_async_child

SETTINGS = (
    "device", "numbers", "init", "baud", "netns", "local_ip", "peer_ip", "interface", "carrier",
    "redial_count", "redial_delay", "dial_mode", "answer_timeout", "command_timeout",
    "escape_guard", "mtu", "login",
)  # fmt: skip
NUMBER_SETTINGS = {
    "baud": (int, 300, 4_000_000),
    "redial_count": (int, 0, 99),
    "redial_delay": (float, 0, 3600),
    "answer_timeout": (float, 0.1, 600),
    "command_timeout": (float, 0.1, 120),
    "escape_guard": (float, 0.02, 10),
    "mtu": (int, 296, 65535),
}


class Line(Protocol):
    """A serial line as the dialogue needs it; :class:`SerialLine` is the real one."""

    def write(self, data: bytes) -> None: ...

    async def read_line(self, within: float) -> str | None:
        """The next non-empty line from the modem, or None after ``within`` seconds."""
        ...


class SerialLine:
    """A serial port opened with pyserial, read through the event loop."""

    def __init__(self, device: str, baud: int) -> None:
        self.port = serial.Serial(device, baud, timeout=0, exclusive=True)
        self._buffer = b""
        self._lines: list[str] = []

    def fileno(self) -> int:
        return int(self.port.fileno())

    def write(self, data: bytes) -> None:
        if data:
            os.set_blocking(self.fileno(), True)  # a short blocking write; the port is ours
            try:
                os.write(self.fileno(), data)
            finally:
                os.set_blocking(self.fileno(), False)

    async def read_line(self, within: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        os.set_blocking(self.fileno(), False)
        while not self._lines:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            data = await self.read_some(remaining)
            if data is None:
                return None
            self._split(data)
        return self._lines.pop(0)

    async def read_some(self, within: float) -> bytes | None:
        """What the modem sends next: None when nothing comes within ``within`` seconds, ``b""``
        when the port woke up with nothing to read; DialError when the line hung up."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        loop.add_reader(self.fileno(), _wake, readable)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
            # arrives as the port becomes readable, and Cancel would then be lost until the
            # answer timeout (seen: 60 s) instead of aborting the call at once.
            async with asyncio.timeout(within):
                await readable
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(self.fileno())
        try:
            data = os.read(self.fileno(), 4096)
        except BlockingIOError:
            return b""
        except OSError as error:
            raise DialError(
                f"the serial line hung up: {error.strerror}", code=codes.PORT_DISCONNECTED
            ) from None
        if not data:
            raise DialError("the serial line hung up", code=codes.PORT_DISCONNECTED)
        return data

    def _split(self, data: bytes) -> None:
        self._buffer += data.replace(b"\n", b"\r")
        *complete, self._buffer = self._buffer.split(b"\r")
        self._lines += [text for raw in complete if (text := raw.decode(errors="replace").strip())]

    def take_pending(self) -> bytes:
        """What was read but not yet consumed as lines (the start of what follows CONNECT)."""
        pending = "\r".join(self._lines).encode() + (b"\r" if self._lines else b"") + self._buffer
        self._buffer, self._lines = b"", []
        return pending

    def discard_input(self) -> None:
        self._buffer, self._lines = b"", []
        with contextlib.suppress(OSError):
            self.port.reset_input_buffer()

    def close(self) -> None:
        with contextlib.suppress(OSError, serial.SerialException):
            self.port.close()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run_dialogue(line: Line, dialogue: hayes.Dialogue, clock: Clock) -> hayes.Outcome:
    """Drive one :class:`~opencm.links.hayes.Dialogue` to its outcome."""
    line.write(dialogue.start(clock.monotonic()))
    while dialogue.outcome is None:
        text = await line.read_line(max(0.0, dialogue.deadline - clock.monotonic()))
        now = clock.monotonic()
        if text is not None:
            line.write(dialogue.feed(text, now))
        line.write(dialogue.tick(now))
    return dialogue.outcome


@dataclass(frozen=True)
class DialPlan:
    numbers: tuple[str, ...]
    init: str = "ATZ"
    tone: bool = True
    redial_count: int = 0
    redial_delay: float = 5.0
    command_timeout: float = 5.0
    answer_timeout: float = 60.0


async def dial_numbers(
    line: Line,
    plan: DialPlan,
    *,
    clock: Clock,
    on_attempt: Callable[[hayes.Outcome], None] = lambda _: None,
) -> tuple[hayes.Outcome, list[hayes.Outcome]]:
    """Try the numbers in order, pass after pass, until one connects; raise :class:`DialError`."""
    tried: list[hayes.Outcome] = []
    for round_, number in hayes.attempts(plan.numbers, plan.redial_count):
        if tried and number == plan.numbers[0] and round_ > 0:
            await clock.sleep(plan.redial_delay)
        dialogue = hayes.Dialogue(
            number,
            init=plan.init,
            tone=plan.tone,
            command_timeout=plan.command_timeout,
            answer_timeout=plan.answer_timeout,
        )
        outcome = await run_dialogue(line, dialogue, clock)
        tried.append(outcome)
        on_attempt(outcome)
        if outcome.connected:
            return outcome, tried
        if outcome.code not in hayes.RETRYABLE:
            break
    last = tried[-1]
    summary = "; ".join(f"{outcome.number}: {outcome.said}" for outcome in tried)
    raise DialError(
        f"no connection after {len(tried)} call(s) ({summary})",
        code=last.code or codes.NO_ANSWER,
        retryable=last.code in hayes.RETRYABLE,
    )


def ppp_available() -> bool:
    """True when pppd can work here: the kernel's PPP device opens."""
    if shutil.which("pppd") is None:
        return False
    try:
        fd = os.open("/dev/ppp", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def pppd_argv(
    line_fd: int, settings: dict[str, str], credentials: Credentials, password_fd: int | None
) -> list[str]:
    """pppd on the already dialled line (fd 0 via ``pppd`` reading stdin is not portable, so the
    device path is given and opencm keeps its own descriptor open to hold the call)."""
    argv = ["pppd", settings["device"], settings.get("baud") or "115200", "nodetach", "local"]
    argv += ["noauth", "nodefaultroute", "noipdefault", "usepeerdns"]
    if settings.get("local_ip") or settings.get("peer_ip"):
        argv.append(f"{settings.get('local_ip', '')}:{settings.get('peer_ip', '')}")
    if credentials.username:
        argv += ["user", credentials.username]
    if password_fd is not None:
        argv += ["plugin", "passwordfd.so", "passwordfd", str(password_fd)]
    argv += ["mtu", settings.get("mtu") or "1500"]
    del line_fd  # held open by opencm, not passed: pppd opens the device itself
    return argv


@dataclass(eq=False)
class _Link(LinkState):
    entry: DialEntry
    line: SerialLine
    carrier: asyncio.subprocess.Process
    guard: float
    carrier_lost: bool = False


class ModemDialer(LinkDialer[_Link]):
    """The ``modem`` built-in dialer (see the module documentation for its settings).

    The modem dialogue needs nothing from the user (cancelling ``dial`` aborts the call), and
    the dialer stores nothing per entry.
    """

    name = "modem"
    # The dial-up link: its settings come from the [opencm] Modem* keys, not Link&.
    profile_keys = ProfileKeys(stage=Stage.DIAL, netns=True)

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        on_attempt: Callable[[hayes.Outcome], None] = lambda _: None,
    ) -> None:
        super().__init__()
        self._clock = clock or RealClock()
        self._on_attempt = on_attempt

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        entry = self.edit_entry(entry)
        settings = dict(entry.settings)
        netns = existing_netns(entry)
        use_ppp = _choose_ppp(settings.get("carrier") or "auto")
        if not use_ppp and not (settings.get("local_ip") and settings.get("peer_ip")):
            raise DialError(
                f"{entry.name}: without PPP the line needs local_ip and peer_ip",
                code=codes.BAD_ENTRY,
                retryable=False,
            )
        try:
            line = SerialLine(settings["device"], int(settings.get("baud") or 115200))
        except (serial.SerialException, OSError) as error:
            raise DialError(
                f"{entry.name}: cannot open {settings['device']}: {error}",
                code=codes.PORT_NOT_AVAILABLE,
            ) from None
        try:
            outcome, _ = await dial_numbers(
                line,
                _plan(settings),
                clock=self._clock,
                on_attempt=self._on_attempt,
            )
            if settings.get("login") == "prompt" and not use_ppp:
                await terminal_login(line, credentials, float(settings.get("answer_timeout") or 60))
            interface = settings.get("interface") or f"ocmsl{secrets.token_hex(2)}"
            carrier = await self._start_carrier(
                line, settings, interface, netns, credentials, use_ppp
            )
        except BaseException:
            await _abort_call(line)
            raise
        link_id = secrets.token_hex(6)
        guard = float(settings.get("escape_guard") or 1.0)
        link = _Link(entry, line, carrier, guard, on_down=on_down, up=True)
        self._links[link_id] = link
        link.tasks.spawn(self._watch_carrier(link))
        return LinkInfo(
            entry=entry.name,
            interface=interface if not use_ppp else None,
            client_ip=settings.get("local_ip") or None,
            server_ip=settings.get("peer_ip") or None,
            tunnel_server=None,
            handle={
                "id": link_id,
                "pid": str(carrier.pid),
                "device": settings["device"],
                "number": outcome.number,
                "speed": str(outcome.speed or ""),
                "carrier": "ppp" if use_ppp else "slip",
                "netns": netns or "",
            },
        )

    async def _end_orphan(self, handle: Mapping[str, str]) -> None:
        # The daemon restarted: end the carrier by its PID; closing its port drops DTR.
        carrier = "pppd" if handle.get("carrier") == "ppp" else "opencm.links.slip"
        await proc.end_orphan(handle, carrier)

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        settings = check_settings(entry, SETTINGS)
        where = entry.name
        if not settings.get("device", "").strip():
            raise InputError(
                "a modem entry needs 'device' (the serial port)", field=f"{where}.device"
            )
        numbers = hayes.split_numbers(settings.get("numbers", ""))
        if not numbers:
            raise InputError(
                "a modem entry needs 'numbers' (phone numbers separated by ';')",
                field=f"{where}.numbers",
            )
        for number in numbers:
            if not hayes.is_dialable(number):
                raise InputError(
                    f"{number!r} is not a phone number (digits, spaces, '-', ',', '*', '#', 'W')",
                    field=f"{where}.numbers",
                )
        settings["numbers"] = ";".join(numbers)
        init = settings.get("init", "ATZ")
        if not init.upper().startswith("AT") or any(char in init for char in "\r\n"):
            raise InputError(
                f"init string {init!r} must be one AT command line", field=f"{where}.init"
            )
        for key, (kind, low, high) in NUMBER_SETTINGS.items():
            if settings.get(key):
                try:
                    value = kind(settings[key])
                    if not low <= value <= high:
                        raise ValueError
                except ValueError:
                    raise InputError(
                        f"{settings[key]!r} is not a number between {low} and {high}",
                        field=f"{where}.{key}",
                    ) from None
        check_netns(entry, settings)
        if settings.get("carrier", "auto") not in ("auto", "ppp", "slip"):
            raise InputError("carrier must be auto, ppp or slip", field=f"{where}.carrier")
        if settings.get("login", "none") not in ("none", "prompt"):
            raise InputError("login must be none or prompt", field=f"{where}.login")
        if settings.get("dial_mode", "tone") not in ("tone", "pulse"):
            raise InputError("dial_mode must be tone or pulse", field=f"{where}.dial_mode")
        for key in ("local_ip", "peer_ip"):
            if settings.get(key):
                _check_ipv4(settings[key], f"{where}.{key}")
        return replace(entry, settings=settings)

    # -- internals -----------------------------------------------------------------------------

    async def _start_carrier(
        self,
        line: SerialLine,
        settings: dict[str, str],
        interface: str,
        netns: str | None,
        credentials: Credentials,
        use_ppp: bool,
    ) -> asyncio.subprocess.Process:
        fd = line.fileno()
        if use_ppp:
            return await self._start_pppd(fd, settings, netns, credentials)
        os.set_blocking(fd, True)  # the bridge does its own select(); the description is shared
        argv = [
            sys.executable, "-m", "opencm.links.slip", "--fd", str(fd), "--dev", interface,
            "--addr", settings["local_ip"], "--peer", settings["peer_ip"],
            "--mtu", settings.get("mtu") or "1006",
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *proc.netns_argv(netns, argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(fd,),
            start_new_session=True,
        )
        proc.started(process.pid)
        assert process.stdout is not None
        ready = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                ready = await process.stdout.readline()
        if ready.strip() != b"up":
            await end_async_child(process)
            err = (await process.stderr.read()).decode(errors="replace") if process.stderr else ""
            raise DialError(
                f"the line connected but IP over it did not start: {err.strip()}",
                code=codes.PORT_DISCONNECTED,
            )
        return process

    async def _start_pppd(
        self, fd: int, settings: dict[str, str], netns: str | None, credentials: Credentials
    ) -> asyncio.subprocess.Process:
        password_read: int | None = None
        if credentials.password is not None:
            password_read, password_write = os.pipe()
            os.write(password_write, credentials.password.encode())
            os.close(password_write)
        try:
            argv = pppd_argv(fd, settings, credentials, password_read)
            process = await asyncio.create_subprocess_exec(
                *proc.netns_argv(netns, argv),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(password_read,) if password_read is not None else (),
                start_new_session=True,
            )
            proc.started(process.pid)
            return process
        finally:
            if password_read is not None:
                os.close(password_read)

    async def _watch_carrier(self, link: _Link) -> None:
        status = await link.carrier.wait()
        if link.closing or link.down_reported:
            return
        if status == slip.EXIT_NO_CARRIER:
            down = LinkDown(DownReason.CARRIER_LOST, "the modem reported NO CARRIER")
            link.carrier_lost = True
        elif status == slip.EXIT_HANGUP:
            down = LinkDown(DownReason.CARRIER_LOST, "the serial line hung up")
            link.carrier_lost = True
        else:
            down = LinkDown(
                DownReason.PROCESS_EXITED, f"the line's carrier process exited ({status})"
            )
        self._report_down(link, down)

    async def _stop(self, link: _Link) -> None:
        await end_async_child(link.carrier)
        if not link.carrier_lost:
            await _escape_and_hang_up(link.line, link.guard)
        link.line.close()  # closing the port drops DTR: the last word on any call


_USER_PROMPTS = (b"login:", b"username:", b"user name:")
_GRANTED = (b"slip", b"ppp", b"granted", b"started")
_REFUSED = (b"incorrect", b"denied", b"invalid", b"no carrier", b"failed")


async def terminal_login(line: SerialLine, credentials: Credentials, within: float) -> None:
    """Answer an access server's text login with the dial-up credentials.

    Waits for a user-name prompt, sends the user name, waits for ``Password:``, sends the
    password, then for the server's word that IP starts (``SLIP``, ``PPP``, ``granted``,
    ``started``) or that it refused (``incorrect``, ``denied`` …: RAS error 691).
    """
    if not credentials.username or credentials.password is None:
        raise DialError(
            "the access server asks for a user name and password: none were given",
            code=codes.AUTHENTICATION_FAILURE,
            retryable=False,
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen = line.take_pending()

    async def until(words: tuple[bytes, ...], what: str) -> None:
        nonlocal seen
        while True:
            folded = seen.lower()
            if any(word in folded for word in _REFUSED):
                raise DialError(
                    f"the access server refused the dial-up credentials ({what})",
                    code=codes.AUTHENTICATION_FAILURE,
                    retryable=False,
                )
            if any(folded.rstrip().endswith(word) or word in folded for word in words):
                seen = b""
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DialError(
                    f"the access server did not answer at its login ({what})",
                    code=codes.NO_ANSWER,
                )
            seen += await line.read_some(remaining) or b""

    os.set_blocking(line.fileno(), False)
    await until(_USER_PROMPTS, "waiting for the user-name prompt")
    line.write(credentials.username.encode() + b"\r")
    await until((b"password:",), "waiting for the password prompt")
    line.write(credentials.password.encode() + b"\r")
    await until(_GRANTED, "after the password")


async def _escape_and_hang_up(line: SerialLine, guard: float) -> None:
    """``+++`` with the guard time around it, then ``ATH0``; best effort, DTR follows anyway."""
    with contextlib.suppress(DialError, OSError):
        os.set_blocking(line.fileno(), False)
        line.discard_input()
        await asyncio.sleep(guard * 1.1)
        line.write(b"+++")
        deadline = guard * 1.1 + 2.0
        while (text := await line.read_line(deadline)) is not None:
            if text == "OK":
                break
        line.write(b"ATH0\r")
        while (text := await line.read_line(2.0)) is not None:
            if text in ("OK", "NO CARRIER"):
                break


async def _abort_call(line: SerialLine) -> None:
    """A failed or cancelled dial: any key aborts the ringing; closing the port (DTR) follows.

    The modem gets half a second to answer the keystroke, so that it has read it before the
    port closes; a modem that is slower still hangs up on the DTR drop.
    """
    with contextlib.suppress(DialError, OSError, TimeoutError):
        line.write(b"\r")
        async with asyncio.timeout(0.5):
            while (text := await line.read_line(0.5)) is not None:
                if hayes.parse_result(text) is not None:
                    break
    line.close()


def _plan(settings: dict[str, str]) -> DialPlan:
    return DialPlan(
        numbers=tuple(
            "".join(c for c in number if c not in " -()")
            for number in hayes.split_numbers(settings["numbers"])
        ),
        init=settings.get("init") or "ATZ",
        tone=(settings.get("dial_mode") or "tone") == "tone",
        redial_count=int(settings.get("redial_count") or 0),
        redial_delay=float(settings.get("redial_delay") or 5),
        command_timeout=float(settings.get("command_timeout") or 5),
        answer_timeout=float(settings.get("answer_timeout") or 60),
    )


def _choose_ppp(carrier: str) -> bool:
    if carrier == "slip":
        return False
    available = ppp_available()
    if carrier == "ppp" and not available:
        raise DialError(
            "carrier 'ppp' asked for, but this kernel has no PPP (/dev/ppp does not open)",
            code=codes.BAD_ENTRY,
            retryable=False,
        )
    return available


def _check_ipv4(value: str, where: str) -> None:
    import ipaddress

    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise InputError(f"{value!r} is not an IPv4 address", field=where) from None
