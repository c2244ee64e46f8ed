"""``opencm profile``: check, show, read and edit service-profile files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from opencm.actions.api import ActionPoint
from opencm.actions.check import check_profile
from opencm.cli.output import emit_json
from opencm.cli.params import JSON, PATH, json_option
from opencm.errors import EXIT_OK, EXIT_PROBLEMS, InputError
from opencm.profile.ini import IniFile
from opencm.profile.model import ServiceProfile, load_profile


@click.group()
def profile() -> None:
    """Check, show, read and edit service profiles (.cmp, .cms, .inf)."""


@profile.command()
@click.argument("path", type=PATH)
@json_option("Print the problems as JSON.")
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
@json_option("Print everything as JSON.")
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


def _chain(path: Path) -> list[IniFile]:
    """The files a key of PATH may live in: the file itself, and for a ``.cmp`` its ``.cms``
    (a ``.cmp`` "contains user-related information", the ``.cms`` the rest: "How Connection
    Manager Works")."""
    first = _ini_for(path)
    if path.is_file() and path.suffix.casefold() == ".cmp":
        return [first, load_profile(path).cms]
    return [first]


def _is_inf(ini: IniFile) -> bool:
    return ini.path is not None and Path(ini.path).suffix.casefold() == ".inf"


def _read(ini: IniFile, section: str, key: str) -> str | None:
    """The value as Windows reads it; an ``.inf`` value as written, quotes and all (the quotes
    are part of an INF string, and a get/set round trip must keep them)."""
    if not _is_inf(ini):
        return ini.get(section, key)
    line = ini.line_of(section, key)
    if line is None:
        return None
    return next(entry.raw_value for entry in ini.entries(section) if entry.line == line)


@profile.command()
@click.argument("path", type=PATH)
@click.argument("section")
@click.argument("key")
@JSON
@click.pass_context
def get(ctx: click.Context, path: Path, section: str, key: str, as_json: bool) -> None:
    """Print KEY of SECTION as Windows would read it (exit 1 when absent).

    On a .cmp, a key the .cmp does not have is read from its .cms; the file is named on stderr
    (and as "file" with --json). An .inf value is printed with its quotes.
    """
    files = _chain(path)
    ini, value = files[0], None
    for candidate in files:
        value = _read(candidate, section, key)
        if value is not None:
            ini = candidate
            break
    if as_json:
        emit_json(
            {
                "section": section,
                "key": key,
                "value": value,
                "line": ini.line_of(section, key),
                "file": str(ini.path) if value is not None else None,
            }
        )
    elif value is not None:
        click.echo(value)
        if ini is not files[0]:
            click.echo(f"(from {ini.path})", err=True)
    else:
        where = " or ".join(str(f.path) for f in files)
        click.echo(f"{where}: [{section}] {key} is not set", err=True)
    ctx.exit(EXIT_OK if value is not None else EXIT_PROBLEMS)


@profile.command(name="set")
@click.argument("path", type=PATH)
@click.argument("section")
@click.argument("key")
@click.argument("value")
def set_(path: Path, section: str, key: str, value: str) -> None:
    """Set KEY of SECTION to VALUE, changing only that line (atomic write).

    On a .cmp, a key that lives in its .cms (and not in the .cmp) is set there; a new key goes
    into the file named. The file written is named on stderr.
    """
    files = _chain(path)
    ini = next((f for f in files if f.line_of(section, key) is not None), files[0])
    ini.set(section, key, value)
    ini.save()
    click.echo(f"set [{section}] {key} in {ini.path}", err=True)
