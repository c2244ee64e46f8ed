"""Numeric keys the way Connection Manager reads them ("Custom actions keys", under "Formats
and conventions").

"Each value specified for a numeric key must be an integer. Any noninteger value is truncated to
an integer or ignored as invalid data. For example, 1.1 is truncated to 1 or ignored."

opencm truncates a decimal fraction (``1.1`` reads as 1) and ignores anything else that is not
an integer (the default is used). Both cases come back with a warning so ``profile check`` and
``actions plan`` can point at the line. ``0x``-prefixed hexadecimal is accepted silently: it is
an opencm extension, handy for flag values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DECIMAL = re.compile(r"[+-]?[0-9]+")
_FRACTION = re.compile(r"([+-]?[0-9]+)\.[0-9]*")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")


@dataclass(frozen=True)
class CmInt:
    value: int
    #: Why the text was not read as written (truncated or ignored), or None.
    warning: str | None = None


def parse_cm_int(text: str, default: int = 0) -> CmInt:
    """Read ``text`` as CM reads a numeric key; see the module docstring for the rules."""
    stripped = text.strip()
    if _DECIMAL.fullmatch(stripped):
        return CmInt(int(stripped))
    if _HEX.fullmatch(stripped):
        return CmInt(int(stripped, 16))
    fraction = _FRACTION.fullmatch(stripped)
    if fraction:
        value = int(fraction.group(1))
        return CmInt(value, f"{stripped!r} is not an integer; truncated to {value}")
    return CmInt(default, f"{stripped!r} is not an integer; ignored, using {default}")
