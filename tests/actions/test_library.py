"""Library actions: a real C library, called out of process, crashing and hanging safely."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from opencm.actions import libhost
from opencm.actions.api import ActionKind, ActionPoint
from opencm.actions.engine import ActionEngine
from opencm.actions.libhost import LibraryHost, Outcome
from opencm.profile.model import ConnectionType
from tests.actions.conftest import compile_library, context_for, make_profile


def records(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_call_passes_the_documented_arguments_and_the_command_line(
    tmp_path: Path, host: LibraryHost
) -> None:
    record = tmp_path / "record.txt"
    profile = make_profile(
        tmp_path,
        {
            "Connect Actions": [
                r"0=CONTOSO\action.so,Succeed /Profile %PROFILE% /User %UserName% /Pop %PopName%"
                r" %AutoRedial% %DOMAIN%",
                "0&Flags=48",
                "0&Description=to update your routing table",
            ]
        },
    )
    compile_library(tmp_path / "CONTOSO", "action.so", record)
    context = context_for(profile, UserName="jobrown", PopName="Seattle 28,800", AutoRedial="0")
    with ActionEngine(profile.cms, library_host=host) as engine:
        result = engine.run_point(ActionPoint.POST_CONNECT, context)
    assert result.ok
    (action,) = result.results
    assert (action.kind, action.ran, action.return_value, action.message) == (
        ActionKind.LIBRARY,
        True,
        0,
        None,
    )
    assert records(record) == [
        f"Succeed|parent=null|instance=set|reserved=0|/Profile {tmp_path / 'CONTOSO.cmp'} /User"
        ' jobrown /Pop "Seattle 28,800" 0 NULL'
    ]


def test_negative_return_fails_with_the_documented_message_and_stops_a_fatal_point(
    tmp_path: Path, host: LibraryHost
) -> None:
    record = tmp_path / "record.txt"
    profile = make_profile(
        tmp_path,
        {
            "Pre-Connect Actions": [
                r"0=CONTOSO\action.so,Fail a",
                "0&Description=check the certificate",
                r"1=CONTOSO\action.so,Succeed never",
            ],
            "Disconnect Actions": [
                r"0=CONTOSO\action.so,Fail b",
                r"1=CONTOSO\action.so,Succeed still",
            ],
        },
    )
    compile_library(tmp_path / "CONTOSO", "action.so", record)
    with ActionEngine(profile.cms, library_host=host) as engine:
        fatal = engine.run_point(ActionPoint.PRE_CONNECT, context_for(profile))
        tolerant = engine.run_point(ActionPoint.DISCONNECT, context_for(profile))
    assert not fatal.ok
    failed = fatal.failed
    assert failed is not None
    assert failed.message == "Custom Action check the certificate failed -5"
    assert failed.return_value == -5
    assert not fatal.results[1].ran
    assert fatal.results[1].skip_reason == "not run: action 0 failed at a fatal point"
    # Disconnect is not a fatal point: the next action still runs.
    assert tolerant.failed is not None
    assert tolerant.failed.message == "Custom Action action.so failed -5"
    assert tolerant.results[1].ran and tolerant.results[1].ok
    assert [line.split("|")[-1] for line in records(record)] == ["a", "b", "still"]


def test_crash_and_hang_are_failures_and_the_host_keeps_serving(
    tmp_path: Path, host: LibraryHost
) -> None:
    record = tmp_path / "record.txt"
    profile = make_profile(
        tmp_path,
        {
            "On-Error Actions": [
                r"0=CONTOSO\action.so,Crash x",
                "0&Description=collect logs",
                r"1=CONTOSO\action.so,Hang y",
                "1&Description=upload logs",
                r"2=CONTOSO\action.so,Succeed z",
            ]
        },
    )
    compile_library(tmp_path / "CONTOSO", "action.so", record)
    with ActionEngine(profile.cms, library_host=host) as engine:
        result = engine.run_point(ActionPoint.ON_ERROR, context_for(profile, timeout=0.5))
    crash, hang, fine = result.results
    assert crash.message == "Custom Action collect logs failed: crashed (SIGSEGV)"
    assert (
        hang.message
        == "Custom Action upload logs failed: did not return within 0.5 s and was stopped"
    )
    assert 0.5 <= hang.duration < 5
    assert fine.ok and fine.return_value == 0
    assert host.starts == 1
    assert [line.split("|")[0] for line in records(record)] == ["Crash", "Hang", "Succeed"]


def test_hung_call_leaves_no_process_behind(tmp_path: Path, host: LibraryHost) -> None:
    library = compile_library(tmp_path, "action.so", tmp_path / "record.txt")
    call = host.call(library, "Hang", "", timeout=0.3)
    assert call.outcome is Outcome.TIMEOUT
    assert host.pid is not None
    children = Path(f"/proc/{host.pid}/task/{host.pid}/children").read_text().split()
    assert children == []


def test_a_dead_host_is_restarted(tmp_path: Path, host: LibraryHost) -> None:
    library = compile_library(tmp_path, "action.so", tmp_path / "record.txt")
    assert host.call(library, "Succeed", "one", timeout=5).ok
    first = host.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    for _ in range(500):  # until the kernel has ended it (a zombie until LibraryHost reaps it)
        if Path(f"/proc/{first}/stat").read_text().split(") ")[1].startswith("Z"):
            break
        time.sleep(0.01)
    assert host.call(library, "Succeed", "two", timeout=5).ok
    assert host.pid != first and host.starts == 2


def test_missing_entry_point_and_unloadable_library(tmp_path: Path, host: LibraryHost) -> None:
    library = compile_library(tmp_path, "action.so", tmp_path / "record.txt")
    missing = host.call(library, "NoSuchEntry", "", timeout=5)
    assert (missing.outcome, missing.detail) == (Outcome.ERROR, "has no entry point 'NoSuchEntry'")
    garbage = tmp_path / "garbage.so"
    garbage.write_bytes(b"MZ not an ELF file")
    broken = host.call(garbage, "Succeed", "", timeout=5)
    assert broken.outcome is Outcome.ERROR
    assert broken.detail.startswith("cannot load: ")


def test_windows_dll_runs_as_the_so_beside_it(tmp_path: Path, host: LibraryHost) -> None:
    record = tmp_path / "record.txt"
    profile = make_profile(
        tmp_path,
        {"Connect Actions": [r"0=contoso\CMROUTE.DLL,Succeed /STATIC_FILE_NAME routes.txt"]},
    )
    (tmp_path / "CONTOSO" / "cmroute.dll").write_bytes(b"MZ")  # the Windows DLL, shipped too
    compile_library(tmp_path / "CONTOSO", "CmRoute.so", record)
    with ActionEngine(profile.cms, library_host=host) as engine:
        (planned,) = engine.plan(ActionPoint.POST_CONNECT, context_for(profile))
        result = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile))
    assert planned.program == str(tmp_path / "CONTOSO" / "CmRoute.so")
    assert result.ok
    assert records(record)[0].endswith("|/STATIC_FILE_NAME routes.txt")


def test_windows_dll_without_replacement_fails_and_says_why(tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        {"Connect Actions": [r"0=CONTOSO\cmproxy.dll,SetProxy /x", "0&Description=proxy"]},
    )
    with ActionEngine(profile.cms) as engine:
        result = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile))
    failed = result.failed
    assert failed is not None and not failed.ran
    assert failed.message == (
        "Custom Action proxy failed: cmproxy.dll is a Windows library, not available on Linux:"
        f" no cmproxy.so beside it ({tmp_path / 'CONTOSO'}) and no Python action"
        " 'cmproxy.SetProxy' registered (entry-point group opencm.actions)"
    )


@pytest.mark.parametrize("connection_type", list(ConnectionType))
def test_connection_type_macro_reaches_the_library(
    tmp_path: Path, host: LibraryHost, connection_type: ConnectionType
) -> None:
    record = tmp_path / "record.txt"
    profile = make_profile(
        tmp_path, {"Connect Actions": [r"0=CONTOSO\a.so,Succeed %ConnectionType% %interactive%"]}
    )
    compile_library(tmp_path / "CONTOSO", "a.so", record)
    context = context_for(profile, connection_type=connection_type)
    with ActionEngine(profile.cms, library_host=host) as engine:
        assert engine.run_point(ActionPoint.POST_CONNECT, context).ok
    assert records(record)[0].endswith(f"|{int(connection_type)} 1")


def test_library_cannot_read_the_hosts_requests(tmp_path: Path, host: LibraryHost) -> None:
    library = compile_library(tmp_path, "action.so", tmp_path / "record.txt")
    read = host.call(library, "ReadStdin", "", timeout=5)
    assert (read.outcome, read.value) == (Outcome.RETURNED, 0)
    assert host.call(library, "Succeed", "after", timeout=5).ok


def test_a_stuck_host_is_killed_and_replaced(
    tmp_path: Path, host: LibraryHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = compile_library(tmp_path, "action.so", tmp_path / "record.txt")
    assert host.call(library, "Succeed", "one", timeout=5).ok
    stuck = host.pid
    assert stuck is not None
    monkeypatch.setattr(libhost, "HOST_GRACE", 0.3)
    os.kill(stuck, signal.SIGSTOP)  # alive but never answering
    call = host.call(library, "Succeed", "two", timeout=0.2)
    assert call.outcome is Outcome.HOST_FAILED
    assert call.detail == f"the library host (PID {stuck}) stopped answering"
    assert not Path(f"/proc/{stuck}").exists()  # killed and reaped
    assert host.call(library, "Succeed", "three", timeout=5).ok
    assert host.starts == 2


def test_status_text_while_a_library_runs(tmp_path: Path, host: LibraryHost) -> None:
    profile = make_profile(
        tmp_path,
        {
            "Connect Actions": [
                r"0=CONTOSO\a.so,Succeed",
                "0&Description=to update your routing table",
                "1=true",
            ]
        },
    )
    compile_library(tmp_path / "CONTOSO", "a.so", tmp_path / "record.txt")
    shown: list[str] = []
    with ActionEngine(
        profile.cms, library_host=host, on_running=lambda _action, text: shown.append(text)
    ) as engine:
        result = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile))
    # The executable shows its line too: the session waits for it at this point.
    assert shown[0] == "Running Custom Action to update your routing table"
    assert shown[1].startswith("Running Custom Action ") and "true" in shown[1]
    assert len(shown) == 2
    process = result.results[1].process
    assert process is not None and process.wait(timeout=30) == 0
