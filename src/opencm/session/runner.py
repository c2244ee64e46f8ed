"""One connection session: the state machine, the action engine and the dialers, together.

:class:`Session` walks the table of :mod:`opencm.session.machine`; each state's work is here.
The parts a session is made of live beside it: :mod:`~opencm.session.macros` (the macros it sets),
:mod:`~opencm.session.journal` (what it started, on disk, for crash recovery),
:mod:`~opencm.session.events` (what reaches it while connected),
:mod:`~opencm.session.status` (what clients see) and :mod:`~opencm.session.processes` (waiting
for the programs it started).
"""

from __future__ import annotations

import contextlib
import enum
import os
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from opencm.actions.api import (
    FATAL_POINTS,
    ActionPoint,
    ActionResult,
    ActionRunner,
    PointResult,
    RunContext,
)
from opencm.errors import OpencmError
from opencm.links import proc
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, LinkDown, LinkInfo
from opencm.session import events
from opencm.session.config import SessionConfig
from opencm.session.credentials import stage_credentials
from opencm.session.journal import DialStarts, JournalEntry
from opencm.session.log import SessionLog
from opencm.session.machine import (
    ATTEMPT_STATES,
    Event,
    InvalidTransition,
    SessionMachine,
    State,
    Transition,
)
from opencm.session.macros import SessionMacros
from opencm.session.options import (
    ConnectOptions,
    DialerLookup,
    SessionDeps,
    default_dialer_lookup,
)
from opencm.session.processes import StartedProcesses, wait_all_exited, wait_for_exit
from opencm.session.prompt import Choice, DisconnectPrompt, TtyPrompt, UnattendedPrompt
from opencm.session.status import ErrorView, LinkView, SessionSnapshot, status_view

#: ``%ErrorCode%`` values opencm sets itself (a dialer's own codes come from ``DialError.code``).
ERROR_ACTION_FAILED = 1  # a custom action failed without a return value (crash, not found …)
ERROR_LINK_DROPPED = 2  # a link went down before the connection was complete
ERROR_NO_DIALER = 3  # the entry's dialer is unknown or not on the allow list
ERROR_BAD_ENTRY = 4  # the dialer rejected the entry's settings
ERROR_DIALER_FAILED = 5  # the dialer failed in a way it did not report (a bug in the dialer)

