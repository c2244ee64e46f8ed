"""One session's event stream for front ends: what the status pane, the tray and the CLI show.

*opencm's own* (docs/daemon-protocol.md, "Events"). Connection Manager shows its user each step
of a connection in the logon screen's status pane ("Running Custom Action <Description>", as
"Incorporating Custom Actions" describes it), the errors and redials, and asks "Stay online?"
when the last monitored application closes. The daemon has no screen: it keeps these steps as a
numbered list of events per session, and any number of front ends follow it (the desktop
client, ``opencm connect``, ``opencm status --watch``) from the start or from a sequence number.

The stream is fed by the session's log records (:meth:`EventStream.on_log`, subscribed to
:class:`~opencm.session.log.SessionLog`), by the action engine just before each action runs
(:meth:`EventStream.action_running`), and by the daemon (the prompt, the outcome). It keeps the
last :data:`EVENT_LIMIT` events; a watcher that falls further behind is told how many it missed.
A slow watcher never holds the session up: followers read the list at their own pace.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.from_thread

#: Events kept per session (a long-lived session with many reconnects forgets the oldest).
EVENT_LIMIT = 1000

#: Events that end a stream: nothing follows ``outcome``.
FINAL_EVENT = "outcome"


class EventStream:
    def __init__(
        self,
        session_id: str,
        *,
        redial_count: int = 0,
        redial_delay: float = 0.0,
        wall: Callable[[], float] = time.time,
        limit: int = EVENT_LIMIT,
    ) -> None:
        self.session_id = session_id
        self.redial_count = redial_count
        self.redial_delay = redial_delay
        self._wall = wall
        self._events: deque[dict[str, Any]] = deque(maxlen=limit)
        self._next = 1
        self._changed = anyio.Event()
        self.closed = False
        self._redials = 0
        self._last_error: dict[str, Any] | None = None
        self._last_drop: str | None = None

    # -- writing -----------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {
            "event": kind,
            "session": self.session_id,
            "seq": self._next,
            "time": round(self._wall(), 3),
            **fields,
        }
        self._next += 1
        self._events.append(event)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
        return event

    def close(self) -> None:
        self.closed = True
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def action_running(self, point: str, description: str, text: str) -> None:
        """The engine's hook before an action runs; called from the worker thread of a point."""
        try:
            anyio.from_thread.run_sync(self._running, point, description, text)
        except RuntimeError:  # already on the event loop's thread (no worker in between)
            self._running(point, description, text)

    def _running(self, point: str, description: str, text: str) -> None:
        self.emit("action-running", point=point, description=description, text=text)

    def on_log(self, kind: str, fields: dict[str, Any]) -> None:
        """Turn one session log record into the events a front end shows."""
        handler = _LOG_EVENTS.get(kind)
        if handler is not None:
            handler(self, fields)

    def _state(self, fields: dict[str, Any]) -> None:
        target, cause = str(fields.get("to")), str(fields.get("event"))
        self.emit("state", state=target, previous=str(fields.get("from")), cause=cause)
        if target == "redial-wait":
            self._redials += 1
            error = self._last_error or {}
            reason = str(error.get("message") or "the attempt failed")
            self.emit(
                "redial",
                attempt=self._redials,
                of=self.redial_count,
                delay=self.redial_delay,
                reason=reason,
                code=error.get("code"),
                source=error.get("source"),
                text=f"redial {self._redials} of {self.redial_count} "
                f"in {self.redial_delay:g} s: {reason}",
            )
        elif target == "pre-connect" and cause == "reconnect":
            self._redials = 0
            self.emit(
                "reconnect",
                reason=self._last_drop,
                text=f"reconnecting after the link dropped ({self._last_drop})",
            )

    def _action(self, fields: dict[str, Any]) -> None:
        self.emit(
            "action",
            point=fields.get("point"),
            index=fields.get("index"),
            description=fields.get("description"),
            ran=fields.get("ran"),
            succeeded=fields.get("ok"),
            exit_code=fields.get("exit_code"),
            message=fields.get("message"),
            skipped=fields.get("skipped"),
            text=action_text(fields),
        )

    def _error(self, fields: dict[str, Any]) -> None:
        self._last_error = {k: fields.get(k) for k in ("code", "source", "message")}
        self.emit("error", **self._last_error, text=error_text(self._last_error))

    def _link_down(self, fields: dict[str, Any]) -> None:
        self._last_drop = str(fields.get("reason"))
        detail = fields.get("detail")
        self.emit(
            "link",
            phase="down",
            reason=self._last_drop,
            detail=detail,
            text=f"the link went down: {self._last_drop}" + (f" ({detail})" if detail else ""),
        )

    # -- reading -----------------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    async def follow(self, since: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every event after sequence number ``since``, then new ones as they come, until the
        stream is closed (the session ended and its ``outcome`` was sent)."""
        last = since
        while True:
            changed = self._changed
            pending = [event for event in self._events if event["seq"] > last]
            if pending and pending[0]["seq"] > last + 1:
                missed = pending[0]["seq"] - last - 1
                yield {"event": "missed", "session": self.session_id, "count": missed}
            for event in pending:
                last = event["seq"]
                yield event
            if self.closed and last >= self._next - 1:
                return
            await changed.wait()


def _link_event(phase: str) -> Callable[[EventStream, dict[str, Any]], None]:
    def handle(stream: EventStream, fields: dict[str, Any]) -> None:
        stage, entry = fields.get("stage"), fields.get("entry")
        extra = {
            k: fields[k]
            for k in ("dialer", "interface", "client_ip", "server_ip", "code", "error")
            if k in fields
        }
        stream.emit(
            "link", phase=phase, stage=stage, entry=entry, **extra, text=link_text(phase, fields)
        )

    return handle


_LOG_EVENTS: dict[str, Callable[[EventStream, dict[str, Any]], object]] = {
    "state": EventStream._state,
    "action": EventStream._action,
    "error": EventStream._error,
    "dial": _link_event("dialing"),
    "dial-error": _link_event("failed"),
    "link-up": _link_event("up"),
    "hang-up": _link_event("hung-up"),
    "link-down": EventStream._link_down,
    "monitored-exited": lambda stream, fields: stream.emit(
        "monitored-exited", text="the last monitored application has exited"
    ),
    "prompt-answer": lambda stream, fields: stream.emit(
        "prompt-answer", answer=fields.get("answer")
    ),
    "phonebook-update": lambda stream, fields: stream.emit(
        "phonebook", result=fields.get("result"), text=str(fields.get("message") or "")
    ),
}


# -- the words a front end shows --------------------------------------------------------------


def action_text(fields: dict[str, Any]) -> str:
    description = fields.get("description") or "(no description)"
    if fields.get("skipped"):
        return f"Custom Action {description} skipped: {fields['skipped']}"
    if not fields.get("ok"):
        return str(fields.get("message") or f"Custom Action {description} failed")
    if fields.get("point") == "monitored":
        return f"Started {description}"
    if fields.get("pid") is not None and fields.get("waited") is None:
        # An executable runs asynchronously ("Incorporating Custom Actions"): it has only begun.
        return f"Custom Action {description} started (not waited for)"
    return f"Custom Action {description} done"


def link_text(phase: str, fields: dict[str, Any]) -> str:
    what = "the dial-up line" if fields.get("stage") == "dial" else "the VPN tunnel"
    what_first = what[0].upper() + what[1:]
    entry = fields.get("entry")
    match phase:
        case "dialing":
            return f"Connecting {what} to {entry} ({fields.get('dialer')})"
        case "up":
            address = fields.get("client_ip")
            return f"{what_first} is up" + (f": address {address}" if address else "")
        case "failed":
            return f"Connecting {what} to {entry} failed (error {fields.get('code')})"
        case _:
            return f"{what_first} to {entry} is closed"


def error_text(error: dict[str, Any]) -> str:
    return f"{error.get('message')} (error {error.get('code')} from {error.get('source')})"


def outcome_text(status: dict[str, Any], outcome: str) -> str:
    """How a session ended, in words: the outcome, then the error or the disconnect reason."""
    service = status.get("service") or "the connection"
    error = status.get("error")
    if outcome in ("failed", "dropped") and error:
        return f"{service}: {outcome}: {error_text(error)}"
    reason = status.get("disconnect_reason")
    return f"{service}: {outcome}" + (f" ({reason})" if reason else "")


__all__ = [
    "EVENT_LIMIT",
    "FINAL_EVENT",
    "EventStream",
    "action_text",
    "error_text",
    "link_text",
    "outcome_text",
]
