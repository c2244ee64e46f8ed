"""Who runs: the &Flags connection table, unattended runs, logon runs, numbering gaps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from opencm.actions.api import ActionPoint
from opencm.actions.engine import ActionEngine
from opencm.actions.plan import PlannedAction
from opencm.profile.model import ConnectionType
from tests.actions.conftest import context_for, make_profile

DIALUP, DIRECT, DOUBLE = ConnectionType.DIALUP, ConnectionType.DIRECT, ConnectionType.DOUBLE
#: "Custom actions keys", "#&Flags": which connections each bit admits (0 admits all).
DOCUMENTED_TABLE = {1: {DIRECT}, 2: {DIALUP, DOUBLE}, 4: {DIALUP}, 8: {DIRECT, DOUBLE}}
ALL_FLAGS = range(128)  # every combination of the six known bits, and an unknown one (0x40)


def expected_to_run(flags: int, connection: ConnectionType, interactive: bool) -> bool:
    bits = [bit for bit in DOCUMENTED_TABLE if flags & bit]
    by_type = not bits or any(connection in DOCUMENTED_TABLE[bit] for bit in bits)
    # 0x10 set = "does not interact with the user": only those run unattended.
    return by_type and (interactive or bool(flags & 0x10))


@pytest.fixture(scope="module")
def flag_plans(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[ConnectionType, bool], list[PlannedAction]]:
    root = tmp_path_factory.mktemp("flags")
    entries = [
        line
        for flags in ALL_FLAGS
        for line in (f"{flags}=CONTOSO\\prog {flags}", f"{flags}&Flags={flags}")
    ]
    profile = make_profile(root, {"Pre-Connect Actions": entries})
    program = root / "CONTOSO" / "prog"  # in the profile folder: found with or without 0x20
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    plans = {}
    with ActionEngine(profile.cms) as engine:
        for connection, interactive in itertools.product(ConnectionType, (True, False)):
            context = context_for(profile, connection_type=connection, interactive=interactive)
            plans[connection, interactive] = engine.plan(ActionPoint.PRE_CONNECT, context)
    return plans


@pytest.mark.parametrize("interactive", [True, False], ids=["attended", "unattended"])
@pytest.mark.parametrize("connection", list(ConnectionType), ids=lambda c: c.cli_name)
@pytest.mark.parametrize("flags", ALL_FLAGS)
def test_flag_table(
    flag_plans: dict[tuple[ConnectionType, bool], list[PlannedAction]],
    flags: int,
    connection: ConnectionType,
    interactive: bool,
) -> None:
    planned = flag_plans[connection, interactive][flags]
    assert (planned.index, planned.flags) == (flags, flags)
    assert planned.runs is expected_to_run(flags, connection, interactive)
    if not planned.runs:
        assert planned.skip_reason is not None


def test_skip_reasons_say_why(tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        {"Pre-Dial Actions": ["0=true", "0&Flags=4", "1=true", "1&Flags=0x9", "2=true"]},
    )
    with ActionEngine(profile.cms) as engine:
        plan = engine.plan(
            ActionPoint.PRE_DIAL, context_for(profile, connection_type=DIRECT, interactive=False)
        )
    assert [p.reason for p in plan] == [
        "runs only for dial-up-only connections (flags 0x4); this is a direct tunnel connection",
        "interacts with the user (flag 0x10 not set) and nobody is at the screen (unattended)",
        "interacts with the user (flag 0x10 not set) and nobody is at the screen (unattended)",
    ]


def test_unknown_bits_are_kept(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"Connect Actions": ["0=true", "0&Flags=0x150"]})
    with ActionEngine(profile.cms) as engine:
        (planned,) = engine.plan(ActionPoint.POST_CONNECT, context_for(profile, interactive=False))
    assert planned.flags == 0x150 and planned.runs


def test_gap_skips_later_actions_in_plan_and_run(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"Disconnect Actions": ["0=true", "1=true", "3=true"]})
    with ActionEngine(profile.cms) as engine:
        plan = engine.plan(ActionPoint.DISCONNECT, context_for(profile))
        result = engine.run_point(ActionPoint.DISCONNECT, context_for(profile))
    for started in result.results[:2]:
        assert started.process is not None
        assert started.process.wait(timeout=30) == 0
    assert [(p.index, p.runs, p.reason) for p in plan] == [
        (0, True, None),
        (1, True, None),
        (3, False, "follows a gap at 2"),
    ]
    assert (result.results[2].ran, result.results[2].skip_reason) == (False, "follows a gap at 2")


def test_logon_runs_only_allowed_programs(tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        {
            "Pre-Connect Actions": [
                "0=python:audit",
                "0&Flags=16",
                "1=python:other",
                "1&Flags=16",
            ]
        },
    )
    seen: list[str] = []

    def audit(_parent: None, _instance: None, line: str, _reserved: int) -> int:
        seen.append("audit")
        return 0

    def other(_parent: None, _instance: None, line: str, _reserved: int) -> int:
        seen.append("other")
        return 0

    registry = {"audit": audit, "other": other}
    context = context_for(profile, interactive=False, logon=True)
    with ActionEngine(profile.cms, python_actions=registry) as nobody:
        refused = nobody.run_point(ActionPoint.PRE_CONNECT, context)
    assert refused.ok and seen == []
    assert {r.skip_reason for r in refused.results} == {
        "runs at logon with system rights and the program is not on the logon allow list"
    }
    with ActionEngine(
        profile.cms, python_actions=registry, logon_allowed={"python:audit"}
    ) as allowed:
        result = allowed.run_point(ActionPoint.PRE_CONNECT, context)
    assert [r.ran for r in result.results] == [True, False]
    assert seen == ["audit"]


def test_plan_has_no_side_effects(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    profile = make_profile(tmp_path, {"Pre-Init Actions": [f"0=touch {marker}"]})
    with ActionEngine(profile.cms) as engine:
        engine.plan(ActionPoint.PRE_INIT, context_for(profile))
        assert engine.library_host.pid is None
    assert not marker.exists()
