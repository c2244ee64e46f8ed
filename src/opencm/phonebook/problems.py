"""What MS-CPSP's rules make a phone-book reader do about a problem it finds.

The problem itself is :class:`opencm.problems.Problem` (one type and one rendering for every
checker); a phone-book problem names the MS-CPSP rule that fired and its :class:`Effect`.
"""

from __future__ import annotations

import enum
from pathlib import Path

from opencm.problems import Problem, Severity


class Effect(enum.StrEnum):
    """The consequence MS-CPSP prescribes for a problem (its "MUST be ignored" rules)."""

    WARNING = "warning"  # the value is still used (dialing may fail)
    FIELD = "field"  # this field is dropped or truncated, the entry is kept
    ENTRY = "entry"  # this entry is ignored
    FOLLOWING = "following"  # this entry (if stated) and every later entry are ignored
    ALL = "all"  # every entry in the file is ignored

    @property
    def severity(self) -> Severity:
        """A warning when the value is still used; an error when the reader dropped something."""
        return Severity.WARNING if self is Effect.WARNING else Severity.ERROR


def book_problem(
    rule: str,
    message: str,
    effect: Effect,
    path: str | Path | None = None,
    line: int | None = None,
    field: str | None = None,
) -> Problem:
    """One MS-CPSP rule that fired, at a file, line and field."""
    return Problem(message, path, line, field, severity=effect.severity, rule=rule, effect=effect)