#: The attempt's states that run the custom actions of one point, then fire ACTIONS_DONE.
_ACTION_STATES = {
    State.PRE_CONNECT: ActionPoint.PRE_CONNECT,
    State.PRE_DIAL: ActionPoint.PRE_DIAL,
    State.PRE_TUNNEL: ActionPoint.PRE_TUNNEL,
}
#: The attempt's states that bring up the link of one stage, then fire LINK_UP.
_LINK_STATES = {State.DIALING: "dial", State.TUNNELLING: "tunnel"}


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
    """One connection of one service profile, from pre-init to its end.

    The life of a connection (Microsoft's "How Connection Manager Works", and the points of its
    "Custom Actions"), as :meth:`run` lives it:

    1. **pre-init** actions run; the logon screen shows now: with ``run(hold_at_logon=True)``
       the session waits in ``ready`` for :meth:`submit_logon` (the credentials typed there),
       else the credentials are the caller's, given in :class:`ConnectOptions`. Cancel here
       closes the session without on-cancel actions (:attr:`Outcome.CLOSED`).
    2. **Connect** starts an *attempt*: pre-connect actions; then, when the connection dials
       (dial-up, double dial), pre-dial actions and the dial-up link; then, when it tunnels
       (direct, double dial), pre-tunnel actions and the tunnel; then the built-in phone-book
       update and the post-connect actions. Each link comes from a dialer the registry allows
       (``SessionDeps.dialer_lookup``), and is journaled so a restarted daemon can clean up.
    3. A failing pre-*/post-connect action, a dial error or a link dropping before the end
       fails the attempt: on-error actions run with ``%ErrorCode%`` and ``%LastErrorSource%``,
       the links are released, and the session redials up to ``RedialCount`` times after
       ``RedialDelay`` (each time the next alternate entry of the stage that failed), or gives
       up (:attr:`Outcome.FAILED`).
    4. Cancel during an attempt stops it: on-cancel actions run, and nothing after them; links
       half up are released silently (:attr:`Outcome.CANCELLED`).
    5. **Connected**: monitored applications start. The session now waits on its inbox
       (:mod:`opencm.session.events`): a disconnect request, the last monitored application
       exiting (then "Stay online?" is asked; 30 s without an answer disconnects), or a link
       dropping.
    6. Disconnect actions run before an orderly disconnect and right after a drop, with
       ``%DisconnectReason%`` (opencm's own macro), exactly once even across a daemon crash
       (the journal's claim). After a drop ``AutoReconnect`` starts a new attempt; otherwise
       the session ends (:attr:`Outcome.DISCONNECTED` or :attr:`Outcome.DROPPED`).

    The transition table in :mod:`opencm.session.machine` decides every move; this class only
    fires its events and does the work each state stands for. Executables and documents started
    at a point run asynchronously, as Microsoft's "Custom Actions" says: the session goes on
    without waiting and their exit status does not count; an action with opencm's ``N&Wait``
    is waited for up to that many seconds, and then, at a fatal point, a non-zero exit status
    or still running is a failure. Libraries and Python actions always run to their end. Every
    timer goes through the injectable :class:`~opencm.clock.Clock`.

    From outside (CLI, daemon, front ends): :meth:`cancel`, :meth:`disconnect`, :meth:`status`
    or :meth:`snapshot`, :attr:`state`, and :attr:`changed` (an event set on every state change).
    """

    def __init__(
        self,
        config: SessionConfig,
        actions: ActionRunner,
        options: ConnectOptions | None = None,
        deps: SessionDeps | None = None,
    ) -> None:
        options = options or ConnectOptions()
        deps = deps or SessionDeps()
        self.config = config
        self.actions = actions
        self.options = options
        self.connection_type = (
            config.default_type if options.connection_type is None else options.connection_type
        )
        config.check_type(self.connection_type)
        if options.entry is not None:
            stage = "tunnel" if self.connection_type.tunnels else "dial"
            config.entries_for(stage, options.entry)  # raises for an unknown name, before anything
        self.credentials = options.credentials
        # What each link gets: the realm applied, Internet or logon credentials
        # (opencm.session.credentials.stage_credentials).
        self._stage_credentials = stage_credentials(
            config.profile, self.connection_type, self.credentials, options.inet_credentials
        )
        self.interactive = options.interactive
        # Nobody at the screen: the answer is always "Disconnect now" (Microsoft's "Custom
        # Actions": the prompt is for an interactive user).
        self.prompt: DisconnectPrompt = (
            (deps.prompt or TtyPrompt()) if options.interactive else UnattendedPrompt()
        )
        self.lookup: DialerLookup = deps.dialer_lookup
        self.clock = deps.clock
        self.id = options.session_id or uuid.uuid4().hex[:12]
        self.log = deps.log or SessionLog(None)
        self.journal = deps.journal
        self.owner_uid = os.getuid() if options.owner_uid is None else options.owner_uid
        self.machine = SessionMachine(self.connection_type)
        self.machine.subscribe(self._on_transition)
        self.links: list[_Link] = []
        self.last_error: AttemptError | None = None
        self.disconnect_reason: str | None = None
        self.changed = anyio.Event()  # set (and replaced) on every state change
        self.macros = SessionMacros(
            lambda: {**config.profile.base_macros(), **config.dial_macros()},
            self.credentials,
            self.connection_type,
            config.addresses,
            inet_credentials=options.inet_credentials if self.connection_type.dials else None,
        )
        self._journal_entry: JournalEntry | None = None
        self._cancel_requested = False
        self._stop_requested = False
        self._logon_done = anyio.Event()
        self._attempt_scope: anyio.CancelScope | None = None
        self._attempt_drop: LinkDown | None = None
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[events.InboxEvent](64)
        self._started = StartedProcesses()
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
        self._logon_done.set()
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()
        return True

    def submit_logon(
        self, credentials: Credentials | None = None, inet_credentials: Credentials | None = None
    ) -> None:
        """The logon screen's Connect, for a session run with ``hold_at_logon``: the user's
        credentials (if any) and a double dial's Internet credentials, then the connection goes
        on from ``ready``."""
        if self.state is not State.READY or self._logon_done.is_set():
            raise InvalidTransition(f"not at the logon screen: the session is {self.state}")
        if credentials is not None or inet_credentials is not None:
            self.credentials = credentials or self.credentials
            inet = inet_credentials if self.connection_type.dials else None
            self._stage_credentials = stage_credentials(
                self.config.profile, self.connection_type, self.credentials, inet_credentials
            )
            self.macros.set_credentials(self.credentials, inet)
        self._logon_done.set()

    def disconnect(self, reason: str = "user-disconnect") -> None:
        """Disconnect a connected session; during an attempt this is a Cancel."""
        if self.cancel():
            return
        self._stop_requested = True  # no AutoReconnect after this
        self._post(events.Disconnect(reason))

    def snapshot(self) -> SessionSnapshot:
        profile = self.config.profile
        error = self.last_error
        return SessionSnapshot(
            session=self.id,
            profile=str(profile.cmp_path or profile.cms_path),
            service=self.config.service_name,
            owner_uid=self.owner_uid,
            state=self.state,
            connection_type=self.connection_type,
            entries={stage: entry.name for stage, entry in self._entries.items()},
            links=tuple(
                LinkView(
                    stage=link.stage,
                    entry=link.info.entry,
                    interface=link.info.interface,
                    client_ip=link.info.client_ip,
                    server_ip=link.info.server_ip,
                    tunnel_server=link.info.tunnel_server,
                )
                for link in self.links
            ),
            error=ErrorView(error.code, error.source, str(error)) if error else None,
            disconnect_reason=self.disconnect_reason,
        )

    def status(self) -> dict[str, Any]:
        """The status as JSON-ready data (``docs/daemon-protocol.md``)."""
        return status_view(self.snapshot())

    def _post(self, event: events.InboxEvent) -> None:
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            self._inbox_send.send_nowait(event)

    # -- the whole life of a session -----------------------------------------------------------

    async def run(self, *, connect: bool = True, hold_at_logon: bool = False) -> Outcome:
        """Pre-init, then Connect (unless cancelled first), until the session ends.

        With ``hold_at_logon`` the session waits in ``ready`` (the logon screen, shown after
        pre-init as "How Connection Manager Works" orders it) until :meth:`submit_logon` or
        Cancel."""
        try:
            self.log.write("session", profile=self.snapshot().profile, type=self.connection_type)
            try:
                await self._run_point(ActionPoint.PRE_INIT)
            except AttemptError as error:
                self.machine.fire(Event.ERROR)
                await self._on_error(error)
                self.machine.fire(Event.GIVE_UP)
                return Outcome.FAILED
            self.machine.fire(Event.INIT_DONE)
            if hold_at_logon:
                await self._logon_done.wait()
            if self._cancel_requested or not connect:
                self.machine.fire(Event.CANCEL)
                return Outcome.CLOSED
            self.machine.fire(Event.CONNECT)
            return await self._connection_loop()
        finally:
            self._started.reap()
            self._inbox_send.close()
            self._inbox.close()
            self.log.write("session-end", state=str(self.state))
            self.log.close()

    async def _connection_loop(self) -> Outcome:
        redials_left = self.config.redial_count
        self.macros.set_auto_redial(False)
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
                    self._finish_journal()
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
                self.macros.set_auto_redial(True)
                self.machine.fire(Event.REDIAL)  # → pre-dial or pre-tunnel
                continue
            outcome = await self._connected()
            if outcome is Outcome.DROPPED and self._reconnects():
                redials_left = self.config.redial_count
                self.macros.set_auto_redial(True)
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
        if (point := _ACTION_STATES.get(state)) is not None:
            await self._run_point(point)
            self.machine.fire(Event.ACTIONS_DONE)
        elif (stage := _LINK_STATES.get(state)) is not None:
            await self._bring_up(stage)
            self.machine.fire(Event.LINK_UP)
        elif state is State.POST_CONNECT:
            await self._phonebook_update()
            await self._run_point(ActionPoint.POST_CONNECT)
            if self._journal_entry is not None:
                self._journal_entry.arm(self._context().macros)
            self.machine.fire(Event.ACTIONS_DONE)
        else:  # pragma: no cover - the table allows nothing else inside an attempt
            raise AssertionError(f"no attempt work for state {state}")

    def _entry_for(self, stage: str) -> DialEntry:
        wanted_stage = "tunnel" if self.connection_type.tunnels else "dial"
        preferred = self.options.entry if stage == wanted_stage else None
        entries = self.config.entries_for(stage, preferred)
        return entries[self._failures[stage] % len(entries)]

    async def _bring_up(self, stage: str) -> None:
        entry = self._entry_for(stage)
        self._entries[stage] = entry
        self.macros.set_link(stage, entry, None)
        try:
            dialer = self.lookup(entry.dialer)
        except OpencmError as error:
            raise AttemptError(
                str(error), code=ERROR_NO_DIALER, source=entry.dialer, retryable=False
            ) from error
        self.log.write("dial", stage=stage, entry=entry.name, dialer=entry.dialer)
        try:
            info, journal_error = await self._dial_journaled(dialer, entry, stage)
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
        self.macros.set_link(stage, entry, info)
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
        self, dialer: Dialer, entry: DialEntry, stage: str
    ) -> tuple[LinkInfo, Exception | None]:
        """Dial while a worker thread writes the journal entry (its fsyncs take milliseconds,
        and more on a busy disk); return the link and the journal's error, once both are done.

        Recovery sees the same as when the entry was written first: the link's processes are
        journaled after the dial either way (``add_link``), so an entry without links is all a
        crash in between can leave."""
        journal_error: list[Exception] = []
        starts = DialStarts(self._journal_entry)

        def write_journal() -> None:
            try:
                self._journal_attempt()
                starts.attach(self._journal_entry)
            except Exception as error:  # the caller raises it once the dial has settled
                journal_error.append(error)

        dial_error: Exception | None = None
        info: LinkInfo | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(anyio.to_thread.run_sync, write_journal)
            try:
                # "Custom Dialers": a front end with its own screen calls the dialer's dialog
                # entry point (RasCustomDialDlg); a Cancel cancels it like any dial.
                dial = (
                    dialer.dial_dialog
                    if self.options.dial_dialog and self.interactive
                    else dialer.dial
                )
                with proc.watching_starts(starts.started):
                    info = await dial(
                        entry,
                        self._stage_credentials.get(stage, self.credentials),
                        self._on_link_down,
                    )
            except BaseException as error:  # re-raised as is once the journal write has finished
                starts.failed()
                if not isinstance(error, Exception):
                    raise
                dial_error = error
        if dial_error is not None:
            raise dial_error
        assert info is not None
        return info, (journal_error[0] if journal_error else None)

    # -- link-down notifications from dialers --------------------------------------------------

    def _on_link_down(self, down: LinkDown) -> None:
        self.log.write("link-down", reason=str(down.reason), detail=down.detail, state=self.state)
        if self.state in ATTEMPT_STATES:
            if self._attempt_drop is None:
                self._attempt_drop = down
            if self._attempt_scope is not None:
                self._attempt_scope.cancel()
        elif self.state in (State.CONNECTED, State.PROMPTING):
            self._post(events.LinkDropped(down))

    # -- connected: monitored apps, prompt, disconnect, drop -----------------------------------

    async def _connected(self) -> Outcome:
        drop: LinkDown | None = None
        reason = "user-disconnect"
        async with anyio.create_task_group() as group:
            processes = await self._start_monitored()
            if processes:
                group.start_soon(self._watch_apps, processes)
            while True:
                match await self._inbox.receive():
                    case events.Disconnect(reason=asked) if self.state in (
                        State.CONNECTED,
                        State.PROMPTING,
                    ):
                        reason = asked
                        self.machine.fire(Event.USER_DISCONNECT)
                        break
                    case events.AppsExited() if self.state is State.CONNECTED:
                        self.machine.fire(Event.LAST_APP_EXITED)
                        group.start_soon(self._ask)
                    case events.PromptAnswered(choice=Choice.STAY_ONLINE) if (
                        self.state is State.PROMPTING
                    ):
                        self.machine.fire(Event.STAY_ONLINE)
                    case events.PromptAnswered(choice=Choice.DISCONNECT_NOW) if (
                        self.state is State.PROMPTING
                    ):
                        reason = "monitored-apps-exited"
                        self.machine.fire(Event.USER_DISCONNECT)
                        break
                    case events.PromptTimedOut() if self.state is State.PROMPTING:
                        reason = "prompt-timeout"
                        self.machine.fire(Event.PROMPT_TIMEOUT)
                        break
                    case events.LinkDropped(down=down):
                        drop = down
                        self.machine.fire(Event.LINK_DOWN)
                        break
                    case _:
                        pass  # no longer relevant in this state (an answer after a disconnect)
            group.cancel_scope.cancel()
        if drop is not None:
            # Microsoft's "Custom Actions": disconnect actions run after an unexpected drop too.
            await self._run_disconnect_actions(str(drop.reason))
            await self._release_links()
            if self._reconnects():
                return Outcome.DROPPED
            self.machine.fire(Event.GIVE_UP)
            self._finish_journal()
            return Outcome.DROPPED
        await self._run_disconnect_actions(reason)
        await self._release_links()
        self.machine.fire(Event.HUNG_UP)
        self._finish_journal()
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
        await wait_all_exited(processes)
        self.log.write("monitored-exited", pids=[p.pid for p in processes])
        await self._inbox_send.send(events.AppsExited())

    async def _ask(self) -> None:
        answer: events.InboxEvent = events.PromptTimedOut()
        async with anyio.create_task_group() as group:

            async def ask() -> None:
                nonlocal answer
                choice = await self.prompt.ask(
                    self.config.service_name, self.options.prompt_timeout
                )
                answer = (
                    events.PromptTimedOut()
                    if choice is Choice.TIMED_OUT
                    else events.PromptAnswered(choice)
                )
                group.cancel_scope.cancel()

            async def timer() -> None:
                await self.clock.sleep(self.options.prompt_timeout)
                group.cancel_scope.cancel()

            group.start_soon(ask)
            group.start_soon(timer)
        self.log.write("prompt-answer", answer=_answer_name(answer))
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
            entry.disconnect_done()

    # -- cancel and error ----------------------------------------------------------------------

    async def _cancelled(self) -> Outcome:
        self.machine.fire(Event.CANCEL)
        with anyio.CancelScope(shield=True):
            await self._run_point(ActionPoint.ON_CANCEL)
            await self._release_links()
            self._finish_journal()
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
            self.macros.forget_addresses()  # no stale addresses in the next attempt
            if self._journal_entry is not None:
                self._journal_entry.links_released()

    # -- journal -------------------------------------------------------------------------------

    def _journal_attempt(self) -> None:
        """Open this session's journal entry, or record a new attempt's macros in it."""
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
        self._journal_entry.redialing(macros)

    def _finish_journal(self) -> None:
        if self._journal_entry is not None and not self.links:
            self._journal_entry.remove()
            self._journal_entry = None

    # -- running points ------------------------------------------------------------------------

    def _context(self, extra: Mapping[str, str] | None = None) -> RunContext:
        newest = self.links[-1] if self.links else None
        return RunContext(
            macros=self.macros.values(extra),
            connection_type=self.connection_type,
            interactive=self.interactive,
            profile_dir=self.config.profile.profile_dir,
            timeout=self.options.action_timeout,
            logon=self.options.logon,
            interface=newest.info.interface if newest else None,
            netns=self._entries[newest.stage].settings.get("netns") if newest else None,
        )

    async def _phonebook_update(self) -> None:
        """The built-in first post-connect action (Microsoft's "How Connection Manager Works":
        the phone book is updated after connecting): bounded, never fails the attempt."""
        if self.config.profile.phonebook_url is None:
            return  # no PBS: the PBS client (and its HTTP stack) is not even imported
        from opencm.pbs.autoupdate import auto_update

        result = await anyio.to_thread.run_sync(auto_update, self.config.profile)
        self.log.write("phonebook-update", result=result.result, message=result.message)

    async def _run_point(self, point: ActionPoint, extra: Mapping[str, str] | None = None) -> None:
        """Run one point (in a worker thread: libraries block) and wait for what it started."""
        context = self._context(extra)
        if self.actions.has_actions(point):
            result = await anyio.to_thread.run_sync(self.actions.run_point, point, context)
        else:
            # Nothing there can block: no worker thread, whose wake-up a busy machine delays
            # (a connection passes three points before its dial). Still a cancellation point.
            await anyio.lowlevel.checkpoint()
            result = self.actions.run_point(point, context)
        for action in result.results:
            if action.process is None:
                continue
            self._started.add(action.process)
            # Microsoft's "Custom Actions": an executable (or document) is started and CM
            # "continues without waiting for the process to exit". With opencm's N&Wait the
            # session waits up to that long, and then the exit status counts.
            if action.wait is not None:
                await self._wait_action(point, action)
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

    async def _wait_action(self, point: ActionPoint, action: ActionResult) -> None:
        assert action.process is not None and action.wait is not None
        code = None
        # Real time, like the library host's timeout: it bounds a real process, not one of the
        # session's own timers (which a test's fake clock drives).
        with anyio.move_on_after(action.wait):
            code = await wait_for_exit(action.process)
        action.return_value = code
        if point not in FATAL_POINTS or not action.ok:
            return
        if code is None:
            action.ok = False
            action.message = (
                f"Custom Action {action.description} failed: still running after {action.wait} s"
            )
        elif code != 0:
            action.ok = False
            action.message = f"Custom Action {action.description} failed {code}"

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
                pid=action.process.pid if action.process is not None else None,
                waited=action.wait,
                duration=round(action.duration, 4),
                message=action.message,
                skipped=action.skip_reason,
            )

    def _on_transition(self, row: Transition) -> None:
        if row.target is State.CONNECTED:
            # The reason describes the drop it came with, not a connection made again since.
            self.disconnect_reason = None
        self.log.write("state", **{"from": str(row.source), "to": str(row.target)}, event=row.event)
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


def _answer_name(answer: events.InboxEvent) -> str:
    """The log's name for a prompt's outcome (``docs/session.md``)."""
    if isinstance(answer, events.PromptAnswered):
        return "stay" if answer.choice is Choice.STAY_ONLINE else "disconnect"
    return "prompt-timeout"


__all__ = [
    "ERROR_ACTION_FAILED",
    "ERROR_BAD_ENTRY",
    "ERROR_DIALER_FAILED",
    "ERROR_LINK_DROPPED",
    "ERROR_NO_DIALER",
    "AttemptError",
    "ConnectOptions",
    "DialerLookup",
    "Outcome",
    "Session",
    "SessionDeps",
    "default_dialer_lookup",
]
