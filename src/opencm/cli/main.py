"""Entry point of the ``opencm`` command and its error handling.

Each part of the engine contributes one click group; this module only assembles them and turns
:class:`~opencm.errors.OpencmError` into a one-line message and its exit code. Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click

from opencm import __version__
from opencm.errors import EXIT_BAD_INPUT, OpencmError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="opencm")
def cli() -> None:
    """opencm: an open Connection Manager for Linux."""


def _register() -> None:
    # One line per part; each module defines a click group or command named after it.
    from opencm.cli import (
        actions_cmd,
        dialers_cmd,
        install_cmd,
        kit_cmd,
        logon_cmd,
        pbs_cmd,
        phonebook_cmd,
        pops_cmd,
        profile_cmd,
        session_cmd,
    )

    cli.add_command(profile_cmd.profile)
    cli.add_command(actions_cmd.actions)
    for command in (
        session_cmd.connect,
        session_cmd.cancel,
        session_cmd.disconnect,
        session_cmd.status,
        session_cmd.daemon,
    ):
        cli.add_command(command)
    cli.add_command(pops_cmd.pops)
    cli.add_command(kit_cmd.kit)
    cli.add_command(install_cmd.install)
    cli.add_command(install_cmd.uninstall_cmd)
    cli.add_command(install_cmd.list_cmd)
    cli.add_command(logon_cmd.logon)
    cli.add_command(dialers_cmd.dialers)
    cli.add_command(phonebook_cmd.phonebook)
    cli.add_command(pbs_cmd.pbs)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes end with a message and an exit code, never a traceback."""
    try:
        # With standalone_mode off, click returns ctx.exit()'s code instead of exiting.
        code = cli.main(args=argv, prog_name="opencm", standalone_mode=False)
    except OpencmError as error:
        click.echo(f"opencm: error: {error}", err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("opencm: aborted", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
