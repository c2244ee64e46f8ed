"""opencm.process, the one way opencm ends a process: SIGTERM, grace, SIGKILL, never a stranger."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from opencm.process import ProcessMark, end_async_child, end_child, end_pid

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# Ignores SIGTERM and says so once it does, so the test never races the handler's installation.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(600)",
]


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def start(started: list[subprocess.Popen[bytes]], argv: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE if argv is STUBBORN else None)
    started.append(process)
    if argv is STUBBORN:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def test_a_child_ends_on_sigterm(started: list[subprocess.Popen[bytes]]) -> None:
    process = start(started, SLEEPER)
    assert end_child(process) == "terminated"
    assert process.returncode == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(
    started: list[subprocess.Popen[bytes]],
) -> None:
    process = start(started, STUBBORN)
    assert end_child(process, grace=0.2) == "killed"
    assert process.returncode == -signal.SIGKILL
    assert end_child(process) == "gone"


def test_end_pid_spares_a_pid_that_runs_another_program(
    started: list[subprocess.Popen[bytes]],
) -> None:
    process = start(started, SLEEPER)
    assert asyncio.run(end_pid(process.pid, "openvpn")) == "gone"
    assert process.poll() is None
    program = ProcessMark.of(process.pid)
    assert program is not None and program.runs(program.cmdline[0].rsplit("/", 1)[-1])
    assert asyncio.run(end_pid(process.pid, program.cmdline[0].rsplit("/", 1)[-1])) == "terminated"
    assert process.wait(10) == -signal.SIGTERM


def test_a_python_module_is_recognised_by_its_name() -> None:
    mark = ProcessMark(1, "0", ["/usr/bin/python3", "-m", "opencm.links.slip", "--port", "x"])
    assert mark.runs("opencm.links.slip")
    assert not mark.runs("opencm.links.modem")
    assert not ProcessMark(1, "0", []).runs("python3")


def test_an_asyncio_child_is_ended_and_its_status_returned() -> None:
    async def scenario() -> int | None:
        process = await asyncio.create_subprocess_exec(*STUBBORN, stdout=asyncio.subprocess.PIPE)
        assert process.stdout is not None and await process.stdout.readline() == b"ready\n"
        return await end_async_child(process, grace=0.2)

    assert asyncio.run(scenario()) == -signal.SIGKILL
