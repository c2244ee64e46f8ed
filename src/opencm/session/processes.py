"""Waiting for the programs a session started: actions it awaits and monitored applications.

The session does not own these processes' ends (actions end on their own; monitored
applications are the user's), it only waits for them, by polling: a poll loop can be cancelled at
any moment (Cancel, a dropped link) without leaving a thread blocked in ``wait()`` behind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import anyio

#: How often a waited-for process is polled, in seconds.
POLL_INTERVAL = 0.02


async def wait_for_exit(process: subprocess.Popen[bytes]) -> int:
    """The exit status of ``process``, once it has exited."""
    while True:
        code = process.poll()
        if code is not None:
            return code
        await anyio.sleep(POLL_INTERVAL)


async def wait_all_exited(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """Return when every one of ``processes`` has exited (the last monitored app closed)."""
    async with anyio.create_task_group() as group:
        for process in processes:
            group.start_soon(wait_for_exit, process)


class StartedProcesses:
    """The programs a session started, so that none is left a zombie when it ends."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def add(self, process: subprocess.Popen[bytes]) -> None:
        self._started.append(process)

    def reap(self) -> None:
        """Collect the exit status of those that have exited (a poll reaps a zombie)."""
        for process in self._started:
            process.poll()


__all__ = ["POLL_INTERVAL", "StartedProcesses", "wait_all_exited", "wait_for_exit"]
