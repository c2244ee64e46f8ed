"""Building a session from a profile path, and running a dead session's disconnect actions.

Shared by the daemon and ``opencm connect --foreground``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import anyio

from opencm.actions.api import ActionPoint, ConnectionType, RunContext
from opencm.actions.engine import ActionEngine
from opencm.kit.logon import logon_allowed
from opencm.links.api import Credentials
from opencm.profile.model import ServiceProfile, load_profile
from opencm.session.clock import Clock
from opencm.session.config import SessionConfig, session_config
from opencm.session.journal import Journal, JournalEntry
from opencm.session.log import SessionLog
from opencm.session.prompt import DisconnectPrompt
from opencm.session.runner import DialerLookup, Session, default_dialer_lookup


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
    *,
    connection_type: ConnectionType | None = None,
    entry: str | None = None,
    credentials: Credentials | None = None,
    interactive: bool = True,
    prompt: DisconnectPrompt | None = None,
    dialer_lookup: DialerLookup = default_dialer_lookup,
    clock: Clock | None = None,
    journal: Journal | None = None,
    log_dir: Path | None = None,
    owner_uid: int | None = None,
    session_id: str | None = None,
    logon: bool = False,
) -> tuple[Session, ActionEngine]:
    """Load the profile (unless given :func:`prepare`'s result) and make its session; the
    caller closes the engine when it ends."""
    prepared = profile_path if isinstance(profile_path, Prepared) else prepare(profile_path)
    profile, config = prepared.profile, prepared.config
    # At boot/logon only what the root-owned allow list names may run (opencm.kit.logon).
    engine = ActionEngine(
        profile.cms, logon_allowed=lambda action: logon_allowed(profile, action.program)
    )
    try:
        session = Session(
            config,
            engine,
            connection_type=connection_type,
            credentials=credentials,
            interactive=interactive,
            prompt=prompt,
            dialer_lookup=dialer_lookup,
            clock=clock,
            journal=journal,
            entry=entry,
            owner_uid=owner_uid,
            session_id=session_id,
            logon=logon,
        )
    except BaseException:
        engine.close()
        raise
    session.log = SessionLog.for_profile(profile.short_name, config.log_dir or log_dir, session.id)
    return session, engine


def _run_disconnect_sync(entry: JournalEntry, reason: str) -> None:
    profile = load_profile(entry.data["profile"])
    context = RunContext(
        macros={**entry.data.get("macros", {}), "DisconnectReason": reason},
        connection_type=ConnectionType(int(entry.data["connection_type"])),
        interactive=False,  # nobody is watching a recovery
        profile_dir=profile.profile_dir,
    )
    log = SessionLog.for_profile(
        profile.short_name, session_config(profile).log_dir, str(entry.data.get("session", ""))
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


async def run_journaled_disconnect(entry: JournalEntry, reason: str) -> None:
    """The disconnect actions of a session a dead daemon left behind (journal recovery)."""
    await anyio.to_thread.run_sync(_run_disconnect_sync, entry, reason)


__all__ = ["Prepared", "open_session", "prepare", "run_journaled_disconnect"]
