"""The MS-CPSP phone book file (``.pbk``): one POP per line, eleven comma-separated fields.

Reading keeps every line as it was (text and terminator), so a file read and written back
without changes is byte-identical; only lines that are edited are re-rendered. The reader
applies each error rule of MS-CPSP §2.1 and reports it as a :class:`Problem` with file, line
and field; :attr:`PbkRead.pops` holds what a client would use after the rules have been applied.

Writing a book from scratch (:func:`format_pbk`) produces opencm's canonical form: POPs sorted
by index, every numeric field written as a number, CR LF line ends, no trailing comma.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from opencm.phonebook.problems import Effect, book_problem
from opencm.problems import Problem

#: MS-CPSP field limits (characters).
NAME_MAX = 31
AREA_MAX = 11
ACCESS_MAX = 41
DUN_MAX = 50

#: POP Flag bits (MS-CPSP §2.1). Several have inverted senses: a set bit means "not".
FLAG_NOT_SIGN_ON = 0x01
FLAG_SIGN_UP = 0x02
FLAG_NOT_MODEM = 0x04
FLAG_NOT_ISDN = 0x08
FLAG_CUSTOM1 = 0x10
FLAG_NOT_MULTICAST = 0x20
FLAG_SURCHARGE = 0x40
FLAG_CUSTOM2 = 0x80

FIELDS = (
    "POP Index",
    "Country Code",
    "Region Id",
    "POP Name",
    "Area Code",
    "Access Number",
    "Minimum Analog Speed",
    "Maximum Analog Speed",
    "Reserved Flag",
    "POP Flag",
    "Dialup Networking Name",
)

_DIGITS = re.compile(r"[0-9]+")
_ACCESS_CHARS = re.compile(r"[0-9#*\- ]*")
_LINE = re.compile(r"([^\r\n]*)(\r\n|\n|\r|$)")


@dataclass(frozen=True, slots=True)
class Pop:
    """One point of presence, with the values a client uses."""

    index: int
    country: int
    region: int = 0
    name: str = ""
    area: str = ""
    access: str = ""
    min_speed: int = 0
    max_speed: int = 0
    reserved: int = 0
    flags: int = 0
    dun: str = ""


def format_pop(pop: Pop) -> str:
    """The canonical line for ``pop`` (no terminator)."""
    return (
        f"{pop.index},{pop.country},{pop.region},{pop.name},{pop.area},{pop.access},"
        f"{pop.min_speed},{pop.max_speed},{pop.reserved},{pop.flags},{pop.dun}"
    )


def format_pbk(pops: Iterable[Pop]) -> bytes:
    """A canonical ``.pbk``: POPs by index, CR LF after every line."""
    lines = [format_pop(pop) for pop in sorted(pops, key=lambda pop: pop.index)]
    return ("".join(line + "\r\n" for line in lines)).encode("ascii")


@dataclass
class PbkLine:
    """A line as it is in the file: its text and terminator (``\\r\\n``, ``\\n``, ``\\r`` or "")."""

    text: str
    eol: str


@dataclass
class PbkDocument:
    """A ``.pbk`` kept line for line, so that an unchanged file renders to the same bytes."""

    lines: list[PbkLine] = field(default_factory=list)

    def render(self) -> bytes:
        return "".join(line.text + line.eol for line in self.lines).encode("latin-1")

    def set_pop(self, number: int, pop: Pop) -> None:
        """Replace line ``number`` (1-based) with the canonical form of ``pop``."""
        self.lines[number - 1].text = format_pop(pop)

    def append(self, pop: Pop, eol: str = "\r\n") -> None:
        if self.lines and not self.lines[-1].eol:
            self.lines[-1].eol = eol
        self.lines.append(PbkLine(format_pop(pop), eol))


@dataclass
class PbkRead:
    """The outcome of reading a ``.pbk``: the document, the POPs in effect, the problems."""

    document: PbkDocument
    pops: list[Pop]
    problems: list[Problem]


def split_lines(text: str) -> list[PbkLine]:
    """Lines with their terminators; CR LF, LF and a lone CR all end a line."""
    lines: list[PbkLine] = []
    position = 0
    while position < len(text):
        match = _LINE.match(text, position)
        assert match is not None  # the pattern matches the empty string
        lines.append(PbkLine(match.group(1), match.group(2)))
        position = match.end()
    return lines


class _Stop(Exception):
    """Raised inside entry parsing when a rule ends this entry."""

    def __init__(self, effect: Effect) -> None:
        self.effect = effect


class _EntryParser:
    """Applies MS-CPSP §2.1 to one entry; collects problems and the scope each rule imposes."""

    def __init__(self, path: str | Path | None, number: int, region_count: int | None) -> None:
        self.path = path
        self.number = number
        self.region_count = region_count
        self.problems: list[Problem] = []
        self.stop_following = False

    def problem(self, rule: str, field_no: int, message: str, effect: Effect) -> None:
        self.problems.append(
            book_problem(rule, message, effect, self.path, self.number, FIELDS[field_no])
        )

    def fail(self, rule: str, field_no: int, message: str, effect: Effect) -> _Stop:
        self.problem(rule, field_no, message, effect)
        return _Stop(effect)

    def number_field(self, value: str, field_no: int, rule: str, effect: Effect) -> int:
        if value == "":
            return 0
        if not _DIGITS.fullmatch(value):
            what = "a negative number" if value.startswith("-") else repr(value)
            raise self.fail(rule, field_no, f"expected an unsigned integer, found {what}", effect)
        return int(value)

    def overflow(self, tokens: list[str], position: int, limit: int, rule: str) -> None:
        """A value past its length limit: the rest becomes the next field (fields shift)."""
        value = tokens[position]
        if len(value) <= limit:
            return
        tokens[position : position + 1] = [value[:limit], value[limit:]]
        self.stop_following = True
        self.problem(
            rule,
            position,
            f"{len(value)} characters, at most {limit}: the first {limit} are kept, the rest "
            "is read as the next field, and all later entries are ignored",
            Effect.FOLLOWING,
        )

    def parse(self, text: str) -> Pop:
        commas = text.count(",")
        if commas < 10:
            raise self.fail(
                "cpsp-commas-few",
                0,
                f"{commas} commas, an entry needs 10 or 11: this entry and all later ones are "
                "ignored",
                Effect.FOLLOWING,
            )
        if commas > 11:
            raise self.fail(
                "cpsp-commas-many",
                0,
                f"{commas} commas, an entry has at most 11: every entry in the file is ignored",
                Effect.ALL,
            )
        tokens = text.split(",")[:11]
        index = self.number_field(tokens[0], 0, "cpsp-index", Effect.FOLLOWING)
        if tokens[1] == "":
            raise self.fail("cpsp-country-missing", 1, "the country code is missing", Effect.ENTRY)
        country = self.number_field(tokens[1], 1, "cpsp-country", Effect.ALL)
        region = self.number_field(tokens[2], 2, "cpsp-region", Effect.ALL)
        if self.region_count is not None and region > self.region_count:
            self.problem(
                "cpsp-region-range",
                2,
                f"region {region} is past the {self.region_count} regions of the region file: "
                "the POP has no region",
                Effect.FIELD,
            )
            region = 0
        self.overflow(tokens, 3, NAME_MAX, "cpsp-name-length")
        self.overflow(tokens, 4, AREA_MAX, "cpsp-area-length")
        area = tokens[4]
        if area and not _DIGITS.fullmatch(area):
            self.problem(
                "cpsp-area-digits", 4, f"{area!r} is not all digits: ignored", Effect.FIELD
            )
            area = ""
        self.overflow(tokens, 5, ACCESS_MAX, "cpsp-access-length")
        access = tokens[5]
        if access == "":
            self.problem(
                "cpsp-access-missing", 5, "no access number: dialing fails", Effect.WARNING
            )
        elif not _ACCESS_CHARS.fullmatch(access) or not re.search("[0-9]", access):
            self.problem(
                "cpsp-access-chars",
                5,
                f"{access!r} holds characters other than digits, '#', '*', '-' and space: "
                "dialing may fail",
                Effect.WARNING,
            )
        min_speed = self.number_field(tokens[6], 6, "cpsp-min-speed", Effect.ALL)
        max_speed = self.number_field(tokens[7], 7, "cpsp-max-speed", Effect.ALL)
        reserved = self.number_field(tokens[8], 8, "cpsp-reserved", Effect.ALL)
        flags = self.number_field(tokens[9], 9, "cpsp-flag", Effect.ALL)
        dun = tokens[10] if len(tokens) > 10 else ""
        if len(dun) > DUN_MAX:
            self.problem(
                "cpsp-dun-length",
                10,
                f"{len(dun)} characters, at most {DUN_MAX}: the excess is ignored",
                Effect.FIELD,
            )
            dun = dun[:DUN_MAX]
        if flags & FLAG_NOT_SIGN_ON:
            raise self.fail(
                "cpsp-flag-sign-on",
                9,
                f"flag {flags} sets bit 0 (Sign On), which MUST be zero: the entry is ignored",
                Effect.ENTRY,
            )
        return Pop(
            index,
            country,
            region,
            tokens[3],
            area,
            access,
            min_speed,
            max_speed,
            reserved,
            flags,
            dun,
        )


def parse_pbk(
    data: bytes, path: str | Path | None = None, *, region_count: int | None = None
) -> PbkRead:
    """Read a ``.pbk`` and apply MS-CPSP's rules; never raises for a malformed entry.

    ``region_count`` (from the ``.pbr``) enables the region range rule.
    """
    text = data.decode("latin-1")
    lines = split_lines(text)
    document = PbkDocument(lines)
    problems: list[Problem] = []
    pops: list[Pop] = []
    stopped = False
    for number, line in enumerate(lines, start=1):
        if line.text.strip() == "":
            continue  # a blank line is not an entry (a trailing newline, an empty file)
        parser = _EntryParser(path, number, region_count)
        try:
            pop = parser.parse(line.text)
        except _Stop as stop:
            if stop.effect is Effect.ALL:
                # "All entries in the file" includes those before and after this one.
                return PbkRead(document, [], [*problems, *parser.problems])
            if not stopped:
                problems.extend(parser.problems)
                stopped = stopped or stop.effect is Effect.FOLLOWING or parser.stop_following
            continue
        if stopped:
            continue  # ignored, but still read: a later line may void the whole file
        if not line.text.isascii():
            problems.append(
                book_problem(
                    "cpsp-ascii",
                    "the entry holds non-ASCII characters",
                    Effect.WARNING,
                    path,
                    number,
                )
            )
        problems.extend(parser.problems)
        pops.append(pop)
        stopped = parser.stop_following
    return PbkRead(document, pops, problems)
