"""Starting and ending a link's helper process (openvpn, wireguard-go, the line bridge).

Processes run in the foreground so that we hold their PID; ``ip netns exec`` execs in place, so
the PID is the helper's own even inside a namespace. They are ended by that PID only, through
:mod:`opencm.process` (``end_async_child`` for the ones we hold, ``end_pid`` after a restart).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping, Sequence
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


async def spawn(
    argv: Sequence[str], *, log_path: Path | None = None, cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """Start ``argv`` in its own session, output to ``log_path`` (or nowhere)."""
    if log_path is None:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


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
