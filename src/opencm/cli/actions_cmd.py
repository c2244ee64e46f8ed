"""``opencm actions``: show what a profile's custom actions will do, and run one point.

``plan`` has no side effects: for each of the nine points, in order, it lists every action with
its kind, resolved program, expanded arguments and flags, and says why anything will not run.
``run`` runs one point for real, exactly as a connection would.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from opencm.actions import flags as flagbits
from opencm.actions.api import ActionPoint, ActionResult, RunContext, point_not_reached
from opencm.actions.engine import ActionEngine
from opencm.actions.macros import KNOWN_MACROS
from opencm.actions.plan import PlannedAction
from opencm.cli.output import emit_json, warn_problem
from opencm.cli.params import PATH, json_option
from opencm.errors import EXIT_OK, EXIT_PROBLEMS, InputError
from opencm.profile.model import ConnectionType, ServiceProfile, load_profile

TYPES = click.Choice(["dialup", "direct", "double"])
POINTS = click.Choice([point.value for point in ActionPoint])

#: Macros whose value the run itself decides.
_FROM_OPTIONS = {"connectiontype": "--type", "interactive": "--unattended"}


def _parse_sets(values: Sequence[str]) -> dict[str, str]:
    macros: dict[str, str] = {}
    canonical = {name.lower(): name for name in KNOWN_MACROS}
    for item in values:
        name, equals, value = item.partition("=")
        name = name.strip().strip("%")
        if not equals or not name:
            raise InputError(f"--set {item!r}: expected MACRO=VALUE, e.g. UserName=jobrown")
        if name.lower() in _FROM_OPTIONS:
            raise InputError(f"--set {item!r}: %{name}% comes from {_FROM_OPTIONS[name.lower()]}")
        macros[canonical.get(name.lower(), name)] = value
    return macros


def _context(
    loaded: ServiceProfile,
    connection_type: str | None,
    unattended: bool,
    sets: Sequence[str],
    timeout: float = 60.0,
) -> RunContext:
    macros: dict[str, str] = dict(loaded.base_macros())
    overrides = _parse_sets(sets)
    for name in list(macros):
        if name.lower() in {key.lower() for key in overrides}:
            del macros[name]
    macros.update(overrides)
    kind = (
        ConnectionType.from_name(connection_type)
        if connection_type
        else loaded.default_connection_type()
    )
    return RunContext(
        macros=macros,
        connection_type=kind,
        interactive=not unattended,
        profile_dir=loaded.profile_dir,
        timeout=timeout,
    )


def _warn_problems(engine: ActionEngine, loaded: ServiceProfile) -> None:
    for _point, problem in engine.problems():
        warn_problem(replace(problem, path=loaded.cms_path))


@click.group()
def actions() -> None:
    """Plan and run a profile's custom actions."""


def _common(function: Any) -> Any:
    options = [
        json_option("Print the result as JSON."),
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="MACRO=VALUE",
            help="Give a macro a value (repeatable), e.g. --set UserName=jobrown.",
        ),
        click.option(
            "--unattended", is_flag=True, help="Nobody is at the screen: skip interactive actions."
        ),
        click.option(
            "--type",
            "connection_type",
            type=TYPES,
            help="The connection type (default: the profile's own).",
        ),
    ]
    for option in options:
        function = option(function)
    return function


@actions.command()
@click.argument("path", type=PATH)
@_common
def plan(
    path: Path, connection_type: str | None, unattended: bool, sets: tuple[str, ...], as_json: bool
) -> None:
    """Show, before anything runs, what runs at each of the nine points and why anything won't.

    PATH is a .cmp, a .cms or a profile folder.
    """
    loaded = load_profile(path)
    context = _context(loaded, connection_type, unattended, sets)
    with ActionEngine(loaded.cms) as engine:
        _warn_problems(engine, loaded)
        plans = [(point, engine.plan(point, context)) for point in ActionPoint]
    if as_json:
        emit_json(
            {
                "profile": str(path),
                "connection_type": context.connection_type.cli_name,
                "points": [
                    {
                        "point": point.value,
                        "section": point.section,
                        "not_reached": point_not_reached(point, context.connection_type),
                        "builtin": _builtins(loaded, point),
                        "actions": [action.to_json() for action in planned],
                    }
                    for point, planned in plans
                ],
            }
        )
        return
    click.echo(
        f"{loaded.service_name}: {context.connection_type.cli_name} connection,"
        f" {'attended' if context.interactive else 'unattended'}"
    )
    for point, planned in plans:
        click.echo("")
        click.echo(click.style(f"{point.value} [{point.section}]", bold=True))
        not_reached = point_not_reached(point, context.connection_type)
        if not_reached and planned:
            click.echo(f"  (not reached: {not_reached}; with --type it would run as below)")
        for builtin in _builtins(loaded, point):
            click.echo(f"  first {'built-in':<10} {builtin}")
        if not planned:
            click.echo("  (no actions)")
        for action in planned:
            _echo_planned(action)


