"""Ending a process: SIGTERM, a grace period, then SIGKILL. The one home of that mechanism.

Two kinds of process get ended:

- a **child we hold** (a ``subprocess.Popen`` or an asyncio process): its PID cannot be reused
  before we reap it, so the handle is guard enough (:func:`end_child`, :func:`end_async_child`);
- a process **we only know by PID** (one a dead daemon left behind, one found in a namespace):
  the PID may by now belong to another program. :class:`ProcessMark` is the one guard against
  that: a process is recognised by its PID *and* its start time and command line, and is
  signalled only while all three still match (:func:`end_process`, :func:`end_pid`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

#: Seconds between SIGTERM and SIGKILL unless the caller says otherwise.
GRACE = 3.0
_POLL = 0.02


@dataclass(frozen=True)
class ProcessMark:
    """A process and what makes it recognisable later (a PID alone can be reused)."""

    pid: int
    #: Field 22 of ``/proc/PID/stat``: clock ticks from boot to the process's start.
    start_time: str
    cmdline: list[str]

    @classmethod
    def of(cls, pid: int) -> ProcessMark | None:
        """Mark the process running as ``pid`` now; None when there is none (or a zombie)."""
        start, cmdline = _proc_identity(pid)
        # Just after exec, and while a process exits, the kernel shows an empty command line: a
        # mark taken then could never match again. Wait briefly for it (a busy machine makes
        # that window milliseconds long); a process that keeps it empty is not one to record.
        deadline = time.monotonic() + 0.2
        while start is not None and not cmdline and time.monotonic() < deadline:
            time.sleep(0.002)
            start, cmdline = _proc_identity(pid)
        return None if start is None or not cmdline else cls(pid, start, cmdline)

    @classmethod
    def started(cls, pid: int) -> ProcessMark | None:
        """A process just started, known by PID and start time only: its command line may
        still change (``ip netns exec`` execs the helper in place)."""
        start, _cmdline = _proc_identity(pid)
        return None if start is None else cls(pid, start, [])

    def still_ours(self) -> bool:
        """True while the PID still runs the very process that was marked."""
        start, cmdline = _proc_identity(self.pid)
        # PID and start time (clock ticks since boot) name one process; the command line, when
        # recorded, guards against a misread start time too.
        return start == self.start_time and (not self.cmdline or cmdline == self.cmdline)

    def runs(self, program: str) -> bool:
        """True when the marked process is ``program``: the executable's base name, or for a
        Python module run with ``-m`` the module's name (``opencm.links.slip``)."""
        if not self.cmdline:
            return False
        if os.path.basename(self.cmdline[0]) == program:
            return True
        return "-m" in self.cmdline[1:3] and program in self.cmdline[1:4]


def _proc_identity(pid: int) -> tuple[str | None, list[str]]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None, []
    # Field 22 (start time in clock ticks since boot) follows the ")" that ends the command name.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields and fields[0] == "Z":
        return None, []  # a zombie is already gone; only its parent can reap it
    cmdline = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    return fields[19], cmdline


def _term_then_kill(alive: Callable[[], bool], send: Callable[[int], None], grace: float) -> str:
    """SIGTERM, wait up to ``grace`` seconds for ``alive()`` to turn false, then SIGKILL."""
    if not alive():
        return "gone"
    with contextlib.suppress(ProcessLookupError):
        send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive():
            return "terminated"
        time.sleep(_POLL)
    if not alive():
        return "terminated"
    with contextlib.suppress(ProcessLookupError):
        send(signal.SIGKILL)
    return "killed"


def end_process(mark: ProcessMark, grace: float = GRACE) -> str:
    """End a process we do not hold, only while it is still the one marked.

    Returns ``gone`` (it had already ended, or the PID is another program's now),
    ``terminated`` or ``killed``. Blocks for up to ``grace`` seconds.
    """
    return _term_then_kill(mark.still_ours, lambda sig: os.kill(mark.pid, sig), grace)


async def end_pid(pid: int, program: str, grace: float = GRACE) -> str:
    """End ``pid`` if it runs ``program`` (see :meth:`ProcessMark.runs`), without blocking the
    event loop; ``gone`` when it does not run it (any more)."""

    def end() -> str:
        mark = ProcessMark.of(pid)
        if mark is None or not mark.runs(program):
            return "gone"
        return end_process(mark, grace)

    return await anyio.to_thread.run_sync(end)


def end_child(
    process: subprocess.Popen[bytes] | subprocess.Popen[str], grace: float = GRACE
) -> str:
    """End a child started with ``subprocess.Popen`` and reap it."""
    outcome = _term_then_kill(lambda: process.poll() is None, process.send_signal, grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)  # SIGKILL is not instant for a process inside a system call
    return outcome


async def end_async_child(process: asyncio.subprocess.Process, grace: float = GRACE) -> int | None:
    """End a child started with asyncio, wait for it, and return its exit status."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            # asyncio.timeout rather than wait_for, which on 3.11 can swallow a cancellation.
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return process.returncode


__all__ = ["GRACE", "ProcessMark", "end_async_child", "end_child", "end_pid", "end_process"]
