"""What the built-in dialers share beyond their settings: the entry points they all fill the
same way."""

from __future__ import annotations

from typing import Protocol

from opencm.links.api import Credentials, DialEntry, LinkDownCallback, LinkInfo


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
