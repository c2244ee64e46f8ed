"""Crash-safe teardown: what a session started, on disk, so a restarted daemon can clean up.

One JSON file per session in ``<state-dir>/journal/`` (opencm's own format, ``docs/session.md``),
always replaced atomically (temp file, fsync, rename, fsync of the folder). It holds:

- the profile, connection type and the macros the disconnect actions would get;
- each link the session started: entry, dialer, netns, the dialer's handle and the processes
  named in it (PID, start time and command line, to recognise them later);
- ``disconnect``: ``idle`` (no connection yet: nothing to run), ``armed`` (connected: the
  disconnect actions are owed), ``running`` (someone began running them), ``done``.

Exactly once: whoever runs the disconnect actions (the session on an orderly disconnect or a drop,
or :func:`recover` after a crash) first moves ``armed`` → ``running`` on disk, and only then runs
them. A crash before that write leaves ``armed`` and the next start runs them (they had not
started); a crash after it leaves ``running`` and they are never started again. So they run at
most once, and exactly once unless the machine dies in the moment between the write and the
start (then they are skipped, and the log says so). Ending processes and removing the file are
idempotent, so recovery itself can be interrupted and repeated.
"""

from __future__ import annotations

import contextlib
import enum
import json
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from opencm.fsutil import atomic_write, fsync_dir
from opencm.links.api import LinkInfo
from opencm.process import ProcessMark, end_process

VERSION = 1


class DisconnectState(enum.StrEnum):
    """The ``disconnect`` field: who owes, or has begun, the disconnect actions."""

    IDLE = "idle"  # not connected yet: nothing to run
    ARMED = "armed"  # connected: the disconnect actions are owed
    RUNNING = "running"  # someone claimed them and began running them
    DONE = "done"


def handle_pids(handle: Mapping[str, str]) -> list[int]:
    """PIDs a dialer names in its handle: keys ``pid``, ``*_pid`` or ``pids`` (comma-separated)."""
    pids: list[int] = []
    for key, value in handle.items():
        if key == "pid" or key.endswith("_pid") or key == "pids":
            pids.extend(int(part) for part in str(value).split(",") if part.strip().isdigit())
    return pids


@dataclass
class JournalEntry:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=1).encode(), mode=0o600)

    def add_link(self, stage: str, info: LinkInfo, dialer: str, netns: str | None) -> None:
        marks = [m for m in (ProcessMark.of(pid) for pid in handle_pids(info.handle)) if m]
        self.data["links"].append(
            {
                "stage": stage,
                "entry": info.entry,
                "dialer": dialer,
                "netns": netns,
                "interface": info.interface,
                "handle": dict(info.handle),
                "processes": [vars(mark) for mark in marks],
            }
        )
        self.data["starting"] = []  # the link is up: its processes are recorded with it
        self.save()

    def set_starting(self, marks: list[ProcessMark]) -> None:
        """The helpers a dial still in progress has started (ended by a recovery)."""
        self.data["starting"] = [vars(mark) for mark in marks]
        self.save()

    def set_macros(self, macros: Mapping[str, str]) -> None:
        self.data["macros"] = dict(macros)
        self.save()

    @property
    def disconnect(self) -> DisconnectState | None:
        """Where the disconnect actions stand (None: a value this version does not know)."""
        try:
            return DisconnectState(str(self.data.get("disconnect")))
        except ValueError:
            return None

    def set_disconnect(self, state: DisconnectState) -> None:
        self.data["disconnect"] = str(state)
        self.save()

    # -- the transitions a live session makes, in the order it makes them -----------------------

    def redialing(self, macros: Mapping[str, str]) -> None:
        """A new attempt dials: its macros replace the old; after a drop (``done``) nothing is
        owed until it connects again (``idle``)."""
        if self.disconnect is DisconnectState.DONE:
            self.data["disconnect"] = str(DisconnectState.IDLE)
        self.set_macros(macros)

    def arm(self, macros: Mapping[str, str]) -> None:
        """Connected: the disconnect actions are owed, with these macros (``armed``)."""
        self.data["macros"] = dict(macros)
        self.set_disconnect(DisconnectState.ARMED)

    def claim_disconnect(self) -> bool:
        """``armed`` → ``running`` on disk; True when the caller now owns running them."""
        if self.disconnect is not DisconnectState.ARMED:
            return False
        self.set_disconnect(DisconnectState.RUNNING)
        return True

    def disconnect_done(self) -> None:
        self.set_disconnect(DisconnectState.DONE)

    def links_released(self) -> None:
        """Every link is down: nothing is left for a recovery to end."""
        if self.data["links"]:
            self.data["links"] = []
            self.save()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        fsync_dir(self.path.parent)


