"""``opencm daemon``: owns the sessions and their links; clients talk JSON lines over a socket.

At start the daemon takes a lock on its state folder (one daemon per folder), finishes what a
dead predecessor left in the journal (disconnect actions once, with ``%DisconnectReason%`` =
``opencm-restarted``; leftover link processes ended by PID), then listens. On SIGTERM/SIGINT it
disconnects every session in order (``daemon-stopping``) and exits.

Access (from ``SO_PEERCRED``): a user sees and controls their own sessions, root all of them.
When the daemon runs as root and a user asks to connect, the profile must belong to root and not
be writable by anyone else, because its actions would run with the daemon's rights.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from opencm.actions.api import ConnectionType
from opencm.actions.engine import ActionEngine
from opencm.clock import Clock, RealClock
from opencm.errors import EXIT_BAD_INPUT, EXIT_PROBLEMS, OpencmError, RefusedError
from opencm.links.api import Credentials, LinkInfo
from opencm.profile.model import load_profile
from opencm.session.factory import open_session, run_journaled_disconnect
from opencm.session.journal import Journal, recover
from opencm.session.machine import State
from opencm.session.options import ConnectOptions, DialerLookup, SessionDeps, default_dialer_lookup
from opencm.session.prompt import Choice
from opencm.session.protocol import (
    KEEP_ENDED,
    MAX_LINE,
    PROTOCOL_VERSION,
    ProtocolError,
    decode,
    encode,
    peer_credentials,
)
from opencm.session.runner import Outcome, Session
from opencm.session.stream import FINAL_EVENT, EventStream, outcome_text

RESTART_REASON = "opencm-restarted"
STOP_REASON = "daemon-stopping"


class DaemonPrompt:
    """The daemon's "Stay online" / "Disconnect now": clients see ``prompt`` in the status and
    answer with the ``answer`` request; the session's 30-second timer still applies."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.events: EventStream | None = None
        self.asking = False
        self._answer: Choice | None = None
        self._answered = anyio.Event()

    async def ask(self, service_name: str, seconds: float) -> Choice:
        self.asking, self._answer, self._answered = True, None, anyio.Event()
        if self.events is not None:
            self.events.emit(
                "prompt",
                seconds=seconds,
                text=f"The last monitored application of {service_name} has exited. "
                f"Stay online? (disconnects in {seconds:.0f} s)",
            )
        self.daemon.notify()
        try:
            await self._answered.wait()
            assert self._answer is not None
            return self._answer
        finally:
            self.asking = False
            self.daemon.notify()

    def answer(self, choice: Choice) -> None:
        if not self.asking:
            raise RefusedError("nothing is being asked")
        self._answer = choice
        self._answered.set()


@dataclass
class Managed:
    session: Session
    engine: ActionEngine
    prompt: DaemonPrompt
    events: EventStream
    ended: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None

    @property
    def live(self) -> bool:
        return not self.ended.is_set()

    def status(self) -> dict[str, Any]:
        data = self.session.status()
        data["prompt"] = self.prompt.asking
        data["ended"] = not self.live
        if self.outcome is not None:
            data["outcome"] = str(self.outcome)
        return data


