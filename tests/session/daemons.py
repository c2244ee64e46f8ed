"""Running an ``opencm`` daemon as a real process in tests, and its CLI against it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from opencm.session.protocol import Client, NoDaemon

ROOT = Path(__file__).parents[2]
#: The daemon with the process-holding double dialer (tests/session/daemon_harness.py).
HARNESS = ("-m", "tests.session.daemon_harness")
#: The real daemon, with the real dialers of opencm.links.
REAL = ("-m", "opencm", "daemon")


class DaemonProcess:
    def __init__(
        self,
        tmp_path: Path,
        command: tuple[str, ...] = HARNESS,
        env: dict[str, str] | None = None,
        *,
        log_dir: bool = True,
        extra: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None,
        output: Path | None = None,
    ) -> None:
        #: Where the daemon's stdout and stderr go (None: the test's own).
        self.output = output
        self.command = command
        self.env = env
        self.extra = extra
        self.preexec = preexec
        self.socket = tmp_path / "run" / "opencm.sock"
        self.state = tmp_path / "state"
        self.logs = tmp_path / "logs"
        self.pass_log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sink = self.output.open("ab") if self.output is not None else None
        self.process = subprocess.Popen(
            [
                sys.executable,
                *self.command,
                "--socket",
                str(self.socket),
                "--state-dir",
                str(self.state),
                *(("--log-dir", str(self.logs)) if self.pass_log_dir else ()),
                *self.extra,
            ],
            cwd=ROOT,
            env={**os.environ, **(self.env or {})},
            preexec_fn=self.preexec,
            stdout=sink,
            stderr=subprocess.STDOUT if sink is not None else None,
        )
        if sink is not None:
            sink.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the daemon exited"
            try:
                with Client(self.socket) as client:
                    client.request({"op": "hello"})
                return
            except NoDaemon:
                time.sleep(0.05)
        raise AssertionError("the daemon did not start listening")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def popen_cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "opencm", *args, "--socket", str(self.socket)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )

    def cli(self, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opencm", *args, "--socket", str(self.socket)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            user=user,
            stdin=subprocess.DEVNULL,
        )
