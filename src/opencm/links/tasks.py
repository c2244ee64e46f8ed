"""A link's life once dialled: its background tasks, its state (:class:`LinkState`), closing it
once and reporting it down once through the session's on_down callback."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from opencm.links.api import LinkDown, LinkDownCallback

_log = logging.getLogger(__name__)


async def notify(callback: LinkDownCallback, down: LinkDown) -> None:
    """Call ``on_down`` (plain function or coroutine function); its own errors are logged, since
    nobody awaits this task to see them."""
    try:
        result = callback(down)
        if inspect.isawaitable(result):
            await result
    except Exception:
        _log.exception("the on_down callback failed for %s", down)


class TaskSet:
    """Tasks of one link. Teardown cancels them all except the on_down notifications, which
    must run to the end even though the link they report on is being taken down."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._notifications: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def notify(self, callback: LinkDownCallback, down: LinkDown) -> None:
        task = asyncio.ensure_future(notify(callback, down))
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)

    def cancel_all(self, *, keep: asyncio.Task[Any] | None = None) -> None:
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current and task is not keep:
                task.cancel()


@dataclass(eq=False, kw_only=True)
class LinkState:
    """What every built-in link keeps about its own life, whatever else its dialer needs.

    A dialer's ``_Link`` adds its own fields (a process, a run folder, a bus …); these come last
    in its constructor and are given by name.
    """

    on_down: LinkDownCallback
    #: The dial finished: a drop from now on is reported to the session.
    up: bool = False
    #: A hang-up or teardown has begun: nothing is reported any more.
    closing: bool = False
    down_reported: bool = False
    tasks: TaskSet = field(default_factory=TaskSet)
    teardown: asyncio.Task[None] | None = None


async def close_once(link: LinkState, teardown: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Mark ``link`` closing and run its teardown once, however many callers ask for it.

    Every caller waits for the same teardown; it is shielded so that a cancelled hang-up does not
    abandon a half-done teardown.
    """
    link.closing = True
    if link.teardown is None:
        link.teardown = asyncio.ensure_future(teardown())
    await asyncio.shield(link.teardown)


def report_down(
    link: LinkState, down: LinkDown, close: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """A link that went down by itself: close it and tell the session, once, and not when a
    hang-up already began or the link never came up."""
    if link.down_reported or link.closing or not link.up:
        return
    link.down_reported = True
    link.tasks.spawn(close())
    link.tasks.notify(link.on_down, down)
