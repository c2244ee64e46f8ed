"""``opencm connect | cancel | disconnect | status | daemon``.

Exit codes (docs/session.md): 0 connected (or, in the foreground, connected and then
disconnected in order), 1 the connection failed or dropped, 2 bad input, 3 refused, 4 cancelled,
5 no daemon answers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from opencm.cli.client import (
    OUTCOME_EXIT,
    credentials_json,
    emit_json,
    final_line,
    finish,
    follow_request,
    show_status,
    status_lines,
    wants_inet,
)
from opencm.cli.params import json_option
from opencm.session.locate import default_scopes, resolve_profile
from opencm.session.protocol import (
    KEEP_ENDED,
    Client,
    default_socket_path,
    default_state_dir,
)

if TYPE_CHECKING:
    from opencm.links.api import Credentials

# The client side of these commands (talking to the daemon) imports only click, the socket
# protocol and, for credentials, the profile model: anyio, the session runner, the action engine
# and the dialers are imported where a session runs (``--foreground``, ``opencm daemon``). A
# ``opencm connect`` through the daemon then starts in about half the time (benchmarks/connect.py).

_F = TypeVar("_F", bound=Callable[..., Any])

socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The daemon's socket (default: $OPENCM_SOCKET, /run/opencm/opencm.sock as root).",
)


def gather_credentials(
    profile_path: Path,
    credentials_file: Path | None,
    interactive: bool,
    save: bool,
    kind: str = "logon",
) -> Credentials:
    """The logon (``kind="logon"``) or Internet (``"inet"``) credentials of a connection:
    a file, the saved store, or a prompt whose default user name is the ``.cmp``'s (saved
    back there once typed)."""
    from opencm.links.api import Credentials
    from opencm.profile.model import load_profile
    from opencm.session.credentials import INET, credentials_for

    what = "Internet " if kind == INET else ""

    def ask(default: Credentials, _kind: str) -> Credentials:
        return Credentials(
            username=click.prompt(f"{what}User name", default=default.username, err=True),
            password=click.prompt(f"{what}Password", hide_input=True, err=True),
            domain=default.domain,
        )

    gathered = credentials_for(
        load_profile(profile_path),
        kind=kind,
        credentials_file=credentials_file,
        ask=ask if interactive else None,
        remember=save,
    )
    if gathered.remembered_in is not None:
        click.echo(f"{what}user name remembered in {gathered.remembered_in}", err=True)
    if gathered.saved_in is not None:
        click.echo(f"{what}credentials saved in {gathered.saved_in}", err=True)
    return gathered.credentials


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
@click.option(
    "--inet-credentials",
    "inet_credentials_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Double dial: a 0600 file with the Internet (dial-up) username= and password=.",
)
@click.option("--save-credentials", is_flag=True, help="Remember them, if the profile allows.")
@click.option("--logon", is_flag=True, help="Boot/logon run: only allow-listed actions run.")
@click.option(
    "--user",
    "own_installs",
    is_flag=True,
    help="Look a short name up in your own installs only (as root: root's per-user installs).",
)
@click.option("--log-dir", type=click.Path(path_type=Path, file_okay=False), default=None)
@json_option("Print the final status as JSON.")
@socket_option
def connect(
    profile: str,
    unattended: bool,
    foreground: bool,
    entry: str | None,
    kind: str | None,
    credentials_file: Path | None,
    inet_credentials_file: Path | None,
    save_credentials: bool,
    logon: bool,
    own_installs: bool,
    log_dir: Path | None,
    as_json: bool,
    socket_path: Path | None,
) -> int:
    """Connect PROFILE (a .cmp, .cms, profile folder or installed short name)."""
    path = resolve_profile(profile, default_scopes(user=True) if own_installs else None)
    # A logon/boot run has nobody at the screen by definition.
    interactive = not unattended and not logon and sys.stdin.isatty()
    inet_wanted = inet_credentials_file is not None or wants_inet(path, kind)

    def inet() -> Credentials | None:
        if not inet_wanted:
            return None
        return gather_credentials(
            path, inet_credentials_file, interactive, save_credentials, kind="inet"
        )

    if foreground:
        import anyio

        def ask() -> tuple[Credentials, Credentials | None]:
            creds = gather_credentials(path, credentials_file, interactive, save_credentials)
            return creds, inet()

        # At a terminal the password is asked after pre-init, as at the logon screen.
        return anyio.run(
            _foreground,
            path,
            kind,
            entry,
            ask,
            interactive and credentials_file is None,
            interactive,
            logon,
            log_dir,
            as_json,
        )
    target: dict[str, Any] = {
        "profile": str(path),
        "type": kind,
        "entry": entry,
        "unattended": not interactive,
        "logon": logon,
    }
    mine = _own_values(path)
    if mine:
        target["user_settings"] = mine
    with Client(socket_path, timeout=None) as client:
        if interactive and credentials_file is None:
            # "How Connection Manager Works": pre-init runs before the logon screen, so the
            # session is opened (pre-init runs in the daemon) before the password is asked.
            opened = follow_request(client, {"op": "open", **target})
            if opened["state"] != "ready":
                return finish(opened, as_json)
            credentials = gather_credentials(path, None, interactive, save_credentials)
            request: dict[str, Any] = {"op": "connect", "session": opened["session"]}
        else:
            credentials = gather_credentials(path, credentials_file, interactive, save_credentials)
            request = {"op": "connect", **target}
        request["credentials"] = credentials_json(credentials)
        request["inet_credentials"] = credentials_json(inet())
        status = follow_request(client, request)
    return finish(status, as_json)


async def _foreground(
    path: Path,
    kind: str | None,
    entry: str | None,
    ask: Callable[[], tuple[Credentials, Credentials | None]],
    ask_after_pre_init: bool,
    interactive: bool,
    logon: bool,
    log_dir: Path | None,
    as_json: bool,
) -> int:
    import signal

    import anyio

    from opencm.links.api import Credentials
    from opencm.profile.model import ConnectionType
    from opencm.session.factory import open_session
    from opencm.session.options import ConnectOptions, SessionDeps
    from opencm.session.prompt import TtyPrompt

    credentials, inet_credentials = (Credentials(), None) if ask_after_pre_init else ask()
    session, engine = open_session(
        path,
        ConnectOptions(
            connection_type=ConnectionType.from_name(kind) if kind else None,
            entry=entry,
            credentials=credentials,
            inet_credentials=inet_credentials,
            interactive=interactive,
            logon=logon,
            # The terminal is this front end's screen: dialers show their dialogs there.
            dial_dialog=interactive,
        ),
        SessionDeps(prompt=TtyPrompt() if interactive else None),
        log_dir=log_dir,
    )

    def show(row: Any) -> None:
        click.echo(f"opencm: {row.target}", err=True)
        if str(row.target) == "connected":
            click.echo(final_line(session.status()), err=True)

    session.machine.subscribe(show)
    try:
        async with anyio.create_task_group() as group:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        session.disconnect("user-disconnect")

            async def at_the_logon_screen() -> None:
                while session.state.value == "pre-init":
                    await session.changed.wait()
                if session.state.value != "ready":
                    return
                try:
                    answers = await anyio.to_thread.run_sync(ask, abandon_on_cancel=True)
                except BaseException:
                    session.cancel()  # closes the session: no on-cancel actions
                    raise
                session.submit_logon(*answers)

            group.start_soon(on_signals)
            if ask_after_pre_init:
                group.start_soon(at_the_logon_screen)
            outcome = await session.run(hold_at_logon=ask_after_pre_init)
            group.cancel_scope.cancel()
    finally:
        engine.close()
    status = {**session.status(), "outcome": str(outcome)}
    if as_json:
        emit_json(status)
    else:
        click.echo(final_line(status), err=True)
    return OUTCOME_EXIT[outcome]


def _target(profile: str | None, session_id: str | None) -> dict[str, Any]:
    target: dict[str, Any] = {}
    if session_id:
        target["session"] = session_id
    elif profile:
        path = Path(profile)
        target["profile"] = str(path.resolve()) if path.exists() else profile
    return target


def _own_values(path: Path) -> dict[str, str]:
    """The user's own values of a profile whose .cmp they cannot write (an all-users install),
    kept in their home: the root daemon does not read users' homes, so the request carries them.
    """
    from opencm.profile.model import load_profile
    from opencm.profile.usersettings import UserSettings

    return UserSettings(load_profile(path)).overlay_values()


def _session_target(function: _F) -> _F:
    """PROFILE (optional) and ``--session``: the session a command is about (:func:`_target`)."""
    function = click.option("--session", "session_id", help="The session id (from opencm status).")(
        function
    )
    return click.argument("profile", required=False)(function)


def _end(op: str, profile: str | None, session_id: str | None, socket_path: Path | None) -> int:
    """Ask the daemon to ``cancel`` or ``disconnect`` a session; say how it ended."""
    with Client(socket_path, timeout=None) as client:
        answer = client.request({"op": op, **_target(profile, session_id)})
    click.echo(final_line(answer["session"]), err=True)
    return 0


@click.command("cancel")
@_session_target
@socket_option
def cancel(profile: str | None, session_id: str | None, socket_path: Path | None) -> int:
    """Cancel a connection attempt in progress (its on-cancel actions run)."""
    return _end("cancel", profile, session_id, socket_path)


@click.command("disconnect")
@_session_target
@socket_option
def disconnect(profile: str | None, session_id: str | None, socket_path: Path | None) -> int:
    """Disconnect (disconnect actions run first); PROFILE may be omitted if only one is up."""
    return _end("disconnect", profile, session_id, socket_path)


@click.command("answer")
@click.argument("choice", type=click.Choice(["stay", "disconnect"]))
@_session_target
@socket_option
def answer(
    choice: str, profile: str | None, session_id: str | None, socket_path: Path | None
) -> int:
    """Answer the "Stay online?" question of a session whose last monitored application exited."""
    wire = {"stay": "stay-online", "disconnect": "disconnect-now"}[choice]
    with Client(socket_path) as client:
        client.request({"op": "answer", "choice": wire, **_target(profile, session_id)})
    click.echo("staying online" if choice == "stay" else "disconnecting", err=True)
    return 0


@click.command("dismiss")
@_session_target
@socket_option
def dismiss(profile: str | None, session_id: str | None, socket_path: Path | None) -> int:
    """Forget ended sessions (all of yours, or the one named) so status no longer shows them."""
    with Client(socket_path) as client:
        gone = client.request({"op": "dismiss", **_target(profile, session_id)})["dismissed"]
    click.echo(f"dismissed {len(gone)} ended session(s)", err=True)
    return 0


@click.command("status")
@json_option('JSON: {"sessions": [...]}.')
@click.option(
    "--watch", is_flag=True, help="Keep printing on every change (JSON lines with --json)."
)
@socket_option
def status(as_json: bool, watch: bool, socket_path: Path | None) -> int:
    """Show the sessions you may see (root: all)."""
    if not watch:
        return show_status(socket_path, as_json)
    with Client(socket_path, timeout=None) as client:
        client.send({"op": "watch"})
        try:
            for answer in client.lines():
                if as_json:
                    click.echo(json.dumps({"sessions": answer.get("sessions", [])}))
                else:
                    click.echo("\n".join([*status_lines(answer.get("sessions", [])), ""]))
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
    "--keep-ended",
    type=click.FloatRange(min=0),
    default=KEEP_ENDED,
    show_default=True,
    help="Seconds an ended session stays in status with its outcome (unless dismissed).",
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
    keep_ended: float,
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
        keep_ended,
        [root.absolute() for root in profile_roots],
    )
    return 0


__all__ = [
    "answer",
    "cancel",
    "connect",
    "daemon",
    "disconnect",
    "dismiss",
    "status",
]
