"""``opencm dialers list`` and ``opencm dialers check``: which dialers exist and may be loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from opencm.cli.output import emit_json
from opencm.errors import OpencmError
from opencm.links import registry

_ALLOW_LIST_OPTION = click.option(
    "--allow-list",
    type=click.Path(path_type=Path, dir_okay=False),
    default=registry.DEFAULT_ALLOW_LIST,
    show_default=True,
    help="The administrator's list of allowed plug-in dialers.",
)


@click.group()
def dialers() -> None:
    """Custom dialers: the built-in links and allowed plug-ins."""


@dialers.command("list")
@_ALLOW_LIST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_cmd(allow_list: Path, as_json: bool) -> None:
    """List every registered dialer and whether opencm may load it."""
    allow_error: str | None = None
    try:
        allow = registry.read_allow_list(allow_list)
    except OpencmError as error:
        allow, allow_error = {}, str(error)
    rows: list[dict[str, Any]] = []
    for info in registry.discover():
        reason: str | None = None
        if not info.builtin:
            try:
                if allow_error is not None:
                    raise OpencmError(allow_error)
                registry.allowed(info, allow, allow_list)
            except OpencmError as error:
                reason = str(error)
        rows.append(
            {
                "name": info.name,
                "target": info.target,
                "distribution": info.distribution,
                "builtin": info.builtin,
                "allowed": reason is None,
                "refused_because": reason,
            }
        )
    if as_json:
        emit_json({"allow_list": str(allow_list), "dialers": rows})
        return
    for row in rows:
        kind = "built-in" if row["builtin"] else ("allowed" if row["allowed"] else "REFUSED")
        click.echo(f"{row['name']:<16} {kind:<9} {row['target']}")
        if row["refused_because"]:
            click.echo(f"{'':<16} {row['refused_because']}")


@dialers.command("check")
@click.argument("name")
@_ALLOW_LIST_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def check_cmd(name: str, allow_list: Path, as_json: bool) -> None:
    """Load dialer NAME as a connection would: allow list, import, the five entry points.

    Exit status 0 when it loads, 2 when it is unknown, broken or incomplete, 3 when refused.
    """
    dialer = registry.load_dialer(name, allow_list=allow_list)
    if as_json:
        emit_json({"name": name, "loaded": True, "class": type(dialer).__qualname__})
    else:
        click.echo(f"{name}: loads, all five entry points present ({type(dialer).__qualname__})")
