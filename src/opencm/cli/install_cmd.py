"""``opencm install``, ``opencm uninstall`` and ``opencm list``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from opencm.cli.output import emit_json, warn
from opencm.cli.params import FILE, json_option
from opencm.errors import OpencmError, RefusedError
from opencm.kit.install import install_package, list_installed, uninstall
from opencm.kit.roots import Scope, all_users_scope, scope_for, user_scope
from opencm.signing import load_public_key

if TYPE_CHECKING:
    from opencm.session.entries import Notified

_scope_options = [
    click.option(
        "--user",
        "all_users",
        flag_value=False,
        default=None,
        help="This user only ($XDG_DATA_HOME/opencm/Cm). The default unless root.",
    ),
    click.option(
        "--all-users",
        "all_users",
        flag_value=True,
        help="Every user (/etc/opencm/Cm); needs root. The default for root.",
    ),
]


def scope_options(function: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_scope_options):
        function = option(function)
    return function


@click.command("install")
@click.argument("package", type=click.Path(path_type=Path))
@scope_options
@click.option(
    "--trust",
    "trust",
    multiple=True,
    type=FILE,
    help="Public key (minisign .pub) to check the package with, instead of the trusted-keys "
    "folders.",
)
@click.option("--force", is_flag=True, help="Install an older version over a newer one.")
@json_option("Print the result as JSON.")
def install(
    package: Path, all_users: bool | None, trust: tuple[Path, ...], force: bool, as_json: bool
) -> None:
    """Check PACKAGE's signature and install the service profile inside."""
    scope = scope_for(all_users)
    keys = [load_public_key(path) for path in trust] if trust else None
    try:
        result = install_package(package, scope, trusted_keys=keys, force=force)
    except PermissionError as error:
        raise RefusedError(
            f"no permission to write {error.filename} (installing for all users needs root)"
        ) from error
    record = result.record
    cmp = record.cmp_path(scope)
    if as_json:
        emit_json(
            {
                "short_name": record.short_name,
                "service_name": record.service_name,
                "version": record.version,
                "previous_version": result.previous_version,
                "scope": scope.name,
                "cmp": str(cmp),
                "files": record.files,
                "desktop_entry": record.desktop_entry,
                "kept": [{"path": p, "reason": r} for p, r in result.kept],
            }
        )
        return
    verb = "Updated" if result.previous_version is not None else "Installed"
    click.echo(f"{verb} {record.service_name} ({record.short_name}) version {record.version}")
    click.echo(f"  for {scope.name}: {cmp}")
    for path, reason in result.kept:
        click.echo(f"  kept {path}: {reason}")
    click.echo(f"Connect with: opencm connect {cmp}")


@click.command("uninstall")
@click.argument("short_name")
@scope_options
@json_option("Print the result as JSON.")
def uninstall_cmd(short_name: str, all_users: bool | None, as_json: bool) -> None:
    """Remove the profile SHORT_NAME: exactly the files its install added."""
    scope = scope_for(all_users)
    notified = _notify_dialers(short_name, scope)
    try:
        result = uninstall(short_name, scope)
    except PermissionError as error:
        raise RefusedError(f"no permission to remove {error.filename}") from error
    if as_json:
        emit_json(
            {
                "short_name": result.record.short_name,
                "scope": scope.name,
                "removed": result.removed,
                "left": result.left,
                "dialers_notified": [
                    {"entry": n.entry, "dialer": n.dialer, "problem": n.problem} for n in notified
                ],
            }
        )
        return
    click.echo(f"Removed {result.record.service_name} ({result.record.short_name})")
    for folder in result.left:
        warn(f"{scope.profiles_dir / folder} holds files opencm did not install; left in place")


def _notify_dialers(short_name: str, scope: Scope) -> list[Notified]:
    """ "Custom Dialers": each entry's dialer hears that the entry is deleted
    (RasCustomDeleteEntryNotify) before the profile's files go; problems are warnings."""
    from opencm.kit.install import find_installed_cmp
    from opencm.profile.model import load_profile
    from opencm.session.entries import notify_entries_deleted

    cmp = find_installed_cmp(short_name, [scope])
    if cmp is None:
        return []  # uninstall says what is wrong
    try:
        notified = notify_entries_deleted(load_profile(cmp))
    except OpencmError as error:  # a profile too broken to read: nothing to tell
        warn(f"the dialers were not told about the deleted entries: {error}")
        return []
    for item in notified:
        if item.problem:
            warn(f"dialer {item.dialer} was not told that {item.entry} is deleted: {item.problem}")
    return notified


@click.command("list")
@scope_options
@json_option("Print the profiles as JSON.")
def list_cmd(all_users: bool | None, as_json: bool) -> None:
    """List installed service profiles (this user's and all users')."""
    both = [user_scope(), all_users_scope()]
    scopes = both if all_users is None else [scope_for(all_users)]
    found = list_installed(scopes)
    if as_json:
        emit_json(
            [
                {
                    "short_name": record.short_name,
                    "service_name": record.service_name,
                    "version": record.version,
                    "scope": scope.name,
                    "cmp": str(record.cmp_path(scope)),
                    "installed_at": record.installed_at,
                }
                for scope, record in found
            ]
        )
        return
    if not found:
        click.echo("No profiles installed.")
        return
    for scope, record in found:
        click.echo(
            f"{record.short_name:<8}  v{record.version:<4} {scope.name:<9}  "
            f"{record.service_name}  ({record.cmp_path(scope)})"
        )
