"""opencm's own Hayes modem emulator on a pseudo-terminal, for tests and demos without hardware.

It creates a pty and links its slave side to ``--link`` (the "serial port" a dialer opens), then
answers AT commands like a dial-up modem. What each number does is scripted with
``--number NUMBER=R1,R2,…``: the first dial of NUMBER gets R1, the next R2, and the last result
repeats, so ``--number 5551000=BUSY,BUSY,CONNECT 28800`` is busy twice, then answers. Results:
``CONNECT [speed]``, ``BUSY``, ``NO CARRIER``, ``NO ANSWER``, ``NO DIALTONE``, ``ERROR`` and
``SILENT`` (never answers: the dialer's timeout). Unknown numbers get ``NO CARRIER``.

In data mode the bytes go to the far end of the line: with ``--remote PATH`` a second pty, whose
user (the SLIP bridge in a server namespace) plays the ISP; without it they are echoed. The modem
hangs up on ``+++`` (guard time ``--guard``) then ``ATH``, when every process closes the port
(what a DTR drop looks like on a pty, which has no modem-control lines), and on SIGUSR1, which
simulates a lost carrier: an unsolicited ``NO CARRIER``. Keystrokes while it rings abort the call.
With ``--login USER:PASSWORD`` the far end is an access server with a text login: after
``CONNECT`` it asks ``login:`` and ``Password:`` and starts IP only for that user (others get
``Login incorrect`` and the line is dropped), as SLIP access servers did.
Each event is one line in ``--log``.

usage: python -m opencm_lab.modem_emulator --link PATH [--number N=RESULTS]... [--remote PATH]
           [--dial-delay S] [--guard S] [--login USER:PASSWORD] [--log FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import sys
import time
import tty
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

_NUMERIC = {"OK": 0, "CONNECT": 1, "RING": 2, "NO CARRIER": 3, "ERROR": 4, "NO DIALTONE": 6,
            "BUSY": 7, "NO ANSWER": 8}  # fmt: skip
SILENT = "SILENT"


class Modem:
    """The modem's logic; the pty loop in :func:`serve` feeds it bytes and clock readings."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        to_far_end: Callable[[bytes], None] | None,
        scripts: Mapping[str, Sequence[str]],
        *,
        dial_delay: float = 0.3,
        guard: float = 1.0,
        log: Callable[[str], None] = lambda _: None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self._send = send
        self._login = login
        self._login_step: str | None = None  # "user" or "password" while the server asks
        self._login_user = ""
        self._far = to_far_end
        self._scripts = {number: list(results) for number, results in scripts.items()}
        self._dials: dict[str, int] = {}
        self.dial_delay = dial_delay
        self.guard = guard
        self._log = log
        self.echo = True
        self.verbose = True
        self.online = False  # data mode
        self.connected = False  # carrier up (online or escaped to command mode)
        self._buffer = b""
        self._ringing: tuple[str, float] | None = None  # (result, when it is due)
        self._last_data = 0.0
        self._plus = 0
        self._plus_at = 0.0

    # -- input ------------------------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> None:
        if self._ringing is not None:
            self._log("dial aborted by a keystroke")
            self._ringing = None
            self._result("NO CARRIER")
            return
        if self._login_step is not None:
            self._feed_login(data)
            return
        if self.online:
            self._feed_data(data, now)
            return
        if self.echo:
            self._send(data)
        self._buffer += data
        while b"\r" in self._buffer:
            line, self._buffer = self._buffer.split(b"\r", 1)
            text = line.strip(b"\n").decode(errors="replace").strip()
            if text:
                self._command(text, now)

    def _feed_login(self, data: bytes) -> None:
        self._buffer += data
        while b"\r" in self._buffer and self._login_step is not None:
            raw, self._buffer = self._buffer.split(b"\r", 1)
            text = raw.strip(b"\n").decode(errors="replace").strip()
            if self._login_step == "user":
                self._login_user = text
                self._login_step = "password"
                self._send(b"\r\nPassword: ")
                continue
            assert self._login is not None
            self._login_step = None
            self._buffer = b""
            if (self._login_user, text) == self._login:
                self._log(f"login {self._login_user} accepted")
                self._send(b"\r\nEntering SLIP mode.\r\n")
                self.online = True
            else:
                self._log(f"login {self._login_user} refused")
                self._send(b"\r\nLogin incorrect\r\n")
                self.drop_carrier()

    def _feed_data(self, data: bytes, now: float) -> None:
        if data.strip(b"+") == b"" and (self._plus or now - self._last_data >= self.guard):
            self._plus += len(data)
            self._plus_at = now
            return
        if self._plus:  # not an escape after all: the plus signs were data
            self._forward(b"+" * self._plus)
            self._plus = 0
        self._last_data = now
        self._forward(data)

    def _forward(self, data: bytes) -> None:
        if self._far is not None:
            self._far(data)
        else:
            self._send(data)

    def from_far_end(self, data: bytes) -> None:
        if self.online:
            self._send(data)

    def tick(self, now: float) -> None:
        if self._ringing is not None and now >= self._ringing[1]:
            result, self._ringing = self._ringing[0], None
            if result != SILENT:
                self._result(result)
            if result.startswith("CONNECT"):
                self.connected = True
                self._last_data = now
                self._log("carrier up")
                if self._login is not None:
                    self._login_step = "user"
                    self._buffer = b""
                    self._send(b"\r\nWelcome to the access server\r\nlogin: ")
                else:
                    self.online = True
        if self.online and self._plus >= 3 and now - self._plus_at >= self.guard:
            self._plus = 0
            self.online = False
            self._log("escape +++: command mode")
            self._result("OK")

    def drop_carrier(self) -> None:
        """The line went dead: an unsolicited NO CARRIER, like a real modem."""
        if self.connected:
            self._log("carrier lost")
            self.online = self.connected = False
            self._login_step = None
            self._result("NO CARRIER")

    def port_closed(self) -> None:
        """Every process closed the port: DTR dropped, hang up and reset."""
        if self.connected or self._ringing:
            self._log("DTR drop: hang up")
        self.online = self.connected = False
        self._login_step = None
        self._ringing = None
        self.echo = self.verbose = True
        self._buffer = b""

    # -- commands ---------------------------------------------------------------------------------

    def _result(self, text: str) -> None:
        self._log(f"-> {text}")
        if self.verbose:
            self._send(f"\r\n{text}\r\n".encode())
        else:
            key = "CONNECT" if text.startswith("CONNECT") else text
            self._send(f"{_NUMERIC.get(key, 4)}\r".encode())

    def _command(self, line: str, now: float) -> None:
        self._log(f"<- {line}")
        upper = line.upper().replace(" ", "")
        if not upper.startswith("AT"):
            self._result("ERROR")
            return
        body = upper[2:]
        if body.startswith("D"):
            self._dial(body[1:], now)
            return
        if body == "O":
            if self.connected:
                self.online = True
                self._result("CONNECT")
            else:
                self._result("NO CARRIER")
            return
        if self._simple(body):
            self._result("OK")
        else:
            self._result("ERROR")

    def _simple(self, body: str) -> bool:
        """Chained basic commands: ``ATZ``, ``ATE0V1``, ``ATH0``, ``AT&F``, ``ATS7=30`` …"""
        index = 0
        while index < len(body):
            char = body[index]
            index += 1
            argument = ""
            while index < len(body) and (body[index].isdigit() or body[index] in "=?"):
                argument += body[index]
                index += 1
            if char == "Z":
                self.echo = self.verbose = True
            elif char == "E":
                self.echo = argument != "0"
            elif char == "V":
                self.verbose = argument != "0"
            elif char == "H":
                if self.connected:
                    self._log("hang up (ATH)")
                self.online = self.connected = False
            elif char in "&+S\\%":
                return True  # extended and S-register settings: accepted, ignored
            elif char in "QXLMI":
                continue
            else:
                return False
        return True

    def _dial(self, rest: str, now: float) -> None:
        number = rest.lstrip("TP").rstrip(";")
        number = "".join(char for char in number if char not in ",W -()")
        count = self._dials.get(number, 0)
        self._dials[number] = count + 1
        script = self._scripts.get(number, ["NO CARRIER"])
        result = script[min(count, len(script) - 1)]
        self._log(f"dial {number} (call {count + 1}) -> {result}")
        if result == "NO DIALTONE":
            self._result(result)  # no tone: the modem gives up at once
            return
        self._ringing = (result, now + self.dial_delay)


