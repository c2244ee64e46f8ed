"""Test doubles for opencm plug-in authors, as ``click.testing`` is for click commands.

Both obey the same contracts as the real thing, so a test that passes against them says
something about the real session:

- :class:`ScriptedDialer` implements all five entry points of the dialer contract
  (:class:`opencm.links.api.Dialer`, docs/dialers.md). Each ``dial`` takes the next
  :class:`Step` of its script: bring the link up (optionally held by a real child process named
  in the handle by PID, as a real link's process would be), fail with a RAS code, raise as a
  buggy dialer would, or hang until cancelled. :meth:`ScriptedDialer.drop` reports the
  established link as gone, as a real dialer does through its ``on_down`` callback.
  :class:`Dialers` answers a session's dialer lookup from a set of doubles.
- :class:`FakeClock` implements the clock seam (:class:`opencm.clock.Clock`): time moves only
  when the test says so (:meth:`FakeClock.advance`), or, with ``auto=True``, each sleep returns at
  once having moved time forward by its length.

Nothing in opencm itself imports this module; it is for tests only.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import anyio
import anyio.lowlevel

from opencm.errors import RefusedError
from opencm.links.api import (
    Credentials,
    DialEntry,
    DialError,
    DownReason,
    LinkDown,
    LinkDownCallback,
    LinkInfo,
)
from opencm.links.base import NoDialogDialer
from opencm.process import end_child


@dataclass
class Step:
    """What one ``dial`` does: ``up``, ``fail`` (a :class:`DialError`), ``hang`` or ``crash``."""

    kind: Literal["up", "fail", "hang", "crash"]
    code: int = 0
    retryable: bool = True
    client_ip: str = "10.8.0.6"
    server_ip: str = "10.8.0.1"
    #: Hold the link with a real child process, named in the handle as ``pid``.
    with_process: bool = False


def up(
    *, client_ip: str = "10.8.0.6", server_ip: str = "10.8.0.1", with_process: bool = False
) -> Step:
    """The link comes up with these addresses."""
    return Step("up", client_ip=client_ip, server_ip=server_ip, with_process=with_process)


def fail(code: int, *, retryable: bool = True) -> Step:
    """The dial fails with this RAS error code."""
    return Step("fail", code=code, retryable=retryable)


def hang() -> Step:
    """The dial never finishes; only a cancel ends it (counted in ``cancelled``)."""
    return Step("hang")


def crash() -> Step:
    """The dialer raises something that is not a :class:`DialError`: a bug in the plug-in."""
    return Step("crash")


@dataclass
class ScriptedDialer(NoDialogDialer):
    """A dialer double with all five entry points; ``dialed``, ``hung_up`` … record the calls.

    ``dial_dialog`` is ``dial``, as for the built-in dialers that have nothing to ask.

    Without a script (or once it is used up) every dial brings the link up.
    """

    name: str
    script: list[Step] = field(default_factory=list)
    dialed: list[str] = field(default_factory=list)
    hung_up: list[str] = field(default_factory=list)
    cancelled: int = 0
    deleted: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Set when the first dial starts.
    dialing: anyio.Event = field(default_factory=anyio.Event)
    _on_down: LinkDownCallback | None = None

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        self.dialed.append(entry.name)
        step = self.script.pop(0) if self.script else Step("up")
        self.dialing.set()
        if step.kind == "fail":
            raise DialError(
                f"{entry.name}: scripted failure", code=step.code, retryable=step.retryable
            )
        if step.kind == "crash":
            raise RuntimeError("a bug in the dialer")
        if step.kind == "hang":
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise
        handle = {"entry": entry.name}
        if step.with_process:
            # A real process stands in for openvpn: the journal must find and end it.
            process = subprocess.Popen(  # noqa: ASYNC220 - a quick fork; the link must be a real child
                [sys.executable, "-c", "import time; time.sleep(600)", "opencm-test-link"]
            )
            self.processes.append(process)
            handle["pid"] = str(process.pid)
        self._on_down = on_down
        return LinkInfo(
            entry=entry.name,
            interface="tun-test",
            client_ip=step.client_ip,
            server_ip=step.server_ip,
            tunnel_server=None,  # like a link that cannot tell: the profile's address is used
            handle=handle,
        )

    async def hang_up(self, link: LinkInfo) -> None:
        self.hung_up.append(link.entry)
        for process in self.processes:
            if str(process.pid) == link.handle.get("pid"):
                end_child(process, grace=5.0)

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        return entry

    def entry_deleted(self, entry: DialEntry) -> None:
        self.deleted.append(entry.name)

    async def drop(self, reason: DownReason = DownReason.PEER_GONE, detail: str = "") -> None:
        """Report the established link as gone, as the real dialer's ``on_down`` call would."""
        if self._on_down is None:
            raise RuntimeError(f"dialer '{self.name}': no link is up to drop")
        result = self._on_down(LinkDown(reason, detail))
        if result is not None:
            await result


class Dialers:
    """A dialer lookup over doubles: ``lookup(name)`` answers as the registry would."""

    def __init__(self, dialers: Iterable[ScriptedDialer]) -> None:
        self.by_name = {dialer.name: dialer for dialer in dialers}

    def __call__(self, name: str) -> ScriptedDialer:
        if name not in self.by_name:
            raise RefusedError(f"dialer '{name}' is not on the allow list")
        return self.by_name[name]


class FakeClock:
    """Time moves only when the test says so; ``sleepers`` tells how many sleeps are waiting.

    ``now`` is the monotonic reading (a test may also move it by hand); ``slept`` records every
    requested sleep. With ``auto=True`` a sleep returns at once, having moved ``now`` forward.
    """

    #: What :meth:`wall` reads at ``now == 0``: a fixed date, so logs are reproducible.
    EPOCH = 1_790_000_000.0

    def __init__(self, *, auto: bool = False) -> None:
        self.now = 0.0
        self.auto = auto
        self.slept: list[float] = []
        self._waiting: list[tuple[float, anyio.Event]] = []
        self._registered = anyio.Event()

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.EPOCH + self.now

    @property
    def sleepers(self) -> int:
        return len(self._waiting)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.auto:
            self.now += seconds
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        entry = (self.now + seconds, wake)
        self._waiting.append(entry)
        registered, self._registered = self._registered, anyio.Event()
        registered.set()
        try:
            await wake.wait()
        finally:
            if entry in self._waiting:
                self._waiting.remove(entry)

    async def wait_for_sleepers(self, count: int) -> None:
        """Wait (in real time, at most 10 seconds) until ``count`` sleeps are waiting."""
        with anyio.fail_after(10):
            while len(self._waiting) < count:
                registered = self._registered
                await registered.wait()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleep whose deadline has come."""
        self.now += seconds
        for deadline, wake in list(self._waiting):
            if deadline <= self.now:
                self._waiting.remove((deadline, wake))
                wake.set()


__all__ = ["Dialers", "FakeClock", "ScriptedDialer", "Step", "crash", "fail", "hang", "up"]
