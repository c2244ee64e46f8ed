"""Building a session from a profile path, and running a dead session's disconnect actions.

Shared by the daemon and ``opencm connect --foreground``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from opencm.actions.api import ActionPoint, RunContext
from opencm.actions.engine import ActionEngine
from opencm.actions.logon import logon_allowed
from opencm.actions.plan import PlannedAction
from opencm.profile.model import ConnectionType, ServiceProfile, load_profile
from opencm.session.config import SessionConfig, profile_log_dir, session_config
from opencm.session.journal import JournalEntry
from opencm.session.log import SessionLog
from opencm.session.options import ConnectOptions, SessionDeps
from opencm.session.runner import Session


@dataclass(frozen=True)
class Prepared:
    """A profile read and its session settings worked out: all the file reading a session
    needs before it starts (the daemon does it in a worker thread, off its event loop)."""

    profile: ServiceProfile
    config: SessionConfig


def prepare(profile_path: str | Path) -> Prepared:
    profile = load_profile(profile_path)
    return Prepared(profile, session_config(profile))


def open_session(
    profile_path: str | Path | Prepared,
    options: ConnectOptions | None = None,
    deps: SessionDeps | None = None,
    *,
    log_dir: Path | None = None,
    on_running: Callable[[PlannedAction, str], None] | None = None,
) -> tuple[Session, ActionEngine]:
    """Load the profile and make its session; the caller closes the engine when it ends.

    The session logs to the profile's ``[opencm] LogDir``, else ``log_dir``, else the default
    folder, unless ``deps`` brings a log of its own. ``on_running`` sees each action just
    before it runs (the front ends' status pane).
    """
    options = options or ConnectOptions()
    deps = deps or SessionDeps()
    prepared = profile_path if isinstance(profile_path, Prepared) else prepare(profile_path)
    profile, config = prepared.profile, prepared.config
    # At boot/logon only what the root-owned allow list names may run (opencm.actions.logon).
    engine = ActionEngine(
        profile.cms,
        logon_allowed=lambda action: logon_allowed(profile, action.program),
        on_running=on_running,
    )
    try:
        session = Session(config, engine, options, deps)
    except BaseException:
        engine.close()
        raise
    if deps.log is None:
        session.log = SessionLog.for_profile(
            profile.short_name, config.log_dir or log_dir, session.id
        )
    return session, engine


def _run_disconnect_sync(entry: JournalEntry, reason: str, log_dir: Path | None) -> None:
    profile = load_profile(entry.data["profile"])
    context = RunContext(
        macros={**entry.data.get("macros", {}), "DisconnectReason": reason},
        connection_type=ConnectionType(int(entry.data["connection_type"])),
        interactive=False,  # nobody is watching a recovery
        profile_dir=profile.profile_dir,
    )
    # The same log as the session's own: the profile's LogDir, else the daemon's --log-dir.
    log = SessionLog.for_profile(
        profile.short_name, profile_log_dir(profile) or log_dir, str(entry.data.get("session", ""))
    )
    with ActionEngine(profile.cms) as engine:
        result = engine.run_point(ActionPoint.DISCONNECT, context)
    for action in result.results:
        code = None
        if action.process is not None:
            try:
                code = action.process.wait(60)
            except subprocess.TimeoutExpired:
                code = None
        log.write(
            "action",
            point="disconnect",
            index=action.index,
            description=action.description,
            argv=list(action.argv),
            ran=action.ran,
            ok=action.ok,
            exit_code=code if code is not None else action.return_value,
            duration=round(action.duration, 4),
            message=action.message,
            recovery=reason,
        )
    log.close()


async def run_journaled_disconnect(
    entry: JournalEntry, reason: str, log_dir: Path | None = None
) -> None:
    """The disconnect actions of a session a dead daemon left behind (journal recovery),
    logged where that session logged (``log_dir``: the daemon's ``--log-dir``)."""
    await anyio.to_thread.run_sync(_run_disconnect_sync, entry, reason, log_dir)


__all__ = ["Prepared", "open_session", "prepare", "run_journaled_disconnect"]