def _make_pty(link: Path) -> int:
    master, slave = os.openpty()
    tty.setraw(slave)  # raw: no echo or CR/LF translation by the pty itself
    name = os.ttyname(slave)
    os.close(slave)  # so that "every user closed the port" shows as EIO on the master
    os.set_blocking(master, False)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(name)
    return master


def serve(
    link: Path,
    scripts: Mapping[str, Sequence[str]],
    *,
    remote: Path | None,
    dial_delay: float,
    guard: float,
    log_file: TextIO,
    login: tuple[str, str] | None = None,
) -> None:
    def log(message: str) -> None:
        log_file.write(f"{time.time():.3f} {message}\n")
        log_file.flush()

    master = _make_pty(link)
    far = _make_pty(remote) if remote else None

    def write(fd: int) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(fd, data)

        return send

    modem = Modem(
        write(master),
        write(far) if far is not None else None,
        scripts,
        dial_delay=dial_delay,
        guard=guard,
        log=log,
        login=login,
    )
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGUSR1, lambda *_: modem.drop_carrier())
    log(f"ready on {link} -> {os.readlink(link)}")
    port_open = False
    try:
        while not stop:
            fds = [master] + ([far] if far is not None else [])
            try:
                ready = select.select(fds, [], [], 0.02)[0]
            except InterruptedError:
                continue
            now = time.monotonic()
            if far is not None and far in ready:
                try:
                    modem.from_far_end(os.read(far, 4096))
                except BlockingIOError:
                    pass
                except OSError:
                    time.sleep(0.02)  # the far end is not open (yet): EIO until it is
            if master in ready:
                try:
                    data = os.read(master, 4096)
                    port_open = True
                    modem.feed(data, now)
                except BlockingIOError:
                    pass
                except OSError as error:
                    if error.errno != errno.EIO:
                        raise
                    if port_open:
                        modem.port_closed()
                        port_open = False
                    time.sleep(0.02)  # nobody has the port open; EIO until someone does
            modem.tick(now)
    finally:
        for path in (link, remote):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
        log("stopped")


