"""The MS-CPSP region file (``.pbr``): a count, then region names (MS-CPSP §2.2).

A POP's Region Id is a 1-based index into these names (0: every region). Reading keeps the raw
bytes, so an unchanged file renders to the same bytes; :func:`format_pbr` writes opencm's
canonical form (count, one name per line, CR LF).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opencm.phonebook.problems import Effect, book_problem
from opencm.problems import Problem

NAME_MAX = 31
_FIRST_LINE = re.compile(r"([^\r\n]*)(\r\n|\n|\r|$)")
_SEPARATOR = re.compile(r"\r\n|\n|\r|,")


@dataclass
class PbrRead:
    """A region file as read: the names in effect, whether it voids the phone book, problems."""

    raw: bytes
    names: list[str]
    problems: list[Problem]
    #: True when the count line is not a number: MS-CPSP then ignores every POP of the book.
    voids_phone_book: bool = False

    def render(self) -> bytes:
        """The file as it was read (byte-identical)."""
        return self.raw


def format_pbr(names: Sequence[str]) -> bytes:
    return (f"{len(names)}\r\n" + "".join(name + "\r\n" for name in names)).encode("ascii")


def parse_pbr(data: bytes, path: str | Path | None = None) -> PbrRead:
    text = data.decode("latin-1")
    problems: list[Problem] = []
    first = _FIRST_LINE.match(text)
    assert first is not None
    count_text = first.group(1).strip()
    rest = text[first.end() :]
    tokens = _SEPARATOR.split(rest) if rest else []
    if tokens and tokens[-1] == "":
        tokens.pop()  # the terminator of the last name
    if not count_text.isdigit() or not count_text.isascii():
        problems.append(
            book_problem(
                "cpsp-pbr-count",
                f"the first line must be the number of regions, found {count_text!r}: every POP "
                "of the phone book is ignored",
                Effect.ALL,
                path,
                1,
                "count",
            )
        )
        return PbrRead(data, [], problems, voids_phone_book=True)
    count = int(count_text)
    # Line numbers for names: count the line ends before each token.
    names: list[str] = []
    line = 2
    position = 0
    for token in tokens:
        if len(token) > NAME_MAX:
            problems.append(
                book_problem(
                    "cpsp-pbr-name-length",
                    f"{len(token)} characters, at most {NAME_MAX}: the excess is ignored",
                    Effect.FIELD,
                    path,
                    line,
                    "region name",
                )
            )
        names.append(token[:NAME_MAX])
        position = rest.find(token, position) + len(token)
        separator = rest[position : position + 2]
        if separator.startswith(("\r", "\n")):
            line += 1
        position += 2 if separator == "\r\n" else 1
    if count < len(names):
        problems.append(
            book_problem(
                "cpsp-pbr-count-small",
                f"the count says {count} regions but {len(names)} names follow: the extra names "
                "are ignored",
                Effect.FIELD,
                path,
                1,
                "count",
            )
        )
        names = names[:count]
    elif count > len(names):
        problems.append(
            book_problem(
                "cpsp-pbr-count-large",
                f"the count says {count} regions but only {len(names)} names follow: all of them "
                "are read",
                Effect.WARNING,
                path,
                1,
                "count",
            )
        )
    return PbrRead(data, names, problems)