def _builtins(loaded: ServiceProfile, point: ActionPoint) -> list[str]:
    """What the session runs at ``point`` before the profile's own actions.

    "How Connection Manager Works": a profile that names a Phone Book Service gets "Automatically
    download phone-book updates" as its first post-connect action (opencm.pbs.autoupdate).
    """
    if point is not ActionPoint.POST_CONNECT:
        return []
    url = loaded.phonebook_url
    return [f"Automatically download phone-book updates from {url}"] if url else []


def _echo_planned(action: PlannedAction) -> None:
    verdict = click.style("run ", fg="green") if action.runs else click.style("skip", fg="yellow")
    click.echo(f"  {action.index:>3} {verdict} {action.kind.value:<10} {action.description}")
    target = action.program + (f" → {action.entry}" if action.entry else "")
    click.echo(f"        program: {target}")
    if action.command_line:
        label = "command line" if action.kind.value in ("library", "python") else "arguments"
        click.echo(f"        {label}: {action.command_line}")
    click.echo(f"        flags {action.flags:#x}: {', '.join(flagbits.describe(action.flags))}")
    click.echo(f"        {_timing(action)}")
    if action.reason:
        click.echo(f"        why not: {action.reason}")
    for note in action.notes:
        click.echo(f"        note: {note}")


def _timing(action: PlannedAction) -> str:
    """How the session treats the action's end (docs/actions.md, "Synchronous or not")."""
    if action.waits == "returns":
        return "synchronous: the point waits for it to return"
    if action.wait is None:
        return "asynchronous: started, not waited for; its exit status does not count"
    return f"waited for up to {action.wait} s (N&Wait); its exit status counts"


@actions.command()
@click.argument("point", type=POINTS)
@click.argument("path", type=PATH)
@_common
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="Seconds a library or Python action may take.",
)
@click.option("--wait", is_flag=True, help="Wait for started programs and show their exit status.")
@click.pass_context
def run(
    ctx: click.Context,
    point: str,
    path: Path,
    connection_type: str | None,
    unattended: bool,
    sets: tuple[str, ...],
    as_json: bool,
    timeout: float,
    wait: bool,
) -> None:
    """Run the actions of one POINT (pre-init … on-error) of a profile, for real.

    Exit status 1 when an action failed.
    """
    loaded = load_profile(path)
    context = _context(loaded, connection_type, unattended, sets, timeout)
    action_point = ActionPoint(point)

    def show_running(_action: PlannedAction, text: str) -> None:
        if not as_json:
            click.echo(text + " …", err=True)

    with ActionEngine(loaded.cms, on_running=show_running) as engine:
        _warn_problems(engine, loaded)
        outcome = engine.run_point(action_point, context)
    exit_statuses: dict[int, int | None] = {}
    for result in outcome.results:
        if result.process is not None and wait:
            exit_statuses[result.index] = _wait(result.process)
    if as_json:
        emit_json(
            {
                "profile": str(path),
                "point": action_point.value,
                "connection_type": context.connection_type.cli_name,
                "ok": outcome.ok,
                "results": [_result_json(r, exit_statuses.get(r.index)) for r in outcome.results],
            }
        )
    else:
        if not outcome.results:
            click.echo(f"{action_point.value}: no actions")
        for result in outcome.results:
            _echo_result(result, exit_statuses.get(result.index))
    ctx.exit(EXIT_OK if outcome.ok else EXIT_PROBLEMS)


def _wait(process: subprocess.Popen[bytes]) -> int | None:
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.kill()
        process.wait()
        raise


def _result_json(result: ActionResult, exit_status: int | None) -> dict[str, Any]:
    return {
        "index": result.index,
        "kind": result.kind.value if result.kind else None,
        "program": result.program,
        "description": result.description,
        "argv": list(result.argv),
        "command_line": result.command_line,
        "ran": result.ran,
        "ok": result.ok,
        "skip_reason": result.skip_reason,
        "return_value": result.return_value,
        "message": result.message,
        "duration": round(result.duration, 6),
        "pid": result.process.pid if result.process is not None else None,
        "exit_status": exit_status,
    }


def _echo_result(result: ActionResult, exit_status: int | None) -> None:
    kind = result.kind.value if result.kind else "?"
    if not result.ok:
        click.echo(click.style(f"  {result.index:>3} FAILED  ", fg="red") + (result.message or ""))
    elif not result.ran:
        click.echo(
            f"  {result.index:>3} skipped {kind:<10} {result.description}: {result.skip_reason}"
        )
    elif result.process is not None:
        status = f", exited {exit_status}" if exit_status is not None else ""
        click.echo(
            f"  {result.index:>3} started {kind:<10} {result.description}"
            f" (PID {result.process.pid}{status})"
        )
    else:
        click.echo(
            f"  {result.index:>3} ok      {kind:<10} {result.description}: returned"
            f" {result.return_value} in {result.duration * 1000:.1f} ms"
        )
