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
import errno
import fcntl
import functools
import os
import pwd
import resource
import shutil
import signal
import traceback
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from opencm.actions.engine import ActionEngine
from opencm.clock import Clock, RealClock
from opencm.errors import EXIT_BAD_INPUT, EXIT_PROBLEMS, OpencmError, RefusedError
from opencm.links.api import Credentials, LinkInfo
from opencm.paths import system_config_dir
from opencm.profile.model import ConnectionType, load_profile
from opencm.profile.usersettings import UserSettings
from opencm.safepath import Caller
from opencm.session.factory import Prepared, open_session, prepare, run_journaled_disconnect
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
    validate_request,
)
from opencm.session.runner import Outcome, Session
from opencm.session.snapshot import Snapshot, snapshot_profile
from opencm.session.stream import FINAL_EVENT, EventStream, outcome_text

RESTART_REASON = "opencm-restarted"
STOP_REASON = "daemon-stopping"
#: Client connections held at once, in all and per uid: each costs a file descriptor, and a
#: user who opens a thousand must not take the daemon from everyone else.
MAX_CLIENTS = 512
MAX_CLIENTS_PER_UID = 32
#: A connection that sends no complete request for this long is closed (a ``watch`` or a
#: ``connect`` being answered is not idle).
IDLE_TIMEOUT = 600.0
#: Reading and checking a profile for a ``connect`` may take this long (a worker thread).
OPEN_TIMEOUT = 30.0
#: accept() errors that mean "out of descriptors or memory for now": wait and accept again.
_TRANSIENT_ACCEPT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


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
    #: The real path of the profile the client named (a user's session runs from a copy).
    origin: str = ""
    snapshot: Snapshot | None = None
    ended: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None

    @property
    def owner(self) -> int | None:
        return self.session.owner_uid

    @property
    def live(self) -> bool:
        return not self.ended.is_set()

    def status(self) -> dict[str, Any]:
        data = self.session.status()
        data["profile"] = self.origin or data["profile"]
        error = data.get("error")
        if self.snapshot is not None and isinstance(error, dict) and error.get("message"):
            data["error"] = {**error, "message": self.snapshot.shown(str(error["message"]))}
        data["prompt"] = self.prompt.asking
        data["ended"] = not self.live
        if self.outcome is not None:
            data["outcome"] = str(self.outcome)
        return data


