"""What the built-in dialers share beyond their settings: the entry points they all fill the
same way, and (:class:`LinkDialer`) how a dialer keeps, closes and hangs up its links."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar, Generic, Protocol, TypeVar

from opencm.links import proc
from opencm.links.api import Credentials, DialEntry, LinkDown, LinkDownCallback, LinkInfo
from opencm.links.tasks import LinkState, close_once, report_down


class _Dials(Protocol):
    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo: ...


class NoDialogDialer:
    """For a dialer with nothing to ask the user and nothing stored per entry.

    ``dial_dialog`` is ``dial`` (which honours cancellation, as the contract asks), and
    ``entry_deleted`` has nothing to forget. Each dialer says in its docstring why that holds.
    """

    async def dial_dialog(
        self: _Dials, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        """Nothing to ask the user: the same as :meth:`dial`."""
        return await self.dial(entry, credentials, on_down)

    def entry_deleted(self, entry: DialEntry) -> None:
        """Nothing to forget: the dialer stores nothing per entry beyond a running link."""


L = TypeVar("L", bound=LinkState)


class LinkDialer(NoDialogDialer, Generic[L]):
    """A dialer whose running links are ``L`` objects, found by the ``id`` of their handle.

    It closes a link once (:func:`~opencm.links.tasks.close_once`), reports a drop once
    (:func:`~opencm.links.tasks.report_down`) and hangs up a link it holds by closing it, or,
    after the daemon restarted and the link is no longer in this process, by ending its helper
    process by PID (:func:`~opencm.links.proc.end_orphan`). A dialer says how a link is taken
    down in :meth:`_stop`; what follows it (cancelling the link's tasks, forgetting it) is the
    same for all.
    """

    #: The program an orphaned link's PID must still run for :meth:`_end_orphan` to end it.
    helper: ClassVar[str]
    #: The prefix of the link's run folder named in its handle (None: it has none).
    rundir_prefix: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._links: dict[str, L] = {}

    async def hang_up(self, link: LinkInfo) -> None:
        state = self._links.get(link.handle.get("id", ""))
        if state is not None:
            await self._close(state)
            return
        # Not ours in this process (the daemon restarted): end the helper by its PID.
        await self._end_orphan(link.handle)

    async def _end_orphan(self, handle: Mapping[str, str]) -> None:
        await proc.end_orphan(handle, self.helper, rundir_prefix=self.rundir_prefix)

    @contextlib.asynccontextmanager
    async def _coming_up(self, link_id: str, link: L) -> AsyncIterator[None]:
        """Hold ``link`` under ``link_id`` while the dial brings it up; a dial that fails or is
        cancelled closes it (which also forgets it) before its error goes on."""
        self._links[link_id] = link
        try:
            yield
        except BaseException:
            await self._close(link)
            raise

    def _report_down(self, link: L, down: LinkDown) -> None:
        report_down(link, down, lambda: self._close(link))

    async def _close(self, link: L) -> None:
        await close_once(link, lambda: self._teardown(link))

    async def _teardown(self, link: L) -> None:
        await self._stop(link)
        link.tasks.cancel_all(keep=link.teardown)
        for link_id, held in list(self._links.items()):
            if held is link:
                del self._links[link_id]

    async def _stop(self, link: L) -> None:
        """End what holds the link up (its process, its line …)."""
        raise NotImplementedError