def parse_scripts(items: Sequence[str]) -> dict[str, list[str]]:
    scripts: dict[str, list[str]] = {}
    for item in items:
        number, sep, results = item.partition("=")
        if not sep or not number or not results:
            raise SystemExit(f"--number {item!r}: expected NUMBER=RESULT[,RESULT…]")
        scripts[number] = [result.strip() for result in results.split(",")]
    return scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opencm_lab.modem_emulator")
    parser.add_argument("--link", required=True, type=Path)
    parser.add_argument("--number", action="append", default=[])
    parser.add_argument("--remote", type=Path)
    parser.add_argument("--dial-delay", type=float, default=0.3)
    parser.add_argument("--guard", type=float, default=1.0)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--login", help="USER:PASSWORD the access server accepts")
    args = parser.parse_args(argv)
    scripts = parse_scripts(args.number)
    login: tuple[str, str] | None = None
    if args.login is not None:
        user, sep, password = args.login.partition(":")
        if not sep or not user:
            raise SystemExit("--login: expected USER:PASSWORD")
        login = (user, password)
    with contextlib.ExitStack() as stack:
        log_file = stack.enter_context(args.log.open("a")) if args.log else sys.stderr
        serve(
            args.link,
            scripts,
            remote=args.remote,
            dial_delay=args.dial_delay,
            guard=args.guard,
            log_file=log_file,
            login=login,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
