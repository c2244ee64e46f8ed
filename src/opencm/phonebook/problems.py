"""What a reader found wrong in a file, and what the format's rules made it do about it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from opencm.errors import where


class Effect(Enum):
    """The consequence MS-CPSP prescribes for a problem (its "MUST be ignored" rules)."""

    WARNING = "warning"  # the value is still used (dialing may fail)
    FIELD = "field"  # this field is dropped or truncated, the entry is kept
    ENTRY = "entry"  # this entry is ignored
    FOLLOWING = "following"  # this entry (if stated) and every later entry are ignored
    ALL = "all"  # every entry in the file is ignored


@dataclass(frozen=True)
class Problem:
    """One rule that fired, at a file, line and field."""

    rule: str
    message: str
    effect: Effect
    path: str | Path | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        location = where(self.path, self.line, self.field)
        text = f"{self.message} [{self.rule}; effect: {self.effect.value}]"
        return f"{location}: {text}" if location else text
