"""``opencm connect | cancel | disconnect | status | daemon``.

Exit codes (docs/session.md): 0 connected (or, in the foreground, connected and then
disconnected in order), 1 the connection failed or dropped, 2 bad input, 3 refused, 4 cancelled,
5 no daemon answers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from opencm.cli.output import emit_json
from opencm.errors import InputError
from opencm.session.protocol import Client, check, default_socket_path, default_state_dir

if TYPE_CHECKING:
    from opencm.links.api import Credentials

# The client side of these commands (talking to the daemon) imports only click, the socket
# protocol and, for credentials, the profile model: anyio, the session runner, the action engine
# and the dialers are imported where a session runs (``--foreground``, ``opencm daemon``). A
# ``opencm connect`` through the daemon then starts in about half the time (benchmarks/connect.py).

EXIT_CANCELLED = 4
#: Exit code per session outcome (``opencm.session.runner.Outcome`` values).
OUTCOME_EXIT: dict[str, int] = {
    "disconnected": 0,
    "closed": EXIT_CANCELLED,
    "cancelled": EXIT_CANCELLED,
    "failed": 1,
    "dropped": 1,
}

socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The daemon's socket (default: $OPENCM_SOCKET, /run/opencm/opencm.sock as root).",
)


def resolve_profile(name: str) -> Path:
    """A path to a .cmp/.cms/folder, or the short name of an installed profile."""
    path = Path(name)
    if path.exists():
        return path.resolve()
    if "/" not in name and not name.endswith((".cmp", ".cms")):
        from opencm.kit.install import find_installed_cmp
        from opencm.kit.roots import all_users_scope, user_scope

        scopes = [all_users_scope()] if os.geteuid() == 0 else [user_scope(), all_users_scope()]
        found = find_installed_cmp(name, scopes)
        if found is not None:
            return found
    raise InputError("no such profile file, folder or installed profile", path=name)


def gather_credentials(
    profile_path: Path, credentials_file: Path | None, interactive: bool, save: bool
) -> Credentials:
    from opencm.links.api import Credentials
    from opencm.profile.model import load_profile
    from opencm.session import credentials as creds

    profile = load_profile(profile_path)
    if credentials_file is not None:
        found = creds.read_credentials_file(credentials_file)
    else:
        saved = creds.load_saved(profile)
        if saved is not None:
            return saved
        if not creds.needs_credentials(profile):
            return Credentials()
        if not interactive:
            raise InputError(
                "the profile needs a user name and password: pass --credentials FILE",
                path=profile.cms_path,
                field="[opencm] Credentials",
            )
        found = Credentials(
            username=click.prompt("User name", err=True),
            password=click.prompt("Password", hide_input=True, err=True),
        )
    if save:
        where = creds.save(profile, found)
        click.echo(f"credentials saved in {where}", err=True)
    return found


@click.command("connect")
@click.argument("profile")
@click.option("--unattended", is_flag=True, help="Nobody at the screen: no prompts.")
@click.option("--foreground", is_flag=True, help="Run the session here, without the daemon.")
@click.option("--entry", help="The VPN server (or dial-up entry) to try first.")
@click.option(
    "--type", "kind", type=click.Choice(["direct", "dialup", "double"]), help="Connection type."
)
@click.option(
    "--credentials",
    "credentials_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A 0600 file with username=, password=, domain= lines.",
)
@click.option("--save-credentials", is_flag=True, help="Remember them, if the profile allows.")
@click.option("--logon", is_flag=True, help="Boot/logon run: only allow-listed actions run.")
@click.option("--log-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
@socket_option
def connect(
    profile: str,
    unattended: bool,
    foreground: bool,
    entry: str | None,
    kind: str | None,
    credentials_file: Path | None,
    save_credentials: bool,
    logon: bool,
    log_dir: Path | None,
    as_json: bool,
    socket_path: Path | None,
) -> int:
    """Connect PROFILE (a .cmp, .cms, profile folder or installed short name)."""
    path = resolve_profile(profile)
    # A logon/boot run has nobody at the screen by definition.
    interactive = not unattended and not logon and sys.stdin.isatty()
    credentials = gather_credentials(path, credentials_file, interactive, save_credentials)
    if foreground:
        import anyio

        return anyio.run(
            _foreground,
            path,
            kind,
            entry,
            credentials,
            interactive,
            logon,
            log_dir,
            as_json,
        )
    request: dict[str, Any] = {
        "op": "connect",
        "profile": str(path),
        "type": kind,
        "entry": entry,
        "unattended": not interactive,
        "logon": logon,
        "credentials": {
            "username": credentials.username,
            "password": credentials.password,
            "domain": credentials.domain,
        },
        "wait": True,
    }
    with Client(socket_path, timeout=None) as client:
        client.send(request)
        for answer in client.lines():
            if "event" in answer:
                click.echo(f"opencm: {answer['state']}", err=True)
                continue
            status = check(answer)["session"]
            break
    if as_json:
        emit_json(status)
    else:
        _print_final(status)
    if status["state"] == "connected":
        return 0
    return OUTCOME_EXIT.get(str(status.get("outcome")), 1)


def _print_final(status: dict[str, Any]) -> None:
    if status["state"] == "connected":
        click.echo(
            f"{status['service']}: connected (session {status['session']}"
            + (f", address {status['client_ip']}" if status.get("client_ip") else "")
            + ")",
            err=True,
        )
    elif status.get("error"):
        error = status["error"]
        click.echo(
            f"{status['service']}: {status['state']}: {error['message']} "
            f"(error {error['code']} from {error['source']})",
            err=True,
        )
    else:
        click.echo(f"{status['service']}: {status['state']}", err=True)


async def _foreground(
    path: Path,
    kind: str | None,
    entry: str | None,
    credentials: Credentials,
    interactive: bool,
    logon: bool,
    log_dir: Path | None,
    as_json: bool,
) -> int:
    import signal

    import anyio

    from opencm.actions.api import ConnectionType
    from opencm.session.factory import open_session
    from opencm.session.prompt import TtyPrompt

    session, engine = open_session(
        path,
        connection_type=ConnectionType.from_name(kind) if kind else None,
        entry=entry,
        credentials=credentials,
        interactive=interactive,
        prompt=TtyPrompt() if interactive else None,
        log_dir=log_dir,
        logon=logon,
    )

    def show(row: Any) -> None:
        click.echo(f"opencm: {row.target}", err=True)
        if str(row.target) == "connected":
            _print_final(session.status())

    session.machine.subscribe(show)
    try:
        async with anyio.create_task_group() as group:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        session.disconnect("user-disconnect")

            group.start_soon(on_signals)
            outcome = await session.run()
            group.cancel_scope.cancel()
    finally:
        engine.close()
    status = {**session.status(), "outcome": str(outcome)}
    if as_json:
        emit_json(status)
    else:
        _print_final(status)
    return OUTCOME_EXIT[outcome]


def _target(profile: str | None, session_id: str | None) -> dict[str, Any]:
    target: dict[str, Any] = {}
    if session_id:
        target["session"] = session_id
    elif profile:
        path = Path(profile)
        target["profile"] = str(path.resolve()) if path.exists() else profile
    return target


@click.command("cancel")
@click.argument("profile", required=False)
@click.option("--session", "session_id", help="The session id (from opencm status).")
@socket_option
def cancel(profile: str | None, session_id: str | None, socket_path: Path | None) -> int:
    """Cancel a connection attempt in progress (its on-cancel actions run)."""
    with Client(socket_path, timeout=None) as client:
        answer = client.request({"op": "cancel", **_target(profile, session_id)})
    _print_final(answer["session"])
    return 0


@click.command("disconnect")
@click.argument("profile", required=False)
@click.option("--session", "session_id", help="The session id (from opencm status).")
@socket_option
def disconnect(profile: str | None, session_id: str | None, socket_path: Path | None) -> int:
    """Disconnect (disconnect actions run first); PROFILE may be omitted if only one is up."""
    with Client(socket_path, timeout=None) as client:
        answer = client.request({"op": "disconnect", **_target(profile, session_id)})
    _print_final(answer["session"])
    return 0


def _table(sessions: list[dict[str, Any]]) -> None:
    if not sessions:
        click.echo("no sessions")
        return
    for s in sessions:
        prompt = "  (asking: stay online?)" if s.get("prompt") else ""
        click.echo(
            f"{s['service']:<24} {s['state']:<13} {s['connection_type']:<7} "
            f"{s.get('client_ip') or '-':<16} {s['session']}{prompt}"
        )


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help='JSON: {"sessions": [...]}.')
@click.option(
    "--watch", is_flag=True, help="Keep printing on every change (JSON lines with --json)."
)
@socket_option
def status(as_json: bool, watch: bool, socket_path: Path | None) -> int:
    """Show the sessions you may see (root: all)."""
    if not watch:
        with Client(socket_path) as client:
            sessions = client.request({"op": "status"})["sessions"]
        if as_json:
            emit_json({"sessions": sessions})
        else:
            _table(sessions)
        return 0
    with Client(socket_path, timeout=None) as client:
        client.send({"op": "watch"})
        try:
            for answer in client.lines():
                if as_json:
                    click.echo(json.dumps({"sessions": answer.get("sessions", [])}))
                else:
                    _table(answer.get("sessions", []))
                    click.echo("")
        except KeyboardInterrupt:
            return 0
    return 0


@click.command("daemon")
@socket_option
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Journal and lock (default: /var/lib/opencm as root).",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Session logs (default as root: <state-dir>/logs).",
)
@click.option(
    "--profile-root",
    "profile_roots",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Where profiles users may connect through a root daemon live (repeatable; "
    "default: the all-users folder, /etc/opencm/Cm).",
)
def daemon(
    socket_path: Path | None,
    state_dir: Path | None,
    log_dir: Path | None,
    profile_roots: tuple[Path, ...],
) -> int:
    """Run the daemon that owns sessions and links (systemd: opencm.service)."""
    import anyio

    from opencm.session.daemon import run_daemon

    anyio.run(
        run_daemon,
        socket_path or default_socket_path(),
        state_dir or default_state_dir(),
        log_dir,
        [root.absolute() for root in profile_roots],
    )
    return 0


__all__ = ["cancel", "connect", "daemon", "disconnect", "status"]
