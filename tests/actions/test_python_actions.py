"""Python actions, registered through a real (test-only) distribution's entry points."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from opencm.actions.api import ActionKind, ActionPoint
from opencm.actions.engine import ActionEngine
from tests.actions.conftest import context_for, make_profile

MODULE = """
import json

CALLS = []


def record(parent, instance, command_line, reserved):
    CALLS.append([parent, instance, command_line, reserved])
    with open({out!r}, "a") as out:
        out.write(json.dumps([parent, instance, command_line, reserved]) + "\\n")
    return 0


def refuse(parent, instance, command_line, reserved):
    return -7


def explode(parent, instance, command_line, reserved):
    raise RuntimeError("no network")


def vague(parent, instance, command_line, reserved):
    return "yes"
"""

ENTRY_POINTS = """[opencm.actions]
record = ocm_test_actions:record
refuse = ocm_test_actions:refuse
explode = ocm_test_actions:explode
vague = ocm_test_actions:vague
cmproxy.SetProxy = ocm_test_actions:record
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install a distribution with entry points in group opencm.actions; returns its log."""
    site = tmp_path / "site"
    site.mkdir()
    out = tmp_path / "calls.jsonl"
    (site / "ocm_test_actions.py").write_text(MODULE.format(out=str(out)))
    dist = site / "ocm_test_actions-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ocm-test-actions\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "ocm_test_actions", raising=False)
    return out


def calls(out: Path) -> list[list[object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_python_action_gets_the_dll_contract(installed: Path, tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path, {"Connect Actions": ['0=python:record /u %UserName% "%PopName%"']}
    )
    context = context_for(profile, UserName="jo", PopName="Seattle 28,800")
    with ActionEngine(profile.cms) as engine:
        (planned,) = engine.plan(ActionPoint.POST_CONNECT, context)
        result = engine.run_point(ActionPoint.POST_CONNECT, context)
    assert (planned.kind, planned.program) == (ActionKind.PYTHON, "python:record")
    assert result.ok and result.results[0].return_value == 0
    assert calls(installed) == [[None, None, '/u jo "Seattle 28,800"', 0]]


def test_python_replacement_of_a_windows_dll(installed: Path, tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        {"Connect Actions": [r"0=CONTOSO\cmproxy.dll,SetProxy /ServiceName %SERVICENAME%"]},
    )
    with ActionEngine(profile.cms) as engine:
        (planned,) = engine.plan(ActionPoint.POST_CONNECT, context_for(profile))
        assert engine.run_point(ActionPoint.POST_CONNECT, context_for(profile)).ok
    assert (planned.kind, planned.program, planned.entry) == (
        ActionKind.PYTHON,
        "python:cmproxy.SetProxy",
        "SetProxy",
    )
    assert calls(installed) == [[None, None, '/ServiceName "Contoso VPN"', 0]]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("refuse", "Custom Action python:refuse failed -7"),
        ("explode", "Custom Action python:explode failed: raised RuntimeError: no network"),
        ("vague", "Custom Action python:vague failed: returned 'yes', not an integer"),
        (
            "absent",
            "Custom Action python:absent failed: no Python action named 'absent' is registered"
            " (entry-point group opencm.actions)",
        ),
    ],
)
def test_python_failures(installed: Path, tmp_path: Path, name: str, message: str) -> None:
    profile = make_profile(tmp_path, {"Pre-Init Actions": [f"0=python:{name}", "1=python:record"]})
    with ActionEngine(profile.cms) as engine:
        result = engine.run_point(ActionPoint.PRE_INIT, context_for(profile))
    assert result.failed is not None and result.failed.message == message
    assert not result.results[1].ran
    assert not installed.exists()
