"""``opencm dialers list`` and ``opencm dialers check``: which dialers exist and may be loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from opencm.cli.output import emit_json
from opencm.cli.params import JSON
from opencm.links import registry
from opencm.links.api import ProfileKeys

_ALLOW_LIST_OPTION = click.option(
    "--allow-list",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The administrator's list of allowed plug-in dialers "
    "(default: /etc/opencm/dialers.allow, $OPENCM_SYSTEM_CONFIG_DIR/dialers.allow).",
)


@click.group()
def dialers() -> None:
    """Custom dialers: the built-in links and allowed plug-ins."""


@dialers.command("list")
@_ALLOW_LIST_OPTION
@JSON
def list_cmd(allow_list: Path | None, as_json: bool) -> None:
    """List every registered dialer and whether opencm may load it."""
    allow_list = allow_list or registry.default_allow_list()
    rows: list[dict[str, Any]] = [
        {
            "name": status.info.name,
            "target": status.info.target,
            "distribution": status.info.distribution,
            "builtin": status.info.builtin,
            "allowed": status.allowed,
            "refused_because": status.refused_because,
            "profile_keys": _keys_json(status.profile_keys),
        }
        for status in registry.survey(allow_list=allow_list)
    ]
    if as_json:
        emit_json({"allow_list": str(allow_list), "dialers": rows})
        return
    for row in rows:
        kind = "built-in" if row["builtin"] else ("allowed" if row["allowed"] else "REFUSED")
        click.echo(f"{row['name']:<16} {kind:<9} {row['target']}")
        if row["profile_keys"] is not None:
            click.echo(f"{'':<16} {_keys_text(row['profile_keys'])}")
        if row["refused_because"]:
            click.echo(f"{'':<16} {row['refused_because']}")


def _keys_json(keys: ProfileKeys | None) -> dict[str, Any] | None:
    if keys is None:
        return None
    return {
        "stage": str(keys.stage),
        "required": [f"{key}&" for key in keys.required],
        "optional": [f"{key}&" for key in keys.optional],
        "netns": keys.netns,
    }


def _keys_text(keys: dict[str, Any]) -> str:
    if keys["stage"] != "tunnel":
        return f"{keys['stage']} link (not named by Link&)"
    reads = [f"{key} (required)" for key in keys["required"]] + keys["optional"]
    return "tunnel link; reads " + (", ".join(reads) or "no per-server keys")


@dialers.command("check")
@click.argument("name")
@_ALLOW_LIST_OPTION
@JSON
def check_cmd(name: str, allow_list: Path | None, as_json: bool) -> None:
    """Load dialer NAME as a connection would: allow list, import, the five entry points.

    Exit status 0 when it loads, 2 when it is unknown, broken or incomplete, 3 when refused.
    """
    dialer = registry.load_dialer(name, allow_list=allow_list)
    if as_json:
        emit_json({"name": name, "loaded": True, "class": type(dialer).__qualname__})
    else:
        click.echo(f"{name}: loads, all five entry points present ({type(dialer).__qualname__})")
