"""``opencm actions plan`` and ``run``: the JSON schema, the human table, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from opencm.actions.api import ActionPoint
from opencm.cli.main import cli
from opencm.errors import InputError
from tests.actions.conftest import compile_library, make_profile, write_argv_dumper

ACTION_KEYS: dict[str, type | tuple[type, ...]] = {
    "index": int,
    "kind": str,
    "program": str,
    "entry": (str, type(None)),
    "args": list,
    "command_line": str,
    "flags": int,
    "description": str,
    "wait": (int, type(None)),
    "synchronous": bool,
    "runs": bool,
    "skip_reason": (str, type(None)),
}


def azure_like(root: Path) -> Path:
    make_profile(
        root,
        {
            "Pre-Connect Actions": [r"0=CONTOSO\dump %UserName%", "0&Flags=0x10"],
            "Connect Actions": [
                r"0=CONTOSO\cmroute.dll,SetRoutes /Profile %PROFILE% /ServiceName %SERVICENAME%",
                "0&Flags=48",
                "0&Description=to update your routing table",
            ],
            "Disconnect Actions": ["0=true", "0&Flags=4", "2=true"],
        },
    )
    write_argv_dumper(root / "CONTOSO" / "dump", root / "argv.json")
    return root / "CONTOSO.cmp"


def plan_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["actions", "plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_plan_json_schema(tmp_path: Path) -> None:
    cmp = azure_like(tmp_path)
    document = plan_json(str(cmp), "--type", "direct", "--set", "UserName=a b")
    assert set(document) == {"profile", "connection_type", "points"}
    assert (document["profile"], document["connection_type"]) == (str(cmp), "direct")
    assert [p["point"] for p in document["points"]] == [p.value for p in ActionPoint]
    assert [p["section"] for p in document["points"]] == [p.section for p in ActionPoint]
    for point in document["points"]:
        assert set(point) == {"point", "section", "not_reached", "builtin", "actions"}
        assert point["builtin"] == []  # no PhoneBookURL
        for action in point["actions"]:
            assert set(action) == set(ACTION_KEYS)
            for key, kind in ACTION_KEYS.items():
                assert isinstance(action[key], kind), key
            assert action["kind"] in {"library", "python", "executable", "document"}
    points = {p["point"]: p["actions"] for p in document["points"]}
    (dump,) = points["pre-connect"]
    assert dump["program"] == str(tmp_path / "CONTOSO" / "dump")
    assert (dump["args"], dump["command_line"], dump["runs"]) == (["a b"], '"a b"', True)
    (route,) = points["post-connect"]
    # opencm's own cmroute replaces the DLL (a built-in Python action), as the profile is.
    assert route["kind"] == "python" and route["entry"] == "SetRoutes"
    assert route["program"] == "python:cmroute.SetRoutes"
    assert route["args"] == ["/Profile", str(cmp), "/ServiceName", "Contoso VPN"]
    assert route["command_line"] == f'/Profile {cmp} /ServiceName "Contoso VPN"'
    assert route["description"] == "to update your routing table"
    assert route["flags"] == 48 and route["runs"] is True and route["skip_reason"] is None
    assert [(a["index"], a["runs"], a["skip_reason"]) for a in points["disconnect"]] == [
        (
            0,
            False,
            "runs only for dial-up-only connections (flags 0x4); this is a direct tunnel"
            " connection",
        ),
        (2, False, "follows a gap at 1"),
    ]


def test_plan_says_which_points_a_connection_type_never_reaches(tmp_path: Path) -> None:
    cmp = azure_like(tmp_path)
    expected = {
        "direct": {"pre-dial": "a direct connection does not dial"},
        "dialup": {"pre-tunnel": "a dialup connection has no tunnel"},
        "double": {},
    }
    for kind, not_reached in expected.items():
        document = plan_json(str(cmp), "--type", kind)
        got = {p["point"]: p["not_reached"] for p in document["points"] if p["not_reached"]}
        assert got == not_reached, kind


def test_plan_shows_the_built_in_phone_book_update_first_at_post_connect(tmp_path: Path) -> None:
    make_profile(
        tmp_path,
        {"opencm": ["PhoneBookURL=http://127.0.0.1:9/pbserver/pbserver.dll"]},
    )
    document = plan_json(str(tmp_path / "CONTOSO.cmp"))
    builtins = {p["point"]: p["builtin"] for p in document["points"] if p["builtin"]}
    assert builtins == {
        "post-connect": [
            "Automatically download phone-book updates from"
            " http://127.0.0.1:9/pbserver/pbserver.dll"
        ]
    }
    result = CliRunner().invoke(cli, ["actions", "plan", str(tmp_path / "CONTOSO.cmp")])
    assert "first built-in   Automatically download phone-book updates" in result.output


def test_plan_unattended_and_type(tmp_path: Path) -> None:
    cmp = azure_like(tmp_path)
    document = plan_json(str(cmp), "--type", "dialup", "--unattended")
    points = {p["point"]: p["actions"] for p in document["points"]}
    assert document["connection_type"] == "dialup"
    assert points["pre-connect"][0]["runs"] is True  # 0x10: runs unattended
    assert points["disconnect"][0]["skip_reason"] == (
        "interacts with the user (flag 0x10 not set) and nobody is at the screen (unattended)"
    )


def test_plan_human_output_and_warnings(tmp_path: Path) -> None:
    cmp = azure_like(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "opencm", "actions", "plan", str(cmp), "--type", "direct"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "post-connect [Connect Actions]" in result.stdout
    assert "why not: follows a gap at 1" in result.stdout
    assert "flags 0x30: all connections, non-interactive, included in the profile" in result.stdout
    cms = tmp_path / "CONTOSO" / "CONTOSO.cms"
    assert f"{cms}:17: warning: action 2 follows a gap at 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_point_executes_and_reports(tmp_path: Path) -> None:
    cmp = azure_like(tmp_path)
    hostile = 'a b"; rm -rf / $(x) `y`\nz'
    result = CliRunner().invoke(
        cli,
        [
            "actions",
            "run",
            "pre-connect",
            str(cmp),
            "--set",
            f"UserName={hostile}",
            "--json",
            "--wait",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    (action,) = report["results"]
    assert (action["ran"], action["exit_status"]) == (True, 0)
    assert json.loads((tmp_path / "argv.json").read_text())["argv"] == [hostile]


def test_run_exits_1_when_an_action_fails(tmp_path: Path) -> None:
    make_profile(tmp_path, {"Pre-Init Actions": [r"0=CONTOSO\lib.so,Fail x", "0&Description=d"]})
    compile_library(tmp_path / "CONTOSO", "lib.so", tmp_path / "record.txt")
    result = CliRunner().invoke(cli, ["actions", "run", "pre-init", str(tmp_path)])
    assert result.exit_code == 1
    assert "Custom Action d failed -5" in result.stdout


def test_bad_set_is_a_usage_error(tmp_path: Path) -> None:
    cmp = azure_like(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "opencm", "actions", "plan", str(cmp), "--set", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "opencm: error: --set 'nonsense': expected MACRO=VALUE, e.g. UserName=jobrown\n"
    )


def test_profile_check_reports_action_numbering(tmp_path: Path) -> None:
    make_profile(
        tmp_path,
        {"Connect Actions": ["0=true", "0&Flags=1.1", "2=true", "7&Description=orphan"]},
    )
    result = subprocess.run(
        [sys.executable, "-m", "opencm", "profile", "check", str(tmp_path / "CONTOSO.cmp")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    cms = tmp_path / "CONTOSO" / "CONTOSO.cms"
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{cms}:9: warning: [Connect Actions] 0&Flags: '1.1' is not an integer; truncated to 1",
        f"{cms}:10: warning: [Connect Actions] action 2 follows a gap at 1: the numbers must run"
        " 0, 1, 2, … without a hole, so it never runs [numbering]",
        f"{cms}:11: warning: [Connect Actions] 7&Description belongs to no action: there is no"
        " key 7 [numbering]",
    ]


def test_set_cannot_contradict_the_run(tmp_path: Path) -> None:
    cmp = azure_like(tmp_path)
    result = CliRunner().invoke(cli, ["actions", "plan", str(cmp), "--set", "connectiontype=2"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError)
    assert str(result.exception) == "--set 'connectiontype=2': %connectiontype% comes from --type"


def test_run_with_a_relative_profile_path_starts_the_program_shipped_in_it(
    tmp_path: Path,
) -> None:
    """``opencm actions run POINT build/X/X.cmp`` from the kit's folder: the program shipped in
    the profile starts (its path is made absolute before the process moves to the profile)."""
    (tmp_path / "hello.sh").write_text('#!/bin/sh\necho "hello $1" > "$2"\n')
    (tmp_path / "hello.sh").chmod(0o755)
    out = tmp_path / "said"
    action = (
        '{point="pre-connect", program="hello.sh", include=true, '
        f'parameters="%ServiceName% {out}", wait=30}}'
    )
    for args in (
        ["kit", "new", "K", "--no-input", "--name", "Rel", "--short", "REL",
         "--vpn", "M", "vpn.example", "networkmanager", "Conn", "--action", action],
        ["kit", "build", "K"],
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "opencm", *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    ran = subprocess.run(
        [sys.executable, "-m", "opencm", "actions", "run", "pre-connect", "K/build/REL/REL.cmp",
         "--wait"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert out.read_text() == "hello Rel\n"
