"""``opencm profile``: check, show, read and edit service-profile files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from opencm.actions.api import ActionPoint
from opencm.actions.check import check_profile
from opencm.cli.output import emit_json
from opencm.errors import EXIT_OK, EXIT_PROBLEMS, InputError
from opencm.profile.ini import IniFile
from opencm.profile.model import ServiceProfile, load_profile

PATH = click.Path(path_type=Path)


@click.group()
def profile() -> None:
    """Check, show, read and edit service profiles (.cmp, .cms, .inf)."""


@profile.command()
@click.argument("path", type=PATH)
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.pass_context
def check(ctx: click.Context, path: Path, as_json: bool) -> None:
    """Report what in a profile will not behave as its author expects.

    PATH is a .cmp, a .cms or a profile folder. Exit status: 0 clean, 1 problems found,
    2 the profile cannot be read.
    """
    loaded = load_profile(path)
    problems = check_profile(loaded)
    if as_json:
        emit_json({"profile": str(path), "problems": [p.as_json() for p in problems]})
    else:
        for problem in problems:
            click.echo(str(problem))
        click.echo(f"{len(problems)} problem(s) in {loaded.service_name}", err=True)
    ctx.exit(EXIT_PROBLEMS if problems else EXIT_OK)


def _ini_summary(ini: IniFile | None) -> dict[str, Any] | None:
    if ini is None:
        return None
    return {"path": str(ini.path), "encoding": ini.encoding.label, "lines": len(ini.lines)}


def describe(loaded: ServiceProfile) -> dict[str, Any]:
    """What ``profile show`` prints: the files, the service, and the action counts per point."""
    return {
        "service_name": loaded.service_name,
        "short_name": loaded.short_name,
        "profile_dir": str(loaded.profile_dir),
        "service_dir": str(loaded.service_dir),
        "files": {
            "cmp": _ini_summary(loaded.cmp),
            "cms": _ini_summary(loaded.cms),
            "inf": _ini_summary(loaded.inf),
        },
        "connection_types": [t.cli_name for t in loaded.supported_types()],
        "default_connection_type": loaded.default_connection_type().cli_name,
        "macros": loaded.base_macros(),
        "actions": {
            point.value: sum(1 for e in loaded.cms.entries(point.section) if e.key.isdigit())
            for point in ActionPoint
        },
        "sections": [
            {
                "name": name,
                "entries": [
                    {"key": e.key, "value": e.value, "line": e.line}
                    for e in loaded.cms.entries(name)
                ],
            }
            for name in dict.fromkeys(loaded.cms.sections())
        ],
    }


@profile.command()
@click.argument("path", type=PATH)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def show(path: Path, as_json: bool) -> None:
    """Show a profile's files, service, connection types and actions."""
    info = describe(load_profile(path))
    if as_json:
        emit_json(info)
        return
    click.echo(f"{info['service_name']} ({info['short_name']})")
    for kind, summary in info["files"].items():
        if summary:
            click.echo(f"  {kind:4} {summary['path']}  [{summary['encoding']}]")
    click.echo(f"  connection types: {', '.join(info['connection_types'])}")
    for point, count in info["actions"].items():
        if count:
            click.echo(f"  {point:13} {count} action(s)")


def _ini_for(path: Path) -> IniFile:
    """A named INI file as it is, or a profile folder's .cms."""
    if path.is_dir():
        return load_profile(path).cms
    if not path.exists():
        raise InputError("no such file", path=path)
    return IniFile.load(path)


@profile.command()
@click.argument("path", type=PATH)
@click.argument("section")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def get(ctx: click.Context, path: Path, section: str, key: str, as_json: bool) -> None:
    """Print KEY of SECTION as Windows would read it (exit 1 when absent)."""
    ini = _ini_for(path)
    value = ini.get(section, key)
    if as_json:
        emit_json(
            {"section": section, "key": key, "value": value, "line": ini.line_of(section, key)}
        )
    elif value is not None:
        click.echo(value)
    else:
        click.echo(f"{ini.path}: [{section}] {key} is not set", err=True)
    ctx.exit(EXIT_OK if value is not None else EXIT_PROBLEMS)


@profile.command(name="set")
@click.argument("path", type=PATH)
@click.argument("section")
@click.argument("key")
@click.argument("value")
def set_(path: Path, section: str, key: str, value: str) -> None:
    """Set KEY of SECTION to VALUE, changing only that line (atomic write)."""
    ini = _ini_for(path)
    ini.set(section, key, value)
    ini.save()
