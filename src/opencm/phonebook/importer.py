"""Importing POPs: PBA's import format and opencm's CSV, all-or-nothing.

PBA's format (TechNet "Add, edit, or delete POPs by command line"): one POP per line, every
item but the last followed by a comma and a space::

    1, 1, 0, Redmond, 425, 555-0134, 9600, 56000, 0, 120, ISP

A line whose POP index exists edits that POP, any other adds one. opencm adds one form PBA's
page does not show: ``-<index>`` alone on a line deletes that POP. Blank lines and lines
starting with ``;`` or ``#`` are skipped.

An MS-CPSP ``.pbk`` (``.pbk``, with its ``.pbr`` beside it) imports an existing phone book;
see :func:`plan_pbk`.

CSV (opencm's own, ``.csv``): a header row naming the columns ``index, country, region, name,
area, access, min_speed, max_speed, reserved, flags, dun`` and optionally ``action`` (``add``,
``edit``, ``delete``, or empty for add-or-edit). ``region`` may be a region's number or name.

Everything is checked before anything is written: one bad line (malformed, not ASCII, a field
too long, a duplicate POP index, an unknown region) stops the import with file, line and field,
and the book stays as it was.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, KeysView
from dataclasses import dataclass, field
from pathlib import Path

from opencm.errors import InputError
from opencm.phonebook import limits
from opencm.phonebook.pbk import Pop, parse_pbk
from opencm.phonebook.pbr import parse_pbr
from opencm.phonebook.problems import Effect
from opencm.phonebook.workspace import (
    Book,
    Workspace,
    check_pop_fields,
    pop_as_json,
)
from opencm.profile.rasbook import require_pop_book

COLUMNS = (
    "index",
    "country",
    "region",
    "name",
    "area",
    "access",
    "min_speed",
    "max_speed",
    "reserved",
    "flags",
    "dun",
)


@dataclass
class ImportPlan:
    upserts: list[Pop] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    adds_only: set[int] = field(default_factory=set)
    edits_only: set[int] = field(default_factory=set)
    lines: dict[int, int] = field(default_factory=dict)  # POP index -> line number

    @property
    def rows(self) -> int:
        return len(self.upserts) + len(self.deletes)


def _decode(data: bytes, path: Path) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(
            f"byte 0x{data[error.start]:02x} is not ASCII (phone books are ASCII text)",
            path=path,
            line=line,
        ) from error


# A PBA line the fast path takes: fields already in the form the rules want (PBA's text,
# area-code and access-number limits, spaces only around commas). Anything else goes through
# the field-by-field path, which gives the precise error.
_TEXT_END = r"[\x21\x23-\x2b\x2d-\x7e]"  # printable ASCII but space, ',' and '"'
_TEXT_MID = r"[\x20\x21\x23-\x2b\x2d-\x7e]"


def _text(limit: int) -> str:
    return rf"({_TEXT_END}(?:{_TEXT_MID}{{0,{limit - 2}}}{_TEXT_END})?|)"


_SEP = r" *, *"
_PLAIN_LINE = re.compile(
    rf"([0-9]+){_SEP}([0-9]+){_SEP}([0-9]*){_SEP}{_text(limits.POP_NAME_MAX)}{_SEP}"
    rf"([0-9]{{0,{limits.AREA_MAX}}}){_SEP}"
    rf"([0-9#*\-](?:[0-9#*\- ]{{0,{limits.ACCESS_MAX - 2}}}[0-9#*\-])?){_SEP}"
    rf"([0-9]*){_SEP}([0-9]*){_SEP}([0-9]*){_SEP}([0-9]*)"
    rf"(?:{_SEP}{_text(limits.DUN_MAX)})?"
)


class _Planner:
    def __init__(self, path: Path, regions: list[str]) -> None:
        self.path = path
        self.regions = regions
        self.plan = ImportPlan()

    def region(self, value: str, line: int) -> int:
        value = value.strip()
        if value == "" or value == "0":
            return 0
        if value.isdigit() and int(value) <= len(self.regions):
            return int(value)
        if value.isdigit():
            number = int(value)
            if number > len(self.regions):
                raise InputError(
                    f"unknown region {number} (the book has {len(self.regions)} regions)",
                    path=self.path,
                    line=line,
                    field="region",
                )
            return number
        for number, name in enumerate(self.regions, 1):
            if name.casefold() == value.casefold():
                return number
        raise InputError(f"unknown region {value!r}", path=self.path, line=line, field="region")

    def seen(self, index: int, line: int) -> None:
        first = self.plan.lines.get(index)
        if first is not None:
            raise InputError(
                f"POP {index} appears twice (first on line {first})",
                path=self.path,
                line=line,
                field="index",
            )
        self.plan.lines[index] = line

    def number(self, value: str, name: str, line: int) -> int:
        if value.isdigit():  # the text is ASCII, so these are 0-9
            return int(value)
        if value == "":
            return 0
        raise InputError(
            f"expected a whole number, found {value!r}", path=self.path, line=line, field=name
        )

    def add_plain(self, text: str, line: int) -> bool:
        """The common PBA line, matched and split by one regular expression; False sends
        anything unusual to :meth:`add`, which applies the same rules and names the field
        that breaks one (tests check that both paths agree)."""
        match = _PLAIN_LINE.fullmatch(text)
        if match is None:
            return False
        index, country, region, name, area, access, low, high, reserved, flags, dun = match.groups(
            ""
        )
        pop = Pop(
            int(index),
            int(country),
            int(region) if region else 0,
            name,
            area,
            access,
            int(low) if low else 0,
            int(high) if high else 0,
            int(reserved) if reserved else 0,
            int(flags) if flags else 0,
            dun,
        )
        if (
            pop.index < 1
            or pop.country < 1
            or pop.region > len(self.regions)
            or pop.flags > 255
            or pop.flags & 1
            or not access.strip("#*- ")  # no digit at all
            or pop.index in self.plan.lines
        ):
            return False
        self.plan.lines[pop.index] = line
        self.plan.upserts.append(pop)
        return True

    def add(self, values: dict[str, str], line: int, action: str = "") -> None:
        """One POP line, ``values`` by column name (missing columns are empty)."""
        get = values.get
        number = self.number
        index = number(get("index", "").strip(), "index", line)
        if index < 1:
            raise InputError(
                "a POP index of 1 or more is required", path=self.path, line=line, field="index"
            )
        self.seen(index, line)
        if action == "delete":
            self.plan.deletes.append(index)
            return
        country = number(get("country", "").strip(), "country", line)
        if country < 1:
            raise InputError(
                "the country code is required", path=self.path, line=line, field="country"
            )
        pop = Pop(
            index,
            country,
            self.region(get("region", ""), line),
            get("name", "").strip(),
            get("area", "").strip(),
            get("access", "").strip(),
            number(get("min_speed", "").strip(), "min_speed", line),
            number(get("max_speed", "").strip(), "max_speed", line),
            number(get("reserved", "").strip(), "reserved", line),
            number(get("flags", "").strip(), "flags", line),
            get("dun", "").strip(),
        )
        try:
            pop = check_pop_fields(pop)
        except InputError as error:
            raise InputError(error.message, path=self.path, line=line, field=error.field) from error
        if action == "add":
            self.plan.adds_only.add(pop.index)
        elif action == "edit":
            self.plan.edits_only.add(pop.index)
        self.plan.upserts.append(pop)


def plan_pba(
    text: str, path: Path, regions: list[str], progress: Callable[[int], None]
) -> ImportPlan:
    planner = _Planner(path, regions)
    for number, raw in enumerate(text.splitlines(), 1):
        if number % 2000 == 0:
            progress(2000)
        line = raw.strip()
        if not line or line.startswith((";", "#")):
            continue
        if line.startswith("-") and line[1:].strip().isdigit():
            planner.add({"index": line[1:].strip()}, number, "delete")
            continue
        if planner.add_plain(line, number):
            continue
        parts = line.split(",")
        if len(parts) not in (10, 11):
            raise InputError(
                f"{len(parts)} fields, a POP line has 11 (the last, the dial-up entry, may be "
                "left out)",
                path=path,
                line=number,
            )
        planner.add(dict(zip(COLUMNS, parts, strict=False)), number)
    return planner.plan


def plan_csv(
    text: str, path: Path, regions: list[str], progress: Callable[[int], None]
) -> ImportPlan:
    planner = _Planner(path, regions)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        return planner.plan
    unknown = [column for column in header if column not in (*COLUMNS, "action")]
    if unknown or "index" not in header:
        raise InputError(
            f"the header must name columns from {', '.join(COLUMNS)}, action (with index); "
            f"found {', '.join(unknown) or 'no index'}",
            path=path,
            line=1,
        )
    try:
        for row in reader:
            number = reader.line_num
            if number % 2000 == 0:
                progress(2000)
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{len(row)} columns, the header has {len(header)}", path=path, line=number
                )
            values = dict(zip(header, row, strict=True))
            action = values.pop("action", "").strip().lower()
            if action not in ("", "add", "edit", "delete"):
                raise InputError(
                    f"action {action!r}: expected add, edit, delete or empty",
                    path=path,
                    line=number,
                    field="action",
                )
            planner.add(values, number, action)
    except csv.Error as error:
        raise InputError(f"malformed CSV ({error})", path=path, line=reader.line_num) from error
    return planner.plan


def _sibling_pbr(path: Path) -> Path | None:
    wanted = path.with_suffix(".pbr").name.casefold()
    for entry in path.parent.iterdir():
        if entry.name.casefold() == wanted:
            return entry
    return None


def plan_pbk(data: bytes, path: Path, regions: list[str]) -> ImportPlan:
    """An MS-CPSP ``.pbk`` (with the ``.pbr`` beside it): every POP added or edited.

    Strict: where a client would silently drop entries (MS-CPSP's error rules), an import
    stops with the rule's message instead. Region ids are mapped by region *name* to the
    book's regions, which must exist.
    """
    require_pop_book(data, path, "`opencm phonebook import`")
    pbr_path = _sibling_pbr(path)
    file_regions: list[str] = []
    if pbr_path is not None:
        pbr = parse_pbr(pbr_path.read_bytes(), pbr_path)
        for problem in pbr.problems:
            if problem.effect is not Effect.WARNING:
                raise InputError(
                    problem.message, path=pbr_path, line=problem.line, field=problem.field
                )
        file_regions = pbr.names
    read = parse_pbk(data, path, region_count=len(file_regions) if pbr_path else None)
    for problem in read.problems:
        if problem.effect is not Effect.WARNING:
            raise InputError(
                f"{problem.message} [{problem.rule}]",
                path=path,
                line=problem.line,
                field=problem.field,
            )
    numbers = [n for n, line in enumerate(read.document.lines, 1) if line.text.strip()]
    planner = _Planner(path, regions)
    book_region = {name.casefold(): number for number, name in enumerate(regions, 1)}
    for line, pop in zip(numbers, read.pops, strict=True):
        region = pop.region
        if region:
            if region > len(file_regions):
                raise InputError(
                    f"region {region} has no name (no {path.stem}.pbr beside the "
                    "file, or too few names in it)",
                    path=path,
                    line=line,
                    field="region",
                )
            name = file_regions[region - 1]
            if name.casefold() not in book_region:
                raise InputError(
                    f"the book has no region {name!r}; add it first ('opencm "
                    f"phonebook region add BOOK {name!r}')",
                    path=path,
                    line=line,
                    field="region",
                )
            region = book_region[name.casefold()]
        values = {**pop_as_json(pop), "region": str(region)}
        planner.add({key: str(value) for key, value in values.items()}, line)
    return planner.plan


def import_file(
    workspace: Workspace,
    name: str,
    path: Path,
    *,
    file_format: str | None = None,
    progress: Callable[[int], None] = lambda n: None,
) -> tuple[int, int, int]:
    """Import ``path`` into book ``name``; returns (added, changed, deleted)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the import file ({error.strerror})", path=path) from error
    text = _decode(data, path)
    suffix = path.suffix.lower()
    kind = file_format or {".csv": "csv", ".pbk": "pbk"}.get(suffix, "pba")
    regions = workspace.regions(name)
    if kind == "pbk":
        plan = plan_pbk(data, path, regions)
    else:
        plan = (plan_csv if kind == "csv" else plan_pba)(text, path, regions, progress)
    limit_check = _limit_checker(plan, path)
    return workspace.apply_import(
        name, plan.upserts, plan.deletes, source=path.name, check=limit_check
    )


def _limit_checker(plan: ImportPlan, path: Path) -> Callable[[Book, KeysView[int], int, int], None]:
    def check(book: Book, existing: KeysView[int], operations: int, total: int) -> None:
        for index in sorted(plan.adds_only & existing):
            raise InputError(
                f"action add: {book.name} already has POP {index}",
                path=path,
                line=plan.lines[index],
                field="index",
            )
        for index in sorted(plan.edits_only - existing):
            raise InputError(
                f"action edit: {book.name} has no POP {index}",
                path=path,
                line=plan.lines[index],
                field="index",
            )
        for index in plan.deletes:
            if index not in existing:
                raise InputError(
                    f"cannot delete POP {index}: {book.name} has no such POP",
                    path=path,
                    line=plan.lines[index],
                    field="index",
                )
        if book.posted:
            limits.check_import_size(operations, posted=True, pending=book.changes_since_post)
        else:
            limits.check_import_size(plan.rows, posted=False, pending=0)
        limits.check_pop_count(total)

    return check
