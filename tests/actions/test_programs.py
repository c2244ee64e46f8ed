"""Executables, documents and monitored applications: exact argv, no shell, clear failures."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencm.actions.api import ActionKind, ActionPoint, ActionResult
from opencm.actions.engine import ActionEngine
from opencm.profile.model import load_profile
from tests.actions.conftest import context_for, make_profile, write_argv_dumper

HOSTILE = 'a b"; rm -rf / $(x) `y`\nz'


def wait_for(result: ActionResult) -> int:
    assert result.process is not None
    return result.process.wait(timeout=30)


def test_executable_starts_asynchronously_with_exact_argv(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    profile = make_profile(
        tmp_path,
        {
            "Connect Actions": [
                r'0=CONTOSO\dump /user %UserName% "/pop:%PopName%" %Domain% ""',
                "0&Flags=0x10",
            ]
        },
    )
    write_argv_dumper(tmp_path / "CONTOSO" / "dump", out)
    context = context_for(profile, UserName=HOSTILE, PopName="Seattle 28,800")
    with ActionEngine(profile.cms) as engine:
        result = engine.run_point(ActionPoint.POST_CONNECT, context)
    (action,) = result.results
    assert action.ran and action.ok and action.kind is ActionKind.EXECUTABLE
    assert isinstance(action.process, subprocess.Popen)
    assert wait_for(action) == 0
    dumped = json.loads(out.read_text())
    assert dumped["argv"] == ["/user", HOSTILE, "/pop:Seattle 28,800", "NULL", ""]
    assert dumped["cwd"] == str(tmp_path)
    assert list(action.argv) == [str(tmp_path / "CONTOSO" / "dump"), *dumped["argv"]]


def test_executables_are_not_awaited(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"Connect Actions": ["0=sleep 30", "1=true"]})
    with ActionEngine(profile.cms) as engine:
        started = time.monotonic()
        result = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile))
        elapsed = time.monotonic() - started
    sleeper, true = result.results
    try:
        assert sleeper.process is not None and sleeper.process.poll() is None
        assert elapsed < 10
        assert sleeper.program == "/usr/bin/sleep" or sleeper.program.endswith("/sleep")
    finally:
        assert sleeper.process is not None
        sleeper.process.kill()
        sleeper.process.wait(timeout=10)
        wait_for(true)


def test_windows_exe_runs_as_the_native_program_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "argv.json"
    profile = make_profile(tmp_path, {"Connect Actions": [r"0=CONTOSO\Dump.EXE one"]})
    write_argv_dumper(tmp_path / "CONTOSO" / "dump", out)
    with ActionEngine(profile.cms) as engine:
        (action,) = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile)).results
    assert wait_for(action) == 0
    assert json.loads(out.read_text())["argv"] == ["one"]


@pytest.mark.parametrize(
    ("line", "setup", "message"),
    [
        (
            r"0=CONTOSO\missing -x",
            None,
            "Custom Action missing failed: CONTOSO\\missing not found: not in the profile folder"
            " ({root}/CONTOSO/missing)",
        ),
        (
            r"0=CONTOSO\script.sh",
            "script.sh",
            "Custom Action script.sh failed: {root}/CONTOSO/script.sh is not executable"
            " (it needs execute permission: chmod +x)",
        ),
        (
            r"0=CONTOSO\setup.exe",
            "setup.exe",
            "Custom Action setup.exe failed: setup.exe is a Windows program, not available on"
            " Linux: no executable 'setup' beside it ({root}/CONTOSO)",
        ),
        (
            "0=no-such-program-opencm",
            None,
            "Custom Action no-such-program-opencm failed: no-such-program-opencm not found: not in"
            " the profile folder ({root}/no-such-program-opencm) nor on PATH",
        ),
        (
            r"0=C:\Windows\notepad.exe",
            None,
            "Custom Action notepad.exe failed: C:\\Windows\\notepad.exe is an absolute Windows"
            " path, which does not exist on Linux",
        ),
    ],
)
def test_programs_that_cannot_start_fail_naming_them(
    tmp_path: Path, line: str, setup: str | None, message: str
) -> None:
    profile = make_profile(tmp_path, {"Pre-Connect Actions": [line, "1=true"]})
    if setup:
        (tmp_path / "CONTOSO" / setup).write_text("#!/bin/sh\necho hi\n")  # no execute bit
    with ActionEngine(profile.cms) as engine:
        result = engine.run_point(ActionPoint.PRE_CONNECT, context_for(profile))
    failed, after = result.results
    assert not failed.ok and not failed.ran
    assert failed.message == message.format(root=tmp_path)
    assert after.skip_reason == "not run: action 0 failed at a fatal point"


def test_exec_failure_at_start_is_reported(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"Connect Actions": [r"0=CONTOSO\bogus"]})
    bogus = tmp_path / "CONTOSO" / "bogus"
    bogus.write_bytes(b"\x7fELF garbage that cannot be executed")
    bogus.chmod(0o755)
    with ActionEngine(profile.cms) as engine:
        (action,) = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile)).results
    assert action.message == f"Custom Action bogus failed: cannot start {bogus}: Exec format error"


def test_included_flag_never_searches_path(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"Connect Actions": ["0=true", "0&Flags=0x20"]})
    with ActionEngine(profile.cms) as engine:
        (planned,) = engine.plan(ActionPoint.POST_CONNECT, context_for(profile))
    assert planned.failure == f"true not found: not in the profile folder ({tmp_path}/true)"


def test_document_is_opened_with_xdg_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # xdg-open would start a desktop application; a stand-in earlier on PATH records its argv.
    out = tmp_path / "argv.json"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_argv_dumper(bin_dir / "xdg-open", out)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    profile = make_profile(tmp_path, {"Connect Actions": [r"0=CONTOSO\Welcome.HTML"]})
    (tmp_path / "CONTOSO" / "welcome.html").write_text("<p>hello</p>")
    with ActionEngine(profile.cms) as engine:
        (action,) = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile)).results
    assert action.kind is ActionKind.DOCUMENT
    assert wait_for(action) == 0
    assert json.loads(out.read_text())["argv"] == [str(tmp_path / "CONTOSO" / "welcome.html")]


def test_monitored_applications_accept_executables_only(tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        {
            "Auto Applications": [
                "0=sleep 30",
                r"1=CONTOSO\helper.so,Run",
                r"2=CONTOSO\readme.txt",
                "3=python:anything",
            ]
        },
    )
    (tmp_path / "CONTOSO" / "helper.so").write_bytes(b"\x7fELF")
    (tmp_path / "CONTOSO" / "readme.txt").write_text("read me")
    with ActionEngine(profile.cms, python_actions={"anything": lambda *_: 0}) as engine:
        result = engine.run_point(ActionPoint.MONITORED, context_for(profile))
    sleeper = result.results[0]
    try:
        assert sleeper.process is not None and sleeper.process.poll() is None
        messages = [r.message for r in result.results[1:]]
        assert messages == [
            f"Custom Action {name} failed: monitored applications must be executables (they are"
            f" watched until they exit); {written} is a {kind} action"
            for name, written, kind in [
                ("helper.so", r"CONTOSO\helper.so", "library"),
                ("readme.txt", r"CONTOSO\readme.txt", "document"),
                ("python:anything", "python:anything", "python"),
            ]
        ]
    finally:
        assert sleeper.process is not None
        sleeper.process.kill()
        sleeper.process.wait(timeout=10)


def test_start_monitored_returns_the_started_processes(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"Auto Applications": ["0=sleep 30", "1=sleep 30"]})
    with ActionEngine(profile.cms) as engine:
        processes = engine.start_monitored(context_for(profile))
    try:
        assert len(processes) == 2
        assert all(process.poll() is None for process in processes)
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\0b", "a parameter contains a NUL character, which no program can receive"),
        ("a\ud800", "a parameter cannot be encoded for the system: 'a\\ud800'"),
    ],
)
def test_unpassable_macro_value_fails_instead_of_truncating(
    tmp_path: Path, value: str, reason: str
) -> None:
    profile = make_profile(tmp_path, {"Disconnect Actions": ["0=true %UserName%", "1=true"]})
    with ActionEngine(profile.cms) as engine:
        result = engine.run_point(ActionPoint.DISCONNECT, context_for(profile, UserName=value))
    failed, after = result.results
    assert failed.message == f"Custom Action true failed: {reason}"
    assert after.process is not None and after.process.wait(timeout=30) == 0


def test_library_without_entry_point_fails_clearly(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"Connect Actions": [r"0=CONTOSO\helper.so"]})
    (tmp_path / "CONTOSO" / "helper.so").write_bytes(b"\x7fELF")
    with ActionEngine(profile.cms) as engine:
        (action,) = engine.run_point(ActionPoint.POST_CONNECT, context_for(profile)).results
    assert action.message == (
        r"Custom Action helper.so failed: CONTOSO\helper.so names no entry point: write"
        r" CONTOSO\helper.so,Entry"
    )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\0"),
        max_size=40,
    )
)
def test_any_macro_value_arrives_verbatim_as_one_argument(tmp_path: Path, value: str) -> None:
    out = tmp_path / "argv.json"
    out.unlink(missing_ok=True)
    if not (tmp_path / "CONTOSO").exists():
        make_profile(tmp_path, {"Connect Actions": [r"0=CONTOSO\dump -u %UserName% -d %Domain%"]})
        write_argv_dumper(tmp_path / "CONTOSO" / "dump", out)
    profile = load_profile(tmp_path / "CONTOSO.cmp")
    with ActionEngine(profile.cms) as engine:
        context = context_for(profile, UserName=value, Domain="CORP")
        (action,) = engine.run_point(ActionPoint.POST_CONNECT, context).results
    assert wait_for(action) == 0
    expected = value if value else "NULL"
    assert json.loads(out.read_text())["argv"] == ["-u", expected, "-d", "CORP"]


def test_a_program_flag_0x20_includes_must_be_inside_the_profile_folder(tmp_path: Path) -> None:
    """``..\\bin\\sh``, ``/bin/sh``, a link out of the folder: not run, and the plan says why."""
    from click.testing import CliRunner

    from opencm.cli.main import cli

    make_profile(
        tmp_path,
        {
            "Disconnect Actions": [  # not fatal: each is planned
                r"0=..\..\..\..\..\..\..\..\bin\sh -c x",
                "0&Flags=0x20",
                "1=/bin/sh -c x",
                "1&Flags=32",
                r"2=CONTOSO\out.sh",
                "2&Flags=32",
                r"3=CONTOSO\inside.sh",
                "3&Flags=32",
                "4=/bin/true",
            ]
        },
    )
    (tmp_path / "CONTOSO" / "out.sh").symlink_to("/bin/sh")
    inside = tmp_path / "CONTOSO" / "inside.sh"
    inside.write_text("#!/bin/sh\n")
    inside.chmod(0o755)
    result = CliRunner().invoke(cli, ["actions", "plan", str(tmp_path / "CONTOSO.cmp"), "--json"])
    (point,) = [p for p in json.loads(result.output)["points"] if p["point"] == "disconnect"]
    runs = {action["index"]: action["runs"] for action in point["actions"]}
    assert runs == {0: False, 1: False, 2: False, 3: True, 4: True}
    for action in point["actions"][:3]:
        assert "outside the profile folder" in action["skip_reason"]
        assert "flag 0x20" in action["skip_reason"]
