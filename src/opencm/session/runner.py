"""One connection session: the state machine, the action engine and the dialers, together.

:class:`Session` walks the table of :mod:`opencm.session.machine`; each state's work is here:

- pre-init, then (the logon screen is the caller's) pre-connect, pre-dial only when dialing,
  the dial, pre-tunnel only when tunnelling, the tunnel, post-connect, then monitored apps;
- a failing pre-*/post-connect action ends the attempt (→ ``failed``: on-error actions with
  ``%ErrorCode%`` and ``%LastErrorSource%``), as does a dial error or a drop before the end;
- Cancel during an attempt stops it, runs the on-cancel actions and nothing after them (links
  half up are released, silently); Cancel before Connect closes without on-cancel actions;
- redial up to ``RedialCount`` times after ``RedialDelay``, each time with the next alternate
  entry of the stage that failed; ``AutoReconnect`` after a drop;
- disconnect actions run before an orderly disconnect and right after a drop, with
  ``%DisconnectReason%`` (opencm's own macro);
- when the last monitored application exits, the prompt decides; 30 s without an answer
  disconnects.

Executables started at a point are awaited before the session moves on (so points never
overlap); at a fatal point a non-zero exit status is a failure *(opencm)*. Every timer goes
through the injectable :class:`~opencm.session.clock.Clock`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from opencm.actions.api import FATAL_POINTS, ActionPoint, ActionRunner, PointResult, RunContext
from opencm.errors import OpencmError
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, LinkDown, LinkInfo
from opencm.links.registry import load_dialer
from opencm.profile.model import ConnectionType
from opencm.session.clock import Clock, RealClock
from opencm.session.config import SessionConfig
from opencm.session.journal import Journal, JournalEntry
from opencm.session.log import SessionLog
from opencm.session.machine import ATTEMPT_STATES, Event, SessionMachine, State, Transition
from opencm.session.prompt import (
    PROMPT_TIMEOUT,
    Choice,
    DisconnectPrompt,
    TtyPrompt,
    UnattendedPrompt,
)

#: ``%ErrorCode%`` values opencm sets itself (a dialer's own codes come from ``DialError.code``).
ERROR_ACTION_FAILED = 1  # a custom action failed without a return value (crash, not found …)
ERROR_LINK_DROPPED = 2  # a link went down before the connection was complete
ERROR_NO_DIALER = 3  # the entry's dialer is unknown or not on the allow list
ERROR_BAD_ENTRY = 4  # the dialer rejected the entry's settings
ERROR_DIALER_FAILED = 5  # the dialer failed in a way it did not report (a bug in the dialer)

DialerLookup = Callable[[str], Dialer]


def default_dialer_lookup(name: str) -> Dialer:
    """The links' registry (the allow list is enforced there)."""
    return load_dialer(name)


class Outcome(enum.StrEnum):
    DISCONNECTED = "disconnected"  # connected, then an orderly disconnect
    DROPPED = "dropped"  # connected, then the link went down and no reconnect
    FAILED = "failed"  # never connected: errors and no redials left
    CANCELLED = "cancelled"
    CLOSED = "closed"  # cancelled before Connect


