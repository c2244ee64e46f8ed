"""The one time source behind every timer in opencm (the clock seam).

The session's redial delay and 30-second prompt, the modem's dialogue timeouts and redial
delay, and WireGuard's dead-peer window all read time and sleep through a :class:`Clock`, so
tests drive time by hand (:class:`opencm.testing.FakeClock`) instead of waiting. It sits at the
bottom of the layers so that links and the session share it without importing each other.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for timeouts and windows."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for logs and status."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


__all__ = ["Clock", "RealClock"]
