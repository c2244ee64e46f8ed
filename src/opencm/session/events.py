"""What reaches a connected session from outside its own flow: the inbox's typed events.

While a session is connected its task waits on one inbox; everything that can end or change that
wait arrives there as one of these, and :meth:`opencm.session.runner.Session` turns each into a
:class:`~opencm.session.machine.Event` of the transition table (which decides whether the current
state accepts it).

Cancel is not an inbox event: it must interrupt an attempt that is blocked in a dial or an
action, so :meth:`Session.cancel` cancels the attempt's scope directly (and a connected session
has nothing to cancel: that is a :class:`Disconnect`).
"""

from __future__ import annotations

from dataclasses import dataclass

from opencm.links.api import LinkDown
from opencm.session.prompt import Choice


@dataclass(frozen=True)
class Disconnect:
    """The user (or the daemon stopping) asked to disconnect; ``reason`` becomes
    ``%DisconnectReason%``."""

    reason: str


@dataclass(frozen=True)
class AppsExited:
    """The last monitored application exited: time to ask "Stay online?"."""


@dataclass(frozen=True)
class PromptAnswered:
    """The user answered the "Stay online" / "Disconnect now" question."""

    choice: Choice


@dataclass(frozen=True)
class PromptTimedOut:
    """Nobody answered the question in time (30 s, "Incorporating Custom Actions"): the connection
    closes."""


@dataclass(frozen=True)
class LinkDropped:
    """A link of the connected session went down on its own."""

    down: LinkDown


InboxEvent = Disconnect | AppsExited | PromptAnswered | PromptTimedOut | LinkDropped

__all__ = [
    "AppsExited",
    "Disconnect",
    "InboxEvent",
    "LinkDropped",
    "PromptAnswered",
    "PromptTimedOut",
]