@dataclass(frozen=True)
class Opened:
    """A profile read for ``open``/``connect``: what the session needs, the real path the
    client named, and the daemon's private copy it runs from (a user's, in a root daemon)."""

    prepared: Prepared
    origin: str
    snapshot: Snapshot | None


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
        profile_roots: list[Path] | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.socket_path = socket_path
        self.keep_ended = keep_ended
        self.idle_timeout = idle_timeout
        self.state_dir = state_dir
        self.lookup = dialer_lookup
        self.clock: Clock = clock or RealClock()
        # Never the temp folder for a root daemon: another user could have put a link there.
        self.log_dir = log_dir or (state_dir / "logs" if os.geteuid() == 0 else None)
        #: Where profiles that users may connect through a root daemon are installed.
        self.profile_roots = profile_roots or [system_config_dir() / "Cm"]
        self.sessions: dict[str, Managed] = {}
        self.journal = Journal(state_dir / "journal")
        self._watchers: list[MemoryObjectSendStream[None]] = []
        self._group: anyio.abc.TaskGroup | None = None
        self._lock_fd: int | None = None
        self._clients: Counter[int] = Counter()

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
                self.journal,
                RESTART_REASON,
                functools.partial(run_journaled_disconnect, log_dir=self.log_dir),
                self._hang_up_leftover,
            )
            for report in reports:
                print(
                    f"opencm daemon: recovered session {report.session}: {report.note}", flush=True
                )
            # Recovery ran what the copies of users' profiles owed; nothing else uses them.
            shutil.rmtree(self.state_dir / "profiles", ignore_errors=True)
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
            _raise_file_limit()
            async with listener, anyio.create_task_group() as group:
                self._group = group
                group.start_soon(self._signals, group)
                task_status.started()
                await self._accept_loop(listener, group)
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

    async def _accept_loop(
        self, listener: anyio.abc.SocketListener, group: anyio.abc.TaskGroup
    ) -> None:
        """Accept forever: running out of descriptors (EMFILE) pauses accepting, never ends it."""
        warned = False
        while True:
            try:
                stream = await listener.accept()
            except anyio.BrokenResourceError as error:
                cause = error.__cause__
                if not isinstance(cause, OSError) or cause.errno not in _TRANSIENT_ACCEPT:
                    raise
                if not warned:
                    print(f"opencm daemon: cannot accept a client: {cause.strerror}", flush=True)
                    warned = True
                await anyio.sleep(0.1)
                continue
            warned = False
            group.start_soon(self._guarded_client, stream)

    async def _guarded_client(self, stream: anyio.abc.SocketStream) -> None:
        """One client, counted against the limits; whatever goes wrong ends this client only."""
        async with stream:
            try:
                _pid, uid, _gid = peer_credentials(stream.extra(SocketAttribute.raw_socket))
            except OSError:
                return
            refusal = self._over_limit(uid)
            if refusal is not None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await stream.send(_error(refusal, RefusedError.exit_code))
                return
            self._clients[uid] += 1
            try:
                await self._client(stream, uid)
            except Exception:  # one client's failure is never the daemon's
                print(
                    f"opencm daemon: a client of uid {uid} ended with an error:\n"
                    + traceback.format_exc(),
                    flush=True,
                )
            finally:
                self._clients[uid] -= 1
                if not self._clients[uid]:
                    del self._clients[uid]

    def _over_limit(self, uid: int) -> str | None:
        if self._clients[uid] >= MAX_CLIENTS_PER_UID and uid != 0:
            return f"too many connections from uid {uid} (at most {MAX_CLIENTS_PER_UID})"
        if sum(self._clients.values()) >= MAX_CLIENTS:
            return f"the daemon has too many connections (at most {MAX_CLIENTS})"
        return None

    async def _client(self, stream: anyio.abc.SocketStream, uid: int) -> None:
        buffered = BufferedByteReceiveStream(stream)
        # Sessions this connection opened that still wait at their logon screen: a front end
        # that goes away without Connect or Cancel closes them (no on-cancel actions run).
        held: list[Managed] = []
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
                with anyio.fail_after(self.idle_timeout):
                    line = await buffered.receive_until(b"\n", MAX_LINE)
            except (
                TimeoutError,
                anyio.IncompleteRead,
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                return
            except anyio.DelimiterNotFound:
                await _send(stream, _error(f"line longer than {MAX_LINE} bytes", EXIT_BAD_INPUT))
                return
            try:
                request = decode(line)
                async for answer in self._handle(request, uid, held):
                    if not await _send(stream, encode(answer)):
                        return
            except OpencmError as error:
                if not await _send(stream, _error(str(error), error.exit_code)):
                    return
            except Exception as error:  # a bug in a handler: this client's error answer
                print(
                    f"opencm daemon: request from uid {uid} failed:\n" + traceback.format_exc(),
                    flush=True,
                )
                message = f"the daemon could not answer: {type(error).__name__}"
                if not await _send(stream, _error(message, EXIT_PROBLEMS)):
                    return

    async def _handle(
        self, request: dict[str, Any], uid: int, held: list[Managed] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        if os.geteuid() != 0 and uid not in (0, os.geteuid()):
            # A user's own daemon serves that user only: it would run others' actions as them.
            raise RefusedError(f"this opencm daemon serves uid {os.geteuid()} only")
        validate_request(request)  # every member below has the type the schema says
        op = request["op"]
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
            if request.get("wait") is not False:
                await managed.ended.wait()
            yield {"ok": True, "session": managed.status()}
        else:
            assert op == "answer", op  # validate_request knows no other op
            managed = self._target(request, uid)
            managed.prompt.answer(Choice(request["choice"]))
            yield {"ok": True}

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
            mine = [m for m in mine if _matches(m, str(wanted_profile))]
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
        credentials = _credentials(request.get("credentials") or {})
        inet = request.get("inet_credentials")
        inet_credentials = _credentials(inet) if inet else None
        if request.get("session") and not hold_at_logon:
            managed = self._target(request, uid)
            managed.session.submit_logon(credentials, inet_credentials)
            since = managed.events.events[-1]["seq"] if managed.events.events else 0
        else:
            managed = await self._open(request, uid, credentials, inet_credentials, hold_at_logon)
            since = 0
            if hold_at_logon and held is not None:
                held.append(managed)
        if request.get("wait") is False:
            yield {"ok": True, "session": managed.status()}
            return
        stop_at = State.READY if hold_at_logon else State.CONNECTED
        async for event in managed.events.follow(since):
            yield event
            if event.get("event") == "state" and event.get("state") == str(stop_at):
                break
        yield {"ok": True, "session": managed.status()}

    async def _open(
        self,
        request: dict[str, Any],
        uid: int,
        credentials: Credentials,
        inet_credentials: Credentials | None,
        hold_at_logon: bool,
    ) -> Managed:
        opened = await self._open_profile(
            str(request["profile"]), uid, request.get("user_settings") or None
        )
        try:
            return self._start(request, uid, credentials, inet_credentials, hold_at_logon, opened)
        except BaseException:
            if opened.snapshot is not None:
                opened.snapshot.remove()
            raise

    def _start(
        self,
        request: dict[str, Any],
        uid: int,
        credentials: Credentials,
        inet_credentials: Credentials | None,
        hold_at_logon: bool,
        opened: Opened,
    ) -> Managed:
        prepared, origin, snapshot = opened.prepared, opened.origin, opened.snapshot
        same = [m for m in self.sessions.values() if m.origin == origin and m.owner == uid]
        busy = [m for m in same if m.live]
        if busy:
            raise RefusedError(
                f"{prepared.config.service_name} already has session {busy[0].session.id} "
                f"({busy[0].session.state})"
            )
        kind = request.get("type")
        prompt = DaemonPrompt(self)
        session_id = uuid.uuid4().hex[:12]
        events = EventStream(session_id, wall=self.clock.wall)
        session, engine = open_session(
            prepared,
            ConnectOptions(
                connection_type=ConnectionType.from_name(kind) if kind else None,
                entry=request.get("entry") or None,
                credentials=credentials,
                inet_credentials=inet_credentials,
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
        for ended in same:  # a new session of the profile replaces the ended one
            self.sessions.pop(ended.session.id, None)
        events.redial_count = session.config.redial_count
        events.redial_delay = session.config.redial_delay
        prompt.events = events
        session.log.subscribe(events.on_log)
        if snapshot is not None:
            session.log.subscribe(self._book_writer(snapshot, prepared))
        managed = Managed(session, engine, prompt, events, origin=origin, snapshot=snapshot)
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
            if managed.snapshot is not None:
                managed.snapshot.remove()
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

    def _book_writer(
        self, snapshot: Snapshot, prepared: Prepared
    ) -> Callable[[str, dict[str, Any]], None]:
        """A user's session runs from the daemon's copy: a phone book its post-connect update
        applied there is installed back into the all-users profile (in a worker thread)."""

        def on_log(kind: str, fields: dict[str, Any]) -> None:
            if kind != "phonebook-update" or fields.get("result") != "applied":
                return
            assert self._group is not None
            self._group.start_soon(self._install_book_back, snapshot, prepared)

        return on_log

    async def _install_book_back(self, snapshot: Snapshot, prepared: Prepared) -> None:
        try:
            await anyio.to_thread.run_sync(snapshot.install_book_back, prepared.profile)
        except (OpencmError, OSError) as error:
            print(
                f"opencm daemon: the updated phone book of {snapshot.origin} could not be "
                f"installed: {error}",
                flush=True,
            )

    async def _open_profile(
        self, path: str, uid: int, user_values: dict[str, str] | None = None
    ) -> Opened:
        """Read the profile for ``uid`` in a worker thread, bounded in time: for a user of the
        root daemon from a checked private copy (opencm.session.snapshot), otherwise as is.

        ``user_values`` (checked by the protocol: only the keys a user sets, one short line
        each) are the user's own values of a profile installed for all users, which live in
        their home where the root daemon does not read; they go into the private copy's
        ``.cmp``, where the session reads a user's values (opencm.profile.usersettings).
        """
        crossing = os.geteuid() == 0 and uid != 0

        def work() -> Opened:
            if not crossing:
                prepared = prepare(path)
                where = prepared.profile.cmp_path or prepared.profile.cms_path
                return Opened(prepared, str(where.resolve()), None)
            snapshot = snapshot_profile(
                path, Caller.of(uid, _gid_of(uid)), self.profile_roots, self.state_dir / "profiles"
            )
            try:
                if user_values:
                    UserSettings(load_profile(snapshot.target)).save(user_values)
                return Opened(prepare(snapshot.target), str(snapshot.origin), snapshot)
            except OpencmError as error:
                snapshot.remove()
                raise _for_caller(error, snapshot) from error
            except BaseException:
                snapshot.remove()
                raise

        done = anyio.Event()
        result: list[Opened] = []
        with anyio.move_on_after(OPEN_TIMEOUT):
            # abandon_on_cancel: a read that hangs (a stuck file system) keeps a worker thread,
            # never the daemon; the time bound answers the client.
            result.append(await anyio.to_thread.run_sync(work, abandon_on_cancel=True))
            done.set()
        if not done.is_set():
            raise ProtocolError(
                f"{path}: reading the profile took longer than {OPEN_TIMEOUT:.0f} s"
            )
        return result[0]


def _gid_of(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def _for_caller(error: OpencmError, snapshot: Snapshot) -> OpencmError:
    """An error about the private copy, told in terms of the profile the user named."""
    if error.path is not None:
        shown = str(error.path)
        root = str(snapshot.root)
        if shown.startswith(root + "/"):
            error.path = str(snapshot.origin.parent) + shown[len(root) :]
    return error


def _credentials(value: object) -> Credentials:
    """A request's ``credentials``/``inet_credentials``: strings only, bounded."""
    if not isinstance(value, dict):
        raise ProtocolError("credentials must be an object", code=EXIT_BAD_INPUT)
    fields: dict[str, str | None] = {}
    for key in ("username", "password", "domain"):
        item = value.get(key)
        if item is not None and (not isinstance(item, str) or len(item) > 1024):
            raise ProtocolError(
                f"credentials.{key} must be a string of at most 1024 characters",
                code=EXIT_BAD_INPUT,
            )
        fields[key] = item
    return Credentials(**fields)


def _matches(managed: Managed, wanted: str) -> bool:
    session = managed.session
    profile = session.config.profile
    names = {profile.short_name.casefold(), session.config.service_name.casefold()}
    if wanted.casefold() in names:
        return True
    if not wanted.startswith("/"):
        return False
    # Compared as text: resolving the path here would follow a user's links as root.
    return os.path.normpath(wanted) == managed.origin


def _error(message: str, exit_code: int) -> bytes:
    return encode({"ok": False, "error": message, "exit_code": exit_code})


async def _send(stream: anyio.abc.SocketStream, data: bytes) -> bool:
    """Send to a client that may have gone: False when it has (its problem, not the daemon's)."""
    try:
        await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return False
    return True


def _raise_file_limit() -> None:
    """Use the hard limit on open files (the unit sets it): each client and link needs some."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_daemon(
    socket_path: Path,
    state_dir: Path,
    log_dir: Path | None = None,
    keep_ended: float = KEEP_ENDED,
    profile_roots: list[Path] | None = None,
) -> None:
    await Daemon(
        socket_path,
        state_dir,
        log_dir=log_dir,
        keep_ended=keep_ended,
        profile_roots=profile_roots,
    ).serve()


__all__ = [
    "KEEP_ENDED",
    "RESTART_REASON",
    "STOP_REASON",
    "Daemon",
    "DaemonPrompt",
    "run_daemon",
]