class DialStarts:
    """The helpers one dial starts, each journaled the moment it starts.

    A link's processes are journaled with the link once it is up; until then a daemon killed
    mid-dial (OpenVPN still connecting) would lose their PIDs and leave them running for good.
    The dialer reports each start (``opencm.links.proc.watching_starts``) on the event loop
    while a worker thread may be opening the entry: a lock orders the two.
    """

    def __init__(self, entry: JournalEntry | None) -> None:
        self._lock = threading.Lock()
        self._entry = entry
        self._marks: list[ProcessMark] = []

    def started(self, pid: int) -> None:
        mark = ProcessMark.started(pid)
        if mark is None:
            return
        with self._lock:
            self._marks.append(mark)
            if self._entry is not None:
                self._entry.set_starting(self._marks)

    def attach(self, entry: JournalEntry | None) -> None:
        """The entry now exists (opened by the worker thread): write what started so far."""
        with self._lock:
            self._entry = entry
            if entry is not None and self._marks:
                entry.set_starting(self._marks)

    def failed(self) -> None:
        """The dial failed and its dialer ended what it started."""
        with self._lock:
            self._marks.clear()
            if self._entry is not None and self._entry.data.get("starting"):
                self._entry.set_starting([])


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def open(
        self,
        session_id: str,
        *,
        profile: str,
        connection_type: int,
        interactive: bool,
        owner_uid: int,
        macros: Mapping[str, str] | None = None,
    ) -> JournalEntry:
        entry = JournalEntry(
            self.directory / f"{session_id}.json",
            {
                "version": VERSION,
                "session": session_id,
                "profile": profile,
                "connection_type": connection_type,
                "interactive": interactive,
                "owner_uid": owner_uid,
                "macros": dict(macros or {}),
                "links": [],
                "disconnect": str(DisconnectState.IDLE),
            },
        )
        entry.save()
        return entry

    def pending(self) -> list[JournalEntry]:
        entries: list[JournalEntry] = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                # A torn file cannot happen with atomic writes; anything else is not ours.
                continue
            if isinstance(data, dict) and data.get("version") == VERSION:
                entries.append(JournalEntry(path, data))
        return entries


@dataclass
class Recovery:
    session: str
    profile: str
    ran_disconnect: bool
    note: str
    processes: dict[int, str] = field(default_factory=dict)


#: Runs the disconnect actions of a journaled session: (entry, reason) → done.
RunDisconnect = Callable[[JournalEntry, str], Awaitable[None]]
#: Asks the link's dialer to release what is left (interfaces, routes); best effort.
HangUpLeftover = Callable[[str, LinkInfo], Awaitable[None]]


async def recover(
    journal: Journal,
    reason: str,
    run_disconnect: RunDisconnect,
    hang_up: HangUpLeftover | None = None,
) -> list[Recovery]:
    """Finish every session a dead daemon left behind: disconnect actions once, then the links."""
    reports: list[Recovery] = []
    for entry in journal.pending():
        report = Recovery(str(entry.data.get("session")), str(entry.data.get("profile")), False, "")
        state = entry.disconnect
        if entry.claim_disconnect():
            try:
                await run_disconnect(entry, reason)
                report.ran_disconnect = True
                report.note = "disconnect actions ran"
            except Exception as error:  # a broken profile must not stop the rest of recovery
                report.note = f"disconnect actions could not run: {error}"
            entry.disconnect_done()
        elif state is DisconnectState.RUNNING:
            report.note = "disconnect actions had started before the crash: not run again"
        else:
            report.note = f"no disconnect actions owed (state {entry.data.get('disconnect')})"
        for raw in entry.data.get("starting", []):  # a dial the crash interrupted
            mark = ProcessMark(int(raw["pid"]), str(raw["start_time"]), list(raw["cmdline"]))
            report.processes[mark.pid] = await anyio.to_thread.run_sync(end_process, mark)
        for link in reversed(entry.data.get("links", [])):
            for raw in link.get("processes", []):
                mark = ProcessMark(int(raw["pid"]), str(raw["start_time"]), list(raw["cmdline"]))
                report.processes[mark.pid] = await anyio.to_thread.run_sync(end_process, mark)
            if hang_up is not None:
                info = LinkInfo(
                    entry=str(link.get("entry", "")),
                    interface=link.get("interface"),
                    handle={str(k): str(v) for k, v in dict(link.get("handle", {})).items()},
                )
                with contextlib.suppress(Exception):
                    await hang_up(str(link.get("dialer", "")), info)
        entry.remove()
        reports.append(report)
    return reports


__all__ = [
    "DialStarts",
    "DisconnectState",
    "Journal",
    "JournalEntry",
    "Recovery",
    "handle_pids",
    "recover",
]