class Daemon:
    def __init__(
        self,
        socket_path: Path,
        state_dir: Path,
        *,
        dialer_lookup: DialerLookup = default_dialer_lookup,
        clock: Clock | None = None,
        log_dir: Path | None = None,
        keep_ended: float = KEEP_ENDED,
    ) -> None:
        self.socket_path = socket_path
        self.keep_ended = keep_ended
        self.state_dir = state_dir
        self.lookup = dialer_lookup
        self.clock: Clock = clock or RealClock()
        self.log_dir = log_dir
        self.sessions: dict[str, Managed] = {}
        self.journal = Journal(state_dir / "journal")
        self._watchers: list[MemoryObjectSendStream[None]] = []
        self._group: anyio.abc.TaskGroup | None = None
        self._lock_fd: int | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def _lock(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_dir / "daemon.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            os.close(fd)
            raise RefusedError(
                f"another opencm daemon is running with state folder {self.state_dir}"
            ) from error
        self._lock_fd = fd

    async def _hang_up_leftover(self, dialer_name: str, info: LinkInfo) -> None:
        with anyio.fail_after(15):
            await self.lookup(dialer_name).hang_up(info)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._lock()
        try:
            reports = await recover(
                self.journal, RESTART_REASON, run_journaled_disconnect, self._hang_up_leftover
            )
            for report in reports:
                print(
                    f"opencm daemon: recovered session {report.session}: {report.note}", flush=True
                )
            # The system daemon's folder is open to all (peer credentials decide); a user's own
            # daemon keeps its socket to that user.
            self.socket_path.parent.mkdir(
                parents=True, exist_ok=True, mode=0o755 if os.geteuid() == 0 else 0o700
            )
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            listener = await anyio.create_unix_listener(self.socket_path)
            # Anyone may connect; SO_PEERCRED decides what each peer may do.
            os.chmod(self.socket_path, 0o666)
            async with listener, anyio.create_task_group() as group:
                self._group = group
                group.start_soon(self._signals, group)
                task_status.started()
                await listener.serve(self._client, task_group=group)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            if self._lock_fd is not None:
                os.close(self._lock_fd)

    async def _signals(self, group: anyio.abc.TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                await self.stop()
                group.cancel_scope.cancel()
                return

    async def stop(self) -> None:
        """Disconnect every session in order (disconnect actions with ``daemon-stopping``)."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(60):
            for managed in list(self.sessions.values()):
                if managed.live:
                    managed.session.disconnect(STOP_REASON)
            for managed in list(self.sessions.values()):
                await managed.ended.wait()

    def notify(self) -> None:
        for watcher in list(self._watchers):
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                watcher.send_nowait(None)

    # -- one client connection -----------------------------------------------------------------

    async def _client(self, stream: anyio.abc.SocketStream) -> None:
        raw = stream.extra(SocketAttribute.raw_socket)
        _pid, uid, _gid = peer_credentials(raw)
        buffered = BufferedByteReceiveStream(stream)
        # Sessions this connection opened that still wait at their logon screen: a front end
        # that goes away without Connect or Cancel closes them (no on-cancel actions run).
        held: list[Managed] = []
        async with stream:
            try:
                await self._serve_lines(stream, buffered, uid, held)
            finally:
                for managed in held:
                    if managed.session.state is State.READY:
                        managed.session.cancel()

    async def _serve_lines(
        self,
        stream: anyio.abc.SocketStream,
        buffered: BufferedByteReceiveStream,
        uid: int,
        held: list[Managed],
    ) -> None:
        while True:
            try:
                line = await buffered.receive_until(b"\n", MAX_LINE)
            except (anyio.IncompleteRead, anyio.EndOfStream, anyio.BrokenResourceError):
                return
            except anyio.DelimiterNotFound:
                await stream.send(_error(f"line longer than {MAX_LINE} bytes", EXIT_BAD_INPUT))
                return
            try:
                request = decode(line)
                async for answer in self._handle(request, uid, held):
                    await stream.send(encode(answer))
            except OpencmError as error:
                await stream.send(_error(str(error), error.exit_code))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    async def _handle(
        self, request: dict[str, Any], uid: int, held: list[Managed] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        if os.geteuid() != 0 and uid not in (0, os.geteuid()):
            # A user's own daemon serves that user only: it would run others' actions as them.
            raise RefusedError(f"this opencm daemon serves uid {os.geteuid()} only")
        op = request.get("op")
        if op == "hello":
            yield {"ok": True, "version": PROTOCOL_VERSION, "uid": uid}
        elif op == "status":
            yield {"ok": True, "sessions": self._visible(uid)}
        elif op == "watch" and (request.get("session") or request.get("profile")):
            managed = self._target(request, uid, ended=True)
            async for event in managed.events.follow(int(request.get("since") or 0)):
                yield event
            yield {"ok": True, "session": managed.status()}
        elif op == "watch":
            async for answer in self._watch(uid):
                yield answer
        elif op in ("open", "connect"):
            async for answer in self._connect(request, uid, hold_at_logon=op == "open", held=held):
                yield answer
        elif op == "dismiss":
            gone = [m.session.id for m in self._ended(request, uid)]
            for session_id in gone:
                self.sessions.pop(session_id, None)
            self.notify()
            yield {"ok": True, "dismissed": gone}
        elif op in ("cancel", "disconnect"):
            managed = self._target(request, uid)
            if op == "cancel":
                if not managed.session.cancel():
                    raise RefusedError(
                        f"nothing to cancel: session {managed.session.id} is "
                        f"{managed.session.state} (use disconnect)"
                    )
            else:
                managed.session.disconnect("user-disconnect")
            if request.get("wait", True):
                await managed.ended.wait()
            yield {"ok": True, "session": managed.status()}
        elif op == "answer":
            managed = self._target(request, uid)
            try:
                choice = Choice(str(request.get("choice")))
            except ValueError as error:
                raise ProtocolError(
                    "choice must be stay-online, disconnect-now or timed-out", code=EXIT_BAD_INPUT
                ) from error
            managed.prompt.answer(choice)
            yield {"ok": True}
        else:
            raise ProtocolError(f"unknown op {op!r}", code=EXIT_BAD_INPUT)

    def _visible(self, uid: int) -> list[dict[str, Any]]:
        return [
            managed.status()
            for managed in self.sessions.values()
            if uid == 0 or managed.session.owner_uid == uid
        ]

    def _target(self, request: dict[str, Any], uid: int, *, ended: bool = False) -> Managed:
        """The one session a request names; ended sessions only when ``ended`` (watch)."""
        mine = [
            managed
            for managed in self.sessions.values()
            if (uid == 0 or managed.session.owner_uid == uid) and (ended or managed.live)
        ]
        wanted_id = request.get("session")
        wanted_profile = request.get("profile")
        if wanted_id:
            found = [
                m for m in self.sessions.values() if m.session.id == wanted_id and (ended or m.live)
            ]
            if found and found[0] not in mine:
                raise RefusedError(f"session {wanted_id} belongs to another user")
            mine = found
        elif wanted_profile:
            mine = [m for m in mine if _matches(m.session, str(wanted_profile))]
        if not mine:
            raise ProtocolError("no such session", code=EXIT_PROBLEMS)
        if len(mine) > 1:
            names = ", ".join(f"{m.session.id} ({m.session.config.service_name})" for m in mine)
            raise ProtocolError(f"more than one session; name one of: {names}", code=EXIT_BAD_INPUT)
        return mine[0]

    def _ended(self, request: dict[str, Any], uid: int) -> list[Managed]:
        """The ended sessions a ``dismiss`` names (by id or profile), or all the caller's."""
        if request.get("session") or request.get("profile"):
            managed = self._target(request, uid, ended=True)
            return [] if managed.live else [managed]
        return [
            m
            for m in self.sessions.values()
            if not m.live and (uid == 0 or m.session.owner_uid == uid)
        ]

    async def _watch(self, uid: int) -> AsyncIterator[dict[str, Any]]:
        send, receive = anyio.create_memory_object_stream[None](1)
        self._watchers.append(send)
        try:
            yield {"event": "status", "sessions": self._visible(uid)}
            async with receive:
                async for _ in receive:
                    yield {"event": "status", "sessions": self._visible(uid)}
        finally:
            self._watchers.remove(send)
            send.close()

    async def _connect(
        self,
        request: dict[str, Any],
        uid: int,
        *,
        hold_at_logon: bool = False,
        held: list[Managed] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """``open`` (pre-init, then wait at the logon screen), ``connect`` of a profile, or
        ``connect`` of a session waiting at its logon screen (the logon's Connect)."""
        creds = request.get("credentials") or {}
        credentials = Credentials(
            username=creds.get("username"),
            password=creds.get("password"),
            domain=creds.get("domain"),
        )
        if request.get("session") and not hold_at_logon:
            managed = self._target(request, uid)
            managed.session.submit_logon(credentials)
            since = managed.events.events[-1]["seq"] if managed.events.events else 0
        else:
            managed = self._open(request, uid, credentials, hold_at_logon)
            since = 0
            if hold_at_logon and held is not None:
                held.append(managed)
        if not request.get("wait", True):
            yield {"ok": True, "session": managed.status()}
            return
        stop_at = State.READY if hold_at_logon else State.CONNECTED
        async for event in managed.events.follow(since):
            yield event
            if event.get("event") == "state" and event.get("state") == str(stop_at):
                break
        yield {"ok": True, "session": managed.status()}

    def _open(
        self, request: dict[str, Any], uid: int, credentials: Credentials, hold_at_logon: bool
    ) -> Managed:
        profile_path = request.get("profile")
        if not isinstance(profile_path, str) or not profile_path:
            raise ProtocolError("connect needs a profile path", code=EXIT_BAD_INPUT)
        self._check_profile_rights(Path(profile_path), uid)
        kind = request.get("type")
        prompt = DaemonPrompt(self)
        session_id = uuid.uuid4().hex[:12]
        events = EventStream(session_id, wall=self.clock.wall)
        session, engine = open_session(
            profile_path,
            ConnectOptions(
                connection_type=ConnectionType.from_name(kind) if kind else None,
                entry=request.get("entry") or None,
                credentials=credentials,
                interactive=not request.get("unattended", False),
                owner_uid=uid,
                session_id=session_id,
                logon=bool(request.get("logon", False)) and uid == 0,
            ),
            SessionDeps(
                dialer_lookup=self.lookup,
                clock=self.clock,
                prompt=prompt,
                journal=self.journal,
            ),
            log_dir=self.log_dir,
            on_running=lambda action, text: events.action_running(
                str(action.point), action.description, text
            ),
        )
        same = [
            m
            for m in self.sessions.values()
            if m.session.config.profile.cms_path == session.config.profile.cms_path
            and m.session.owner_uid == uid
        ]
        busy = [m for m in same if m.live]
        if busy:
            engine.close()
            raise RefusedError(
                f"{session.config.service_name} already has session {busy[0].session.id} "
                f"({busy[0].session.state})"
            )
        for ended in same:  # a new session of the profile replaces the ended one
            self.sessions.pop(ended.session.id, None)
        events.redial_count = session.config.redial_count
        events.redial_delay = session.config.redial_delay
        prompt.events = events
        session.log.subscribe(events.on_log)
        managed = Managed(session, engine, prompt, events)
        self.sessions[session.id] = managed
        session.machine.subscribe(lambda _row: self.notify())
        assert self._group is not None
        self._group.start_soon(self._run, managed, hold_at_logon)
        return managed

    async def _run(self, managed: Managed, hold_at_logon: bool = False) -> None:
        try:
            managed.outcome = await managed.session.run(hold_at_logon=hold_at_logon)
        except Exception as error:  # one session's bug must not take the daemon down
            managed.outcome = Outcome.FAILED
            managed.session.log.write("session-crashed", error=f"{type(error).__name__}: {error}")
            print(f"opencm daemon: session {managed.session.id} failed: {error!r}", flush=True)
        finally:
            managed.engine.close()
            status = managed.status()
            managed.events.emit(
                FINAL_EVENT,
                outcome=str(managed.outcome),
                state=status["state"],
                error=status["error"],
                disconnect_reason=status["disconnect_reason"],
                text=outcome_text(status, str(managed.outcome)),
            )
            managed.events.close()
            managed.ended.set()
            # A client waiting on connect sees the final state through the ended event.
            managed.session.changed.set()
            self.notify()
            assert self._group is not None
            self._group.start_soon(self._forget_later, managed)

    async def _forget_later(self, managed: Managed) -> None:
        """An ended session stays in ``status`` (with its outcome) for ``keep_ended`` seconds."""
        await anyio.sleep(self.keep_ended)
        if self.sessions.get(managed.session.id) is managed:
            del self.sessions[managed.session.id]
            self.notify()

    def _check_profile_rights(self, path: Path, uid: int) -> None:
        if os.geteuid() != 0 or uid == 0:
            return  # the daemon has the caller's rights or the caller is root
        profile = load_profile(path)
        for item in (profile.cms_path, profile.cmp_path, profile.service_dir):
            if item is None:
                continue
            info = item.stat()
            if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise RefusedError(
                    f"{item}: a profile a user connects through the root daemon must belong to "
                    "root and be writable by root only (its actions run with the daemon's rights)"
                )


def _matches(session: Session, wanted: str) -> bool:
    profile = session.config.profile
    names = {profile.short_name.casefold(), session.config.service_name.casefold()}
    if wanted.casefold() in names:
        return True
    with contextlib.suppress(OSError):
        target = Path(wanted).resolve()
        return target in {
            p.resolve() for p in (profile.cmp_path, profile.cms_path) if p is not None
        }
    return False


def _error(message: str, exit_code: int) -> bytes:
    return encode({"ok": False, "error": message, "exit_code": exit_code})


async def run_daemon(
    socket_path: Path, state_dir: Path, log_dir: Path | None = None, keep_ended: float = KEEP_ENDED
) -> None:
    await Daemon(socket_path, state_dir, log_dir=log_dir, keep_ended=keep_ended).serve()


__all__ = [
    "KEEP_ENDED",
    "RESTART_REASON",
    "STOP_REASON",
    "Daemon",
    "DaemonPrompt",
    "run_daemon",
]
