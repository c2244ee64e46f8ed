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
import os
import pwd
import resource
import shutil
import signal
import traceback
from collections import Counter
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
from opencm.errors import EXIT_BAD_INPUT, EXIT_PROBLEMS, OpencmError, RefusedError
from opencm.kit.roots import system_config_dir
from opencm.links.api import Credentials, LinkInfo
from opencm.safepath import Caller
from opencm.session.clock import Clock
from opencm.session.factory import Prepared, open_session, prepare, run_journaled_disconnect
from opencm.session.journal import Journal, recover
from opencm.session.machine import State
from opencm.session.prompt import Choice
from opencm.session.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    ProtocolError,
    decode,
    encode,
    peer_credentials,
    validate_request,
)
from opencm.session.runner import DialerLookup, Outcome, Session, default_dialer_lookup
from opencm.session.snapshot import Snapshot, snapshot_profile

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
        self.asking = False
        self._answer: Choice | None = None
        self._answered = anyio.Event()

    async def ask(self, service_name: str, seconds: float) -> Choice:
        self.asking, self._answer, self._answered = True, None, anyio.Event()
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
    #: The real path of the profile the client named (a user's session runs from a copy).
    origin: str = ""
    snapshot: Snapshot | None = None
    ended: anyio.Event = field(default_factory=anyio.Event)
    outcome: Outcome | None = None

    @property
    def owner(self) -> int | None:
        return self.session.owner_uid

    def status(self) -> dict[str, Any]:
        data = self.session.status()
        data["profile"] = self.origin or data["profile"]
        data["prompt"] = self.prompt.asking
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
        profile_roots: list[Path] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.state_dir = state_dir
        self.lookup = dialer_lookup
        self.clock = clock
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
                self.journal, RESTART_REASON, run_journaled_disconnect, self._hang_up_leftover
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
        while True:
            try:
                with anyio.fail_after(IDLE_TIMEOUT):
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
                async for answer in self._handle(request, uid):
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

    async def _handle(self, request: dict[str, Any], uid: int) -> AsyncIterator[dict[str, Any]]:
        if os.geteuid() != 0 and uid not in (0, os.geteuid()):
            # A user's own daemon serves that user only: it would run others' actions as them.
            raise RefusedError(f"this opencm daemon serves uid {os.geteuid()} only")
        body = validate_request(request)
        op = request["op"]
        if op == "hello":
            yield {"ok": True, "version": PROTOCOL_VERSION, "uid": uid}
        elif op == "status":
            yield {"ok": True, "sessions": self._visible(uid)}
        elif op == "watch":
            async for answer in self._watch(uid):
                yield answer
        elif op == "connect":
            async for answer in self._connect(body, uid):
                yield answer
        elif op in ("cancel", "disconnect"):
            managed = self._target(body, uid)
            if op == "cancel":
                if not managed.session.cancel():
                    raise RefusedError(
                        f"nothing to cancel: session {managed.session.id} is "
                        f"{managed.session.state} (use disconnect)"
                    )
            else:
                managed.session.disconnect("user-disconnect")
            if body.get("wait") is not False:
                await managed.ended.wait()
            yield {"ok": True, "session": managed.status()}
        else:
            assert op == "answer", op  # validate_request knows no other op
            managed = self._target(body, uid)
            managed.prompt.answer(Choice(body["choice"]))
            yield {"ok": True}

    def _visible(self, uid: int) -> list[dict[str, Any]]:
        return [
            managed.status()
            for managed in self.sessions.values()
            if uid == 0 or managed.session.owner_uid == uid
        ]

    def _target(self, request: dict[str, Any], uid: int) -> Managed:
        mine = [
            managed
            for managed in self.sessions.values()
            if uid == 0 or managed.session.owner_uid == uid
        ]
        wanted_id = request.get("session")
        wanted_profile = request.get("profile")
        if wanted_id:
            found = [m for m in self.sessions.values() if m.session.id == wanted_id]
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

    async def _connect(self, body: dict[str, Any], uid: int) -> AsyncIterator[dict[str, Any]]:
        creds = body.get("credentials") or {}
        prompt = DaemonPrompt(self)
        prepared, origin, snapshot = await self._open_profile(body["profile"], uid)
        try:
            busy = [m for m in self.sessions.values() if m.origin == origin and m.owner == uid]
            if busy:
                raise RefusedError(
                    f"{prepared.config.service_name} already has session "
                    f"{busy[0].session.id} ({busy[0].session.state})"
                )
            kind = body.get("type")
            session, engine = open_session(
                prepared,
                connection_type=ConnectionType.from_name(kind) if kind else None,
                entry=body.get("entry") or None,
                credentials=Credentials(
                    username=creds.get("username"),
                    password=creds.get("password"),
                    domain=creds.get("domain"),
                ),
                interactive=not body.get("unattended"),
                prompt=prompt,
                dialer_lookup=self.lookup,
                clock=self.clock,
                journal=self.journal,
                log_dir=self.log_dir,
                owner_uid=uid,
                logon=bool(body.get("logon")) and uid == 0,
            )
        except BaseException:
            if snapshot is not None:
                snapshot.remove()
            raise
        managed = Managed(session, engine, prompt, origin=origin, snapshot=snapshot)
        self.sessions[session.id] = managed
        session.machine.subscribe(lambda _row: self.notify())
        assert self._group is not None
        self._group.start_soon(self._run, managed)
        if body.get("wait") is False:
            yield {"ok": True, "session": managed.status()}
            return
        last = None
        while True:
            changed = session.changed
            if session.state is not last:
                last = session.state
                yield {"event": "state", "session": session.id, "state": str(last)}
            if last is State.CONNECTED or managed.ended.is_set():
                break
            with anyio.move_on_after(1):
                await changed.wait()
        yield {"ok": True, "session": managed.status()}

    async def _run(self, managed: Managed) -> None:
        try:
            managed.outcome = await managed.session.run()
        except Exception as error:  # one session's bug must not take the daemon down
            managed.outcome = Outcome.FAILED
            managed.session.log.write("session-crashed", error=f"{type(error).__name__}: {error}")
            print(f"opencm daemon: session {managed.session.id} failed: {error!r}", flush=True)
        finally:
            managed.engine.close()
            if managed.snapshot is not None:
                managed.snapshot.remove()
            self.sessions.pop(managed.session.id, None)
            managed.ended.set()
            # A client waiting on connect sees the final state through the ended event.
            managed.session.changed.set()
            self.notify()

    async def _open_profile(self, path: str, uid: int) -> tuple[Prepared, str, Snapshot | None]:
        """Read the profile for ``uid`` in a worker thread, bounded in time: for a user of the
        root daemon from a checked private copy (opencm.session.snapshot), otherwise as is.
        Returns what the session needs, the profile's real path, and the copy to remove."""
        crossing = os.geteuid() == 0 and uid != 0

        def work() -> tuple[Prepared, str, Snapshot | None]:
            if not crossing:
                prepared = prepare(path)
                where = prepared.profile.cmp_path or prepared.profile.cms_path
                return prepared, str(where.resolve()), None
            snapshot = snapshot_profile(
                path, Caller.of(uid, _gid_of(uid)), self.profile_roots, self.state_dir / "profiles"
            )
            try:
                return prepare(snapshot.target), str(snapshot.origin), snapshot
            except OpencmError as error:
                snapshot.remove()
                raise _for_caller(error, snapshot) from error
            except BaseException:
                snapshot.remove()
                raise

        done = anyio.Event()
        result: list[tuple[Prepared, str, Snapshot | None]] = []
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
    profile_roots: list[Path] | None = None,
) -> None:
    await Daemon(socket_path, state_dir, log_dir=log_dir, profile_roots=profile_roots).serve()


__all__ = [
    "RESTART_REASON",
    "STOP_REASON",
    "Daemon",
    "DaemonPrompt",
    "run_daemon",
]
