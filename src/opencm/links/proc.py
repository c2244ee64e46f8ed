"""Starting and ending a link's helper process (openvpn, wireguard-go, the line bridge).

Processes run in the foreground so that we hold their PID; ``ip netns exec`` execs in place, so
the PID is the helper's own even inside a namespace. They are ended by that PID only, through
:mod:`opencm.process` (``end_async_child`` for the ones we hold, ``end_pid`` after a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path

from opencm.errors import InputError
from opencm.process import end_pid

_NETNS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_netns_name(name: str, *, field: str = "netns") -> str:
    """A namespace name as ``ip netns`` accepts it (no path separators, no leading dot)."""
    if not _NETNS_NAME.fullmatch(name) or name.startswith("."):
        raise InputError(
            f"{name!r} is not a network namespace name (letters, digits, '_', '-', '.')",
            field=field,
        )
    return name


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def netns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` when one is given."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


#: Told the PID of every long-lived helper a dial starts, the moment it has started (the
#: session journals it at once: a daemon killed while the link is still coming up must not
#: leave that process running for good). Set around a dial with :func:`watching_starts`.
_on_start: ContextVar[Callable[[int], None] | None] = ContextVar("opencm_on_start", default=None)


@contextlib.contextmanager
def watching_starts(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(pid)`` for each helper started (by :func:`spawn` or :func:`started`)
    in this context: the dial and the tasks it starts."""
    token = _on_start.set(callback)
    try:
        yield
    finally:
        _on_start.reset(token)


def started(pid: int) -> None:
    """Report a helper started without :func:`spawn` (one that needs pipes or fds)."""
    callback = _on_start.get()
    if callback is not None:
        callback(pid)


async def spawn(
    argv: Sequence[str], *, log_path: Path | None = None, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """Start ``argv`` in its own session, output to ``log_path`` (or nowhere)."""
    if log_path is None:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    else:
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
    started(process.pid)
    return process


async def end_orphan(
    handle: Mapping[str, str], program: str, *, rundir_prefix: str | None = None
) -> None:
    """Hang up a link this process does not hold (the daemon restarted): end ``program`` by the
    PID in the link's handle and remove its run folder, when the handle names one of ours
    (its name starts with ``rundir_prefix``)."""
    pid = handle.get("pid", "")
    if pid.isdigit():
        await end_pid(int(pid), program)
    rundir = handle.get("rundir")
    if rundir_prefix and rundir and Path(rundir).name.startswith(rundir_prefix):
        shutil.rmtree(rundir, ignore_errors=True)
