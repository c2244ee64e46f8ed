"""Checking an MS-CPSP phone book as a client would read it (``opencm phonebook check``).

The ``.pbr`` beside the ``.pbk`` (same stem, any case) is read first, because the phone book's
region numbers are checked against it, and a broken region file voids the whole book.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencm.phonebook.pbk import parse_pbk
from opencm.phonebook.pbr import parse_pbr
from opencm.problems import Problem
from opencm.profile.rasbook import require_pop_book


@dataclass(frozen=True)
class BookCheck:
    pbk: Path
    #: The region file found beside the phone book, if any.
    pbr: Path | None
    #: The POPs a client would offer (0 when the region file voids the book).
    pops: int
    #: Every rule that fired, region file first, each at file, line and field.
    problems: list[Problem]

    def as_json(self) -> dict[str, Any]:
        return {
            "pops": self.pops,
            "problems": [problem.as_json() for problem in self.problems],
        }


def region_file_beside(pbk: Path) -> Path | None:
    """``BOOK.pbr`` in the phone book's folder, matched without regard to case."""
    wanted = pbk.with_suffix(".pbr").name.casefold()
    return next((p for p in pbk.parent.iterdir() if p.name.casefold() == wanted), None)


def check_phonebook(pbk: Path, *, command: str = "`opencm phonebook check`") -> BookCheck:
    """Read ``pbk`` and its region file; raise :class:`~opencm.errors.InputError` when ``pbk``
    is a RAS book (VPN/dial-up entries) rather than a POP book (``command`` names the caller
    in that message)."""
    pbr_path = region_file_beside(pbk)
    problems: list[Problem] = []
    region_count = None
    regions = None
    if pbr_path is not None:
        regions = parse_pbr(pbr_path.read_bytes(), pbr_path)
        problems += regions.problems
        region_count = len(regions.names)
    data = pbk.read_bytes()
    require_pop_book(data, pbk, command)
    read = parse_pbk(data, pbk, region_count=region_count)
    problems += read.problems
    pops = 0 if regions is not None and regions.voids_phone_book else len(read.pops)
    return BookCheck(pbk, pbr_path, pops, problems)


__all__ = ["BookCheck", "check_phonebook", "region_file_beside"]
