"""What the action engine needs from a service file: the entries of one section, in file order.

The engine depends on this small protocol rather than on the INI implementation, so it works
with :class:`opencm.profile.ini.IniFile` and with anything else that can list a section's keys
with their line numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class EntryLike(Protocol):
    """One ``key=value`` line of a section."""

    @property
    def key(self) -> str: ...

    @property
    def value(self) -> str: ...

    #: 1-based line number in the file, for messages.
    @property
    def line(self) -> int: ...


class ActionSource(Protocol):
    """A ``.cms`` file (or anything shaped like one) that holds the action sections."""

    @property
    def path(self) -> Path | None: ...

    def entries(self, section: str) -> Sequence[EntryLike]:
        """The section's entries in file order (case-insensitive section name), or none."""
        ...
