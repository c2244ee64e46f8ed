"""The "Stay online" / "Disconnect now" question asked when the last monitored application exits.

"Incorporating Custom Actions": the user can click Stay Online, click Disconnect Now, or do nothing
and the connection closes after 30 seconds. The session owns the 30-second timer (with its
injectable clock); a prompt only has to ask and may be cancelled at any time. The UIs implement
:class:`DisconnectPrompt`; :class:`TtyPrompt` is the terminal's, :class:`UnattendedPrompt` the
answer when nobody is at the screen.
"""

from __future__ import annotations

import enum
import sys
from typing import Protocol, TextIO

import anyio

#: "Incorporating Custom Actions": without an answer the connection closes after 30 seconds.
PROMPT_TIMEOUT = 30.0


class Choice(enum.StrEnum):
    STAY_ONLINE = "stay-online"
    DISCONNECT_NOW = "disconnect-now"
    #: A front end's dialog counted the 30 seconds down itself (its clock is the one the user
    #: sees): the same as the session's own timer running out.
    TIMED_OUT = "timed-out"


class DisconnectPrompt(Protocol):
    async def ask(self, service_name: str, seconds: float) -> Choice:
        """Ask the user; may be cancelled (the timer ran out, the link dropped)."""
        ...


class UnattendedPrompt:
    """Nobody is at the screen: disconnect right away."""

    async def ask(self, service_name: str, seconds: float) -> Choice:
        return Choice.DISCONNECT_NOW


class TtyPrompt:
    """Asks on a terminal: ``s`` stays online, ``d`` (or Enter) disconnects now."""

    def __init__(self, stream_in: TextIO | None = None, stream_out: TextIO | None = None) -> None:
        self._in = stream_in or sys.stdin
        self._out = stream_out or sys.stderr

    async def ask(self, service_name: str, seconds: float) -> Choice:
        self._out.write(
            f"The last monitored application of {service_name} has exited.\n"
            f"[s] Stay online  [d] Disconnect now  (disconnects in {seconds:.0f} s): "
        )
        self._out.flush()
        while True:
            # A blocking read in a worker thread; abandoned (not awaited) when the timer wins.
            line = await anyio.to_thread.run_sync(self._in.readline, abandon_on_cancel=True)
            answer = line.strip().casefold()
            if answer in ("s", "stay", "stay online"):
                return Choice.STAY_ONLINE
            if answer in ("", "d", "disconnect", "disconnect now") or not line:
                return Choice.DISCONNECT_NOW
            self._out.write("please answer s (stay online) or d (disconnect now): ")
            self._out.flush()


__all__ = ["PROMPT_TIMEOUT", "Choice", "DisconnectPrompt", "TtyPrompt", "UnattendedPrompt"]
