"""What a reader found wrong in a file, at its file, line and field: one type, one rendering.

Every checker uses it: ``opencm profile check`` (the INI structure, the action sections),
the profile files' own look-ups (a number that is not one), the MS-CPSP phone-book readers and the
RAS phone-book reader. The location renders as :class:`~opencm.errors.OpencmError` renders
its own (:func:`opencm.errors.where`), so a problem and an error read the same way::

    C.cms:12: warning: [Connection Manager] RedialCount='often' is not an integer; using 0
    B.pbk:2: Country Code: error: the country code is missing [cpsp-country-missing; effect: entry]
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from opencm.errors import where


class Severity(enum.StrEnum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a file; any part of the location may be unknown."""

    message: str
    path: str | Path | None = None
    line: int | None = None
    field: str | None = None
    severity: Severity = Severity.WARNING
    #: The rule that fired, when the checker names its rules (MS-CPSP's ``cpsp-…`` rules, the
    #: action keys' ``numbering`` and ``duplicate``).
    rule: str | None = None
    #: What the reader did about it, when the format prescribes it (MS-CPSP: ``field``,
    #: ``entry``, ``following``, ``all``; ``warning`` when the value is still used).
    effect: str | None = None

    def __str__(self) -> str:
        notes = "; ".join(
            note for note in (self.rule, f"effect: {self.effect}" if self.effect else None) if note
        )
        text = f"{self.severity}: {self.message}" + (f" [{notes}]" if notes else "")
        location = where(self.path, self.line, self.field)
        return f"{location}: {text}" if location else text

    def as_json(self) -> dict[str, object]:
        return {
            "severity": str(self.severity),
            "path": str(self.path) if self.path is not None else None,
            "line": self.line,
            "field": self.field,
            "rule": self.rule,
            "effect": self.effect,
            "message": self.message,
        }


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """File then line order (the order the checks print)."""
    return sorted(problems, key=lambda p: (str(p.path), p.line or 0))
