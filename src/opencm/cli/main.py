"""Entry point of the ``opencm`` command and its error handling.

Each part of the engine contributes one click group; this module only assembles them and turns
:class:`~opencm.errors.OpencmError` into a one-line message and its exit code. Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from opencm import __version__
from opencm.errors import EXIT_BAD_INPUT, DiskFullError, OpencmError, is_disk_full

#: Every command: its name and where it lives ("module:attribute" under opencm.cli). Modules
#: are imported only when their command runs (or help lists it), so ``opencm connect`` does not
#: pay for importing the phone-book, PBS and kit code (``tests/cli/test_main.py`` checks what a
#: command imports).
COMMANDS: dict[str, str] = {
    "profile": "profile_cmd:profile",
    "actions": "actions_cmd:actions",
    "connect": "session_cmd:connect",
    "cancel": "session_cmd:cancel",
    "disconnect": "session_cmd:disconnect",
    "status": "session_cmd:status",
    "answer": "session_cmd:answer",
    "dismiss": "session_cmd:dismiss",
    "daemon": "session_cmd:daemon",
    "pops": "pops_cmd:pops",
    "kit": "kit_cmd:kit",
    "install": "install_cmd:install",
    "import": "import_cmd:import_cmd",
    "uninstall": "install_cmd:uninstall_cmd",
    "list": "install_cmd:list_cmd",
    "logon": "logon_cmd:logon",
    "dialers": "dialers_cmd:dialers",
    "phonebook": "phonebook_cmd:phonebook",
    "pbs": "pbs_cmd:pbs",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module_name, attribute = COMMANDS[cmd_name].split(":")
            module = importlib.import_module(f"opencm.cli.{module_name}")
            command = getattr(module, attribute)
            if not isinstance(command, click.Command):  # pragma: no cover - a wiring bug
                raise TypeError(f"opencm.cli.{COMMANDS[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="opencm")
def cli() -> None:
    """opencm: an open Connection Manager for Linux."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes end with a message and an exit code, never a traceback."""
    # Profiles keep bytes their code page does not map, and UTF-16 files may hold a lone
    # surrogate, so that they are written back byte for byte; printing such text must not fail
    # on a UTF-8 pipe. It is shown as a \udXXX escape (valid inside JSON strings too).
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
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
        # A usage mistake (unknown option, missing argument): click's message, exit 2.
        error.show()
        sys.exit(error.exit_code)
    except Exception as error:  # after click's own: those are Exceptions too
        # A full disk is the machine's state, not a bug: whatever write met it (SQLite, a
        # cabinet, a copy) left the old data in place, so say where and stop.
        if not is_disk_full(error):
            raise
        full = DiskFullError(getattr(error, "filename", None) or Path.cwd())
        click.echo(f"opencm: error: {full}", err=True)
        sys.exit(full.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
