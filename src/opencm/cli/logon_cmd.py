"""``opencm logon allow|deny|list``: the logon/boot custom-action allow list (root only)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from opencm.actions.logon import allow_list_path, edit_allow_list, read_allow_list
from opencm.cli.output import emit_json
from opencm.cli.params import json_option
from opencm.errors import RefusedError


def _writable_list() -> Path:
    path = allow_list_path()
    # The real list must be written by root; a moved list (OPENCM_LOGON_ALLOW, for tests and
    # staging) is only ever trusted by the engine if it is root-owned anyway.
    if os.geteuid() != 0 and "OPENCM_LOGON_ALLOW" not in os.environ:
        raise RefusedError(f"only root can change the logon allow list ({path})")
    return path


@click.group("logon")
def logon() -> None:
    """Which custom actions may run when a profile connects at logon or boot.

    Off by default: such actions run with system rights, so each program must be allowed
    here by an administrator ("WinLogon Actions" in "How Connection Manager Works").
    """


@logon.command("allow")
@click.argument("profile")
@click.argument("program")
@click.option(
    "--location",
    type=click.IntRange(0, 1),
    default=1,
    show_default=True,
    help="0: opencm's system action folder (/usr/lib/opencm/actions); 1: the profile folder.",
)
def allow(profile: str, program: str, location: int) -> None:
    """Let PROGRAM run at logon/boot for PROFILE."""
    path = _writable_list()
    edit_allow_list(path, profile, program, location, allow=True)
    click.echo(f"Allowed {program} (location {location}) for {profile} in {path}")


@logon.command("deny")
@click.argument("profile")
@click.argument("program")
@click.option("--location", type=click.IntRange(0, 1), default=None)
def deny(profile: str, program: str, location: int | None) -> None:
    """Stop PROGRAM from running at logon/boot for PROFILE."""
    path = _writable_list()
    edit_allow_list(path, profile, program, location, allow=False)
    click.echo(f"Denied {program} for {profile} in {path}")


@logon.command("list")
@json_option("Print the entries as JSON.")
def list_entries(as_json: bool) -> None:
    """Show the allow list (refused if its ownership or mode cannot be trusted)."""
    path = allow_list_path()
    owner = 0 if "OPENCM_LOGON_ALLOW" not in os.environ else os.geteuid()
    entries = read_allow_list(path, owner_uid=owner)
    if as_json:
        emit_json(
            [{"profile": e.profile, "program": e.program, "location": e.location} for e in entries]
        )
        return
    if not entries:
        click.echo(f"No logon actions allowed ({path}).")
    for entry in entries:
        click.echo(f"{entry.profile}  {entry.program}  {entry.location}")
