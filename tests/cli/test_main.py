"""The command table: every command resolves, help lists them, and commands load lazily."""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from opencm.cli.main import COMMANDS, cli


def test_every_command_resolves_and_help_lists_it() -> None:
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command), name
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1]
    for name in COMMANDS:
        assert f"\n  {name} " in listed, name


def test_a_command_imports_only_its_own_module() -> None:
    probe = (
        "import json, sys\n"
        "from opencm.cli.main import main\n"
        "try:\n"
        "    main(['connect', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('opencm.cli.'))),"
        " file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert "opencm.cli.session_cmd" in loaded
    for heavy in ("opencm.cli.phonebook_cmd", "opencm.cli.pbs_cmd", "opencm.cli.kit_cmd"):
        assert heavy not in loaded


def test_profile_check_still_reports_action_problems_when_loaded_alone(tmp_path: object) -> None:
    from pathlib import Path

    from tests.actions.conftest import make_profile

    root = Path(str(tmp_path))
    make_profile(root, {"Connect Actions": ["0=true", "2=true"]})
    probe = (
        "import sys\nfrom opencm.cli.main import main\n"
        f"main(['profile', 'check', {str(root / 'CONTOSO.cmp')!r}])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "gap" in (done.stdout + done.stderr)


def test_connect_through_the_daemon_imports_no_session_machinery(tmp_path: object) -> None:
    # The client side of `opencm connect` pays only for click, the socket protocol and the
    # profile model (benchmarks/connect.py times it): the runner, anyio, the action engine and
    # the dialers belong to the daemon and --foreground.
    from pathlib import Path

    from tests.actions.conftest import make_profile

    root = Path(str(tmp_path))
    make_profile(root, {})
    probe = (
        "import json, sys\nfrom opencm.cli.main import main\n"
        "try:\n"
        f"    main(['connect', {str(root / 'CONTOSO.cmp')!r}, '--unattended',"
        f" '--socket', {str(root / 'absent.sock')!r}])\n"
        "except SystemExit as done:\n"
        "    print(json.dumps([done.code, sorted(sys.modules)]), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    code, loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert code == 5  # no daemon answers: the client got as far as the socket
    assert "no opencm daemon answers" in done.stderr
    for heavy in (
        "anyio",
        "asyncio",
        "opencm.session.runner",
        "opencm.session.daemon",
        "opencm.actions.engine",
        "opencm.links.registry",
        "tempfile",
        "subprocess",
    ):
        assert heavy not in loaded, heavy


def test_every_session_outcome_has_an_exit_code() -> None:
    from opencm.cli.client import OUTCOME_EXIT
    from opencm.session.runner import Outcome

    assert set(OUTCOME_EXIT) == {str(outcome) for outcome in Outcome}
    assert OUTCOME_EXIT[Outcome.DISCONNECTED] == 0


def test_a_usage_mistake_is_a_message_and_exit_2_not_a_traceback() -> None:
    """An unknown option or a missing argument, typed at the real `opencm` entry point."""
    for argv in (["disconnect", "CLIENT", "--json"], ["kit", "build"], ["nosuchcommand"]):
        done = subprocess.run(
            [sys.executable, "-m", "opencm", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert "Usage: opencm" in done.stderr, done.stderr
