"""Crash-safe teardown: the journal of a session that died, and the recovery that follows."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from opencm.actions.api import ActionPoint, RunContext
from opencm.actions.libhost import LibraryHost
from opencm.links.api import LinkInfo
from opencm.process import ProcessMark, end_process
from opencm.profile.model import ConnectionType
from opencm.session.config import session_config
from opencm.session.journal import Journal, JournalEntry, recover
from opencm.session.machine import State
from opencm.session.options import ConnectOptions, SessionDeps
from opencm.session.runner import Session
from opencm.testing import Dialers, FakeClock, ScriptedDialer, up
from tests.session.conftest import build_profile, engine_for, points_of, recorded, wait_state

pytestmark = pytest.mark.anyio


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(5)


async def _die_while_connected(
    tmp_path: Path, host: LibraryHost, reap: list[subprocess.Popen[bytes]]
) -> tuple[Journal, Path, int]:
    """Connect with a real child process as the link, then vanish without any teardown."""
    profile, record = build_profile(tmp_path)
    journal = Journal(tmp_path / "state" / "journal")
    dialer = ScriptedDialer("openvpn", [up(with_process=True)])
    session = Session(
        session_config(profile),
        engine_for(profile, host),
        ConnectOptions(connection_type=ConnectionType.DIRECT, interactive=False),
        SessionDeps(dialer_lookup=Dialers([dialer]), clock=FakeClock(auto=True), journal=journal),
    )
    async with anyio.create_task_group() as group:
        group.start_soon(session.run)
        await wait_state(session, State.CONNECTED)
        group.cancel_scope.cancel()  # the daemon is gone: no disconnect, no hang-up
    (pending,) = journal.pending()
    assert pending.data["disconnect"] == "armed"
    (link,) = pending.data["links"]
    pid = int(link["handle"]["pid"])
    assert link["processes"][0]["pid"] == pid
    assert dialer.processes[0].poll() is None  # the 'link' outlived its session
    reap.extend(dialer.processes)
    return journal, record, pid


def _disconnect_runner(profile_root: Path, host: LibraryHost):  # type: ignore[no-untyped-def]
    async def run(entry: JournalEntry, reason: str) -> None:
        from opencm.profile.model import load_profile

        profile = load_profile(entry.data["profile"])
        macros = {**entry.data["macros"], "DisconnectReason": reason}
        context = RunContext(
            macros=macros,
            connection_type=ConnectionType(entry.data["connection_type"]),
            interactive=False,
            profile_dir=profile.profile_dir,
        )
        result = engine_for(profile, host).run_point(ActionPoint.DISCONNECT, context)
        for action in result.results:
            if action.process is not None:
                action.process.wait(10)

    return run


async def test_recovery_runs_the_disconnect_actions_once_and_ends_the_link_process(
    tmp_path: Path, host: LibraryHost, reap: list[subprocess.Popen[bytes]]
) -> None:
    journal, record, pid = await _die_while_connected(tmp_path, host, reap)
    assert "disconnect" not in points_of(record)
    run = _disconnect_runner(tmp_path, host)
    reports = await recover(journal, "opencm-restarted", run)
    assert [r.ran_disconnect for r in reports] == [True]
    assert reports[0].processes[pid] in ("terminated", "killed")
    rows = [row for row in recorded(record) if row["point"] == "disconnect"]
    assert [row["DisconnectReason"] for row in rows] == ["opencm-restarted"]
    assert rows[0]["TunnelRasEntry"] == "Main" and rows[0]["ClientIPAddress"] == "10.8.0.6"
    assert ProcessMark.of(pid) is None
    assert journal.pending() == []
    # A second start finds nothing to do.
    assert await recover(journal, "opencm-restarted", run) == []
    assert points_of(record).count("disconnect") == 1


async def test_a_recovery_that_crashed_mid_way_never_runs_the_actions_again(
    tmp_path: Path, host: LibraryHost, reap: list[subprocess.Popen[bytes]]
) -> None:
    journal, record, pid = await _die_while_connected(tmp_path, host, reap)
    (entry,) = journal.pending()
    assert entry.claim_disconnect()  # the first recovery claimed them, then died
    reports = await recover(journal, "opencm-restarted", _disconnect_runner(tmp_path, host))
    assert reports[0].ran_disconnect is False
    assert "not run again" in reports[0].note
    assert "disconnect" not in points_of(record)
    assert reports[0].processes[pid] in ("terminated", "killed")  # cleanup still happens


def test_a_reused_pid_is_not_killed(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mark = ProcessMark.of(process.pid)
        assert mark is not None and mark.still_ours()
        impostor = ProcessMark(process.pid, str(int(mark.start_time) + 1), mark.cmdline)
        assert end_process(impostor) == "gone"
        assert process.poll() is None
        assert end_process(mark) == "terminated"
        assert process.wait(5) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_an_orderly_disconnect_leaves_no_journal(tmp_path: Path, host: LibraryHost) -> None:
    profile, record = build_profile(tmp_path)
    journal = Journal(tmp_path / "journal")
    session = Session(
        session_config(profile),
        engine_for(profile, host),
        ConnectOptions(interactive=False),
        SessionDeps(dialer_lookup=Dialers([ScriptedDialer("openvpn")]), journal=journal),
    )
    async with anyio.create_task_group() as group:
        group.start_soon(session.run)
        await wait_state(session, State.CONNECTED)
        assert [e.data["disconnect"] for e in journal.pending()] == ["armed"]
        session.disconnect()
    assert journal.pending() == []
    assert points_of(record).count("disconnect") == 1


def test_a_sessions_journal_moves_idle_armed_running_done_and_back_on_disk(
    tmp_path: Path,
) -> None:
    """The transitions a live session makes, each read back from the file a restarted daemon
    would read (a fresh Journal over the same folder)."""
    journal = Journal(tmp_path / "journal")
    entry = journal.open(
        "s1", profile="/p.cmp", connection_type=1, interactive=False, owner_uid=0, macros={}
    )

    def on_disk() -> dict[str, Any]:
        (pending,) = Journal(tmp_path / "journal").pending()
        return pending.data

    assert on_disk()["disconnect"] == "idle"
    assert not entry.claim_disconnect()  # nothing is owed before the connection is up
    entry.arm({"ClientIPAddress": "10.8.0.6"})
    assert (on_disk()["disconnect"], on_disk()["macros"]) == (
        "armed",
        {"ClientIPAddress": "10.8.0.6"},
    )
    assert entry.claim_disconnect()
    assert on_disk()["disconnect"] == "running"
    assert not entry.claim_disconnect()  # exactly once
    entry.disconnect_done()
    assert on_disk()["disconnect"] == "done"
    entry.redialing({"AutoRedial": "1"})  # AutoReconnect after a drop
    assert (on_disk()["disconnect"], on_disk()["macros"]) == ("idle", {"AutoRedial": "1"})
    entry.add_link("tunnel", LinkInfo("Main"), "openvpn", None)
    assert [link["entry"] for link in on_disk()["links"]] == ["Main"]
    entry.links_released()
    assert on_disk()["links"] == []