class AttemptError(Exception):
    def __init__(self, message: str, *, code: int, source: str, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.source = source
        self.retryable = retryable


@dataclass
class _Link:
    stage: str  # "dial" or "tunnel"
    dialer: Dialer
    info: LinkInfo


class Session:
    def __init__(
        self,
        config: SessionConfig,
        actions: ActionRunner,
        *,
        connection_type: ConnectionType | None = None,
        credentials: Credentials | None = None,
        interactive: bool = True,
        prompt: DisconnectPrompt | None = None,
        dialer_lookup: DialerLookup = default_dialer_lookup,
        clock: Clock | None = None,
        log: SessionLog | None = None,
        journal: Journal | None = None,
        entry: str | None = None,
        session_id: str | None = None,
        owner_uid: int | None = None,
        prompt_timeout: float = PROMPT_TIMEOUT,
        action_timeout: float = 60.0,
        logon: bool = False,
    ) -> None:
        self.config = config
        self.actions = actions
        self.connection_type = config.default_type if connection_type is None else connection_type
        config.check_type(self.connection_type)
        self.preferred_entry = entry
        if entry is not None:
            stage = "tunnel" if self.connection_type.tunnels else "dial"
            config.entries_for(stage, entry)  # raises for an unknown name, before anything runs
        self.credentials = credentials or Credentials()
        self.interactive = interactive
        # Nobody at the screen: the answer is always "Disconnect now" (seed 000).
        self.prompt: DisconnectPrompt = (
            (prompt or TtyPrompt()) if interactive else UnattendedPrompt()
        )
        self.lookup = dialer_lookup
        self.clock = clock or RealClock()
        self.id = session_id or uuid.uuid4().hex[:12]
        self.log = log or SessionLog(None)
        self.journal = journal
        self.owner_uid = os.getuid() if owner_uid is None else owner_uid
        self.prompt_timeout = prompt_timeout
        self.action_timeout = action_timeout
        self.logon = logon
        self.machine = SessionMachine(self.connection_type)
        self.machine.subscribe(self._on_transition)
        self.links: list[_Link] = []
        self.last_error: AttemptError | None = None
        self.disconnect_reason: str | None = None
        self.changed = anyio.Event()  # set (and replaced) on every state change
        self._macros: dict[str, str] = {}
        self._journal_entry: JournalEntry | None = None
        self._cancel_requested = False
        self._stop_requested = False
        self._attempt_scope: anyio.CancelScope | None = None
        self._attempt_drop: LinkDown | None = None
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[tuple[str, Any]](64)
        self._started: list[subprocess.Popen[bytes]] = []
        self._failures = {"dial": 0, "tunnel": 0}
        self._entries: dict[str, DialEntry] = {}

    # -- requests from outside (CLI, daemon, UI) ---------------------------------------------

    @property
    def state(self) -> State:
        return self.machine.state

    def cancel(self) -> bool:
        """The user's Cancel: stops an attempt in progress (on-cancel runs) or closes an idle
        session (no on-cancel). False when there is nothing to cancel (connected: disconnect)."""
        if self.state not in ATTEMPT_STATES and self.state not in (State.PRE_INIT, State.READY):
            return False
        self._cancel_requested = True
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()
        return True

    def disconnect(self, reason: str = "user-disconnect") -> None:
        """Disconnect a connected session; during an attempt this is a Cancel."""
        if self.cancel():
            return
        self._stop_requested = True  # no AutoReconnect after this
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            self._inbox_send.send_nowait(("disconnect", reason))

    def status(self) -> dict[str, Any]:
        tunnel = next((link for link in self.links if link.stage == "tunnel"), None)
        top = tunnel or (self.links[-1] if self.links else None)
        return {
            "session": self.id,
            "profile": str(self.config.profile.cmp_path or self.config.profile.cms_path),
            "service": self.config.service_name,
            "owner_uid": self.owner_uid,
            "state": str(self.state),
            "connection_type": self.connection_type.cli_name,
            "entries": {stage: entry.name for stage, entry in self._entries.items()},
            "links": [
                {
                    "stage": link.stage,
                    "entry": link.info.entry,
                    "interface": link.info.interface,
                    "client_ip": link.info.client_ip,
                    "server_ip": link.info.server_ip,
                    "tunnel_server": link.info.tunnel_server,
                }
                for link in self.links
            ],
            "client_ip": top.info.client_ip if top else None,
            "server_ip": top.info.server_ip if top else None,
            "error": (
                {
                    "code": self.last_error.code,
                    "source": self.last_error.source,
                    "message": str(self.last_error),
                }
                if self.last_error
                else None
            ),
            "disconnect_reason": self.disconnect_reason,
        }

    # -- the whole life of a session -----------------------------------------------------------

    async def run(self, *, connect: bool = True) -> Outcome:
        """Pre-init, then Connect (unless cancelled first), until the session ends."""
        try:
            self.log.write("session", profile=self.status()["profile"], type=self.connection_type)
            try:
                await self._run_point(ActionPoint.PRE_INIT)
            except AttemptError as error:
                self.machine.fire(Event.ERROR)
                await self._on_error(error)
                self.machine.fire(Event.GIVE_UP)
                return Outcome.FAILED
            self.machine.fire(Event.INIT_DONE)
            if self._cancel_requested or not connect:
                self.machine.fire(Event.CANCEL)
                return Outcome.CLOSED
            self.machine.fire(Event.CONNECT)
            return await self._connection_loop()
        finally:
            self._reap()
            self._inbox_send.close()
            self._inbox.close()
            self.log.write("session-end", state=str(self.state))
            self.log.close()

    async def _connection_loop(self) -> Outcome:
        redials_left = self.config.redial_count
        self._macros["AutoRedial"] = "0"
        while True:
            error = await self._attempt()
            if self._cancel_requested and self.state in ATTEMPT_STATES:
                return await self._cancelled()
            if error is not None:
                self.machine.fire(Event.ERROR)
                await self._on_error(error)
                await self._release_links()
                if not (error.retryable and redials_left > 0):
                    self.machine.fire(Event.GIVE_UP)
                    await self._finish_journal()
                    return Outcome.FAILED
                redials_left -= 1
                self.machine.fire(Event.REDIAL)  # → redial-wait
                with anyio.CancelScope() as scope:
                    self._attempt_scope = scope
                    if not self._cancel_requested:
                        await self.clock.sleep(self.config.redial_delay)
                self._attempt_scope = None
                if self._cancel_requested:
                    return await self._cancelled()
                self._macros["AutoRedial"] = "1"
                self.machine.fire(Event.REDIAL)  # → pre-dial or pre-tunnel
                continue
            outcome = await self._connected()
            if outcome is Outcome.DROPPED and self._reconnects():
                redials_left = self.config.redial_count
                self._macros["AutoRedial"] = "1"
                self.machine.fire(Event.RECONNECT)
                continue
            return outcome

    # -- one attempt: from the current state up to connected ----------------------------------

    async def _attempt(self) -> AttemptError | None:
        self._attempt_drop = None
        with anyio.CancelScope() as scope:
            self._attempt_scope = scope
            if self._cancel_requested:
                scope.cancel()
            try:
                while self.state is not State.CONNECTED:
                    await self._step()
            except AttemptError as error:
                return error
            finally:
                self._attempt_scope = None
        if self._attempt_drop is not None and not self._cancel_requested:
            down = self._attempt_drop
            return AttemptError(
                f"the link went down before the connection was complete: {down.reason}"
                + (f" ({down.detail})" if down.detail else ""),
                code=ERROR_LINK_DROPPED,
                source=self.links[-1].dialer.name if self.links else "link",
                retryable=True,
            )
        return None

    async def _step(self) -> None:
        state = self.state
        if state is State.PRE_CONNECT:
            await self._run_point(ActionPoint.PRE_CONNECT)
            self.machine.fire(Event.ACTIONS_DONE)
        elif state is State.PRE_DIAL:
            await self._run_point(ActionPoint.PRE_DIAL)
            self.machine.fire(Event.ACTIONS_DONE)
        elif state is State.DIALING:
            await self._bring_up("dial")
            self.machine.fire(Event.LINK_UP)
        elif state is State.PRE_TUNNEL:
            await self._run_point(ActionPoint.PRE_TUNNEL)
            self.machine.fire(Event.ACTIONS_DONE)
        elif state is State.TUNNELLING:
            await self._bring_up("tunnel")
            self.machine.fire(Event.LINK_UP)
        elif state is State.POST_CONNECT:
            await self._phonebook_update()
            await self._run_point(ActionPoint.POST_CONNECT)
            self._arm_disconnect()
            self.machine.fire(Event.ACTIONS_DONE)
        else:  # pragma: no cover - the table allows nothing else inside an attempt
            raise AssertionError(f"no attempt work for state {state}")

    def _entry_for(self, stage: str) -> DialEntry:
        wanted_stage = "tunnel" if self.connection_type.tunnels else "dial"
        preferred = self.preferred_entry if stage == wanted_stage else None
        entries = self.config.entries_for(stage, preferred)
        return entries[self._failures[stage] % len(entries)]

    async def _bring_up(self, stage: str) -> None:
        entry = self._entry_for(stage)
        self._entries[stage] = entry
        self._set_link_macros(stage, entry, None)
        try:
            dialer = self.lookup(entry.dialer)
        except OpencmError as error:
            raise AttemptError(
                str(error), code=ERROR_NO_DIALER, source=entry.dialer, retryable=False
            ) from error
        self.log.write("dial", stage=stage, entry=entry.name, dialer=entry.dialer)
        try:
            info, journal_error = await self._dial_journaled(dialer, entry)
        except DialError as error:
            self._failures[stage] += 1
            self.log.write("dial-error", stage=stage, entry=entry.name, code=error.code)
            raise AttemptError(
                str(error), code=error.code, source=dialer.name, retryable=error.retryable
            ) from error
        except OpencmError as error:
            self.log.write("dial-error", stage=stage, entry=entry.name, code=ERROR_BAD_ENTRY)
            raise AttemptError(
                str(error), code=ERROR_BAD_ENTRY, source=dialer.name, retryable=False
            ) from error
        except Exception as error:  # a dialer's bug ends the attempt, not the daemon
            self._failures[stage] += 1
            self.log.write("dial-error", stage=stage, entry=entry.name, code=ERROR_DIALER_FAILED)
            raise AttemptError(
                f"the {dialer.name} dialer failed: {type(error).__name__}: {error}",
                code=ERROR_DIALER_FAILED,
                source=dialer.name,
                retryable=True,
            ) from error
        if journal_error is not None:
            # A session that cannot journal must not keep a link it could not clean up after a
            # crash; the error is opencm's (disk, state folder), not the dialer's.
            with anyio.CancelScope(shield=True):
                await dialer.hang_up(info)
            raise journal_error
        self.links.append(_Link(stage, dialer, info))
        self._set_link_macros(stage, entry, info)
        if self._journal_entry is not None:
            self._journal_entry.add_link(stage, info, dialer.name, entry.settings.get("netns"))
        self.log.write(
            "link-up",
            stage=stage,
            entry=info.entry,
            interface=info.interface,
            client_ip=info.client_ip,
            server_ip=info.server_ip,
        )

    async def _dial_journaled(
        self, dialer: Dialer, entry: DialEntry
    ) -> tuple[LinkInfo, Exception | None]:
        """Dial while a worker thread writes the journal entry (its fsyncs take 5–20 ms, and
        more on a busy disk); return the link and the journal's error, once both are done.

        Recovery sees the same as when the entry was written first: the link's processes are
        journaled after the dial either way (``add_link``), so an entry without links is all a
        crash in between can leave."""
        journal_error: list[Exception] = []

        def write_journal() -> None:
            try:
                self._journal()
            except Exception as error:  # the caller raises it once the dial has settled
                journal_error.append(error)

        dial_error: Exception | None = None
        info: LinkInfo | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, write_journal)
            try:
                info = await dialer.dial(entry, self.credentials, self._on_link_down)
            except Exception as error:  # re-raised as is once the journal write has finished
                dial_error = error
        if dial_error is not None:
            raise dial_error
        assert info is not None
        return info, (journal_error[0] if journal_error else None)

    def _set_link_macros(self, stage: str, entry: DialEntry, info: LinkInfo | None) -> None:
        # The addresses are the newest link's: the dial-up line's until the tunnel is up (what
        # pre-tunnel actions see), then the tunnel's.
        if stage == "dial":
            self._macros["DialRasEntry"] = entry.name
        else:
            self._macros["TunnelRasEntry"] = entry.name
            address = (info.tunnel_server if info else None) or self.config.addresses.get(
                entry.name
            )
            if address:
                self._macros["TunnelServerAddress"] = address
        if info is not None:
            if info.client_ip:
                self._macros["ClientIPAddress"] = info.client_ip
            if info.server_ip:
                self._macros["ServerIPAddress"] = info.server_ip

    # -- link-down notifications from dialers --------------------------------------------------

    def _on_link_down(self, down: LinkDown) -> None:
        self.log.write("link-down", reason=str(down.reason), detail=down.detail, state=self.state)
        if self.state in ATTEMPT_STATES:
            if self._attempt_drop is None:
                self._attempt_drop = down
            if self._attempt_scope is not None:
                self._attempt_scope.cancel()
        elif self.state in (State.CONNECTED, State.PROMPTING):
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                self._inbox_send.send_nowait(("link-down", down))

    # -- connected: monitored apps, prompt, disconnect, drop -----------------------------------

    async def _connected(self) -> Outcome:
        drop: LinkDown | None = None
        reason = "user-disconnect"
        async with anyio.create_task_group() as group:
            processes = await self._start_monitored()
            if processes:
                group.start_soon(self._watch_apps, processes)
            while True:
                kind, value = await self._inbox.receive()
                if kind == "disconnect" and self.state in (State.CONNECTED, State.PROMPTING):
                    reason = str(value)
                    self.machine.fire(Event.USER_DISCONNECT)
                    break
                if kind == "apps-exited" and self.state is State.CONNECTED:
                    self.machine.fire(Event.LAST_APP_EXITED)
                    group.start_soon(self._ask)
                elif kind == "stay" and self.state is State.PROMPTING:
                    self.machine.fire(Event.STAY_ONLINE)
                elif kind == "prompt-timeout" and self.state is State.PROMPTING:
                    reason = "prompt-timeout"
                    self.machine.fire(Event.PROMPT_TIMEOUT)
                    break
                elif kind == "link-down":
                    assert isinstance(value, LinkDown)
                    drop = value
                    self.machine.fire(Event.LINK_DOWN)
                    break
            group.cancel_scope.cancel()
        if drop is not None:
            # Seed 000: disconnect actions run right after an unexpected drop too.
            await self._run_disconnect_actions(str(drop.reason))
            await self._release_links()
            if self._reconnects():
                return Outcome.DROPPED
            self.machine.fire(Event.GIVE_UP)
            await self._finish_journal()
            return Outcome.DROPPED
        await self._run_disconnect_actions(reason)
        await self._release_links()
        self.machine.fire(Event.HUNG_UP)
        await self._finish_journal()
        return Outcome.DISCONNECTED

    def _reconnects(self) -> bool:
        return self.config.auto_reconnect and not self._stop_requested

    async def _start_monitored(self) -> list[subprocess.Popen[bytes]]:
        result = await anyio.to_thread.run_sync(
            self.actions.run_point, ActionPoint.MONITORED, self._context()
        )
        self._log_point(result)
        return [r.process for r in result.results if r.process is not None]

    async def _watch_apps(self, processes: list[subprocess.Popen[bytes]]) -> None:
        async with anyio.create_task_group() as group:
            for process in processes:
                group.start_soon(self._wait_process, process)
        self.log.write("monitored-exited", pids=[p.pid for p in processes])
        await self._inbox_send.send(("apps-exited", None))

    async def _ask(self) -> None:
        answer: tuple[str, Any] = ("prompt-timeout", None)
        async with anyio.create_task_group() as group:

            async def ask() -> None:
                nonlocal answer
                choice = await self.prompt.ask(self.config.service_name, self.prompt_timeout)
                answer = (
                    ("stay", None)
                    if choice is Choice.STAY_ONLINE
                    else ("disconnect", "monitored-apps-exited")
                )
                group.cancel_scope.cancel()

            async def timer() -> None:
                await self.clock.sleep(self.prompt_timeout)
                group.cancel_scope.cancel()

            group.start_soon(ask)
            group.start_soon(timer)
        self.log.write("prompt-answer", answer=answer[0])
        await self._inbox_send.send(answer)

    async def _run_disconnect_actions(self, reason: str) -> None:
        self.disconnect_reason = reason
        entry = self._journal_entry
        # Exactly once: claim on disk before running (see journal.py).
        if entry is not None and not entry.claim_disconnect():
            self.log.write("disconnect-skipped", reason="already claimed")
            return
        with anyio.CancelScope(shield=True):
            await self._run_point(ActionPoint.DISCONNECT, {"DisconnectReason": reason})
        if entry is not None:
            entry.set_disconnect("done")

    # -- cancel and error ----------------------------------------------------------------------

    async def _cancelled(self) -> Outcome:
        self.machine.fire(Event.CANCEL)
        with anyio.CancelScope(shield=True):
            await self._run_point(ActionPoint.ON_CANCEL)
            await self._release_links()
            await self._finish_journal()
        return Outcome.CANCELLED

    async def _on_error(self, error: AttemptError) -> None:
        self.last_error = error
        self.log.write("error", code=error.code, source=error.source, message=str(error))
        with anyio.CancelScope(shield=True):
            await self._run_point(
                ActionPoint.ON_ERROR,
                {"ErrorCode": str(error.code), "LastErrorSource": error.source},
            )

    async def _release_links(self) -> None:
        with anyio.CancelScope(shield=True):
            while self.links:
                link = self.links.pop()
                try:
                    await link.dialer.hang_up(link.info)
                    self.log.write("hang-up", stage=link.stage, entry=link.info.entry)
                except Exception as error:  # a dialer's bug must not keep other links up
                    self.log.write("hang-up-error", entry=link.info.entry, error=str(error))
            for name in ("ClientIPAddress", "ServerIPAddress"):
                self._macros.pop(name, None)  # no stale addresses in the next attempt
            if self._journal_entry is not None and self._journal_entry.data["links"]:
                self._journal_entry.data["links"] = []
                self._journal_entry.save()

    # -- journal -------------------------------------------------------------------------------

    def _journal(self) -> None:
        if self.journal is None:
            return
        macros = self._context().macros
        if self._journal_entry is None:
            profile = self.config.profile.cmp_path or self.config.profile.cms_path
            self._journal_entry = self.journal.open(
                self.id,
                profile=str(profile),
                connection_type=int(self.connection_type),
                interactive=self.interactive,
                owner_uid=self.owner_uid,
                macros=macros,
            )
            return
        if self._journal_entry.data["disconnect"] == "done":
            self._journal_entry.data["disconnect"] = "idle"  # reconnecting after a drop
        self._journal_entry.set_macros(macros)

    def _arm_disconnect(self) -> None:
        if self._journal_entry is not None:
            self._journal_entry.data["macros"] = dict(self._context().macros)
            self._journal_entry.set_disconnect("armed")

    async def _finish_journal(self) -> None:
        if self._journal_entry is not None and not self.links:
            self._journal_entry.remove()
            self._journal_entry = None

    # -- running points ------------------------------------------------------------------------

    def _context(self, extra: Mapping[str, str] | None = None) -> RunContext:
        macros = dict(self.config.profile.base_macros())
        if self.credentials.username:
            macros["UserName"] = self.credentials.username
            macros["InetUserName"] = self.credentials.username
        if self.credentials.domain:
            macros["Domain"] = self.credentials.domain
        macros.update(self._macros)
        macros["ConnectionType"] = str(int(self.connection_type))
        macros.update(extra or {})
        return RunContext(
            macros=macros,
            connection_type=self.connection_type,
            interactive=self.interactive,
            profile_dir=self.config.profile.profile_dir,
            timeout=self.action_timeout,
            logon=self.logon,
        )

    async def _phonebook_update(self) -> None:
        """The built-in first post-connect action (seed 002): bounded, never fails the attempt."""
        if self.config.profile.phonebook_url is None:
            return  # no PBS: the PBS client (and its HTTP stack) is not even imported
        from opencm.pbs.autoupdate import auto_update

        result = await anyio.to_thread.run_sync(auto_update, self.config.profile)
        self.log.write("phonebook-update", result=result.result, message=result.message)

    async def _run_point(self, point: ActionPoint, extra: Mapping[str, str] | None = None) -> None:
        """Run one point (in a worker thread: libraries block) and wait for what it started."""
        result = await anyio.to_thread.run_sync(self.actions.run_point, point, self._context(extra))
        for action in result.results:
            if action.process is not None:
                self._started.append(action.process)
                action.return_value = await self._wait_process(action.process)
                if action.return_value != 0 and point in FATAL_POINTS and action.ok:
                    action.ok = False
                    action.message = (
                        f"Custom Action {action.description} failed {action.return_value}"
                    )
        self._log_point(result)
        failed = result.failed
        if failed is not None and point in FATAL_POINTS:
            raise AttemptError(
                failed.message or f"Custom Action {failed.description} failed",
                code=failed.return_value
                if failed.return_value not in (None, 0)
                else ERROR_ACTION_FAILED,
                source=f"Custom Action {failed.description}",
                retryable=False,
            )

    async def _wait_process(self, process: subprocess.Popen[bytes]) -> int:
        # Polling keeps the wait cancellable without leaving threads behind.
        while True:
            code = process.poll()
            if code is not None:
                return code
            await anyio.sleep(0.02)

    def _log_point(self, result: PointResult) -> None:
        for action in result.results:
            self.log.write(
                "action",
                point=str(result.point),
                index=action.index,
                description=action.description,
                argv=list(action.argv),
                ran=action.ran,
                ok=action.ok,
                exit_code=action.return_value,
                duration=round(action.duration, 4),
                message=action.message,
                skipped=action.skip_reason,
            )

    def _on_transition(self, row: Transition) -> None:
        self.log.write("state", **{"from": str(row.source), "to": str(row.target)}, event=row.event)
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    def _reap(self) -> None:
        for process in self._started:
            process.poll()


__all__ = [
    "ERROR_ACTION_FAILED",
    "ERROR_BAD_ENTRY",
    "ERROR_DIALER_FAILED",
    "ERROR_LINK_DROPPED",
    "ERROR_NO_DIALER",
    "AttemptError",
    "DialerLookup",
    "Outcome",
    "Session",
    "default_dialer_lookup",
]
