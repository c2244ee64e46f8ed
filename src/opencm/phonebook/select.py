"""POP selection on the client: which numbers of a profile's phone books a user may dial.

A profile names its phone book in ``[ISP] PBFile`` (region file ``RegionFile``); a top-level
profile also carries its merged components' books as ``[opencm] PhoneBook&<SHORT>`` (the kit
writes them). Each POP goes through the profile's ``[ISP]`` filters (research/cm-formats.md
§1.6): list A (``FilterA&``, the main list) or list B (``FilterB&``, surcharged numbers in every
real profile), then the user's choices: country, region and service type (``[Service Types]``).

The chosen POP comes first and its alternates follow, in the phone book's order, within the same
country and region; that list is what the modem dialer tries in turn (``numbers``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError
from opencm.phonebook.pbk import Pop, parse_pbk
from opencm.phonebook.pbr import parse_pbr
from opencm.problems import Problem
from opencm.profile.isp import IspFilters, read_isp_filters
from opencm.profile.model import ServiceProfile, resolve_case_insensitive
from opencm.profile.rasbook import require_pop_book

OPENCM = "opencm"


@dataclass(frozen=True)
class OfferedPop:
    """A POP a profile offers, with where it comes from and the list it is in."""

    book: str
    pop: Pop
    region_name: str
    #: "A" (the main list) or "B" (the second list).
    list: str

    @property
    def display_number(self) -> str:
        """The canonical number as CM shows it: ``+<country> (<area>) <access>``."""
        area = f"({self.pop.area}) " if self.pop.area else ""
        return f"+{self.pop.country} {area}{self.pop.access}"

    @property
    def dial_string(self) -> str:
        """What the modem dials: area code and access number, digits and ``#*`` only.

        Dialing rules (outside line, long-distance prefix) are the administrator's: the modem
        dialer puts ``[opencm] DialPrefix`` in front.
        """
        return re.sub(r"[^0-9#*]", "", self.pop.area + self.pop.access)

    def to_json(self) -> dict[str, object]:
        pop = self.pop
        return {
            "book": self.book,
            "index": pop.index,
            "name": pop.name,
            "country": pop.country,
            "region": pop.region,
            "region_name": self.region_name,
            "number": self.display_number,
            "dial": self.dial_string,
            "flags": pop.flags,
            "list": self.list,
            "min_speed": pop.min_speed,
            "max_speed": pop.max_speed,
        }


@dataclass
class PhoneBookView:
    """Every POP the profile offers and the problems met while reading its books."""

    pops: list[OfferedPop]
    problems: list[Problem]
    books: list[Path]
    #: The profile's ``[ISP]`` filters the POPs were read through (they also judge service types).
    filters: IspFilters

    def select(
        self,
        *,
        country: int | None = None,
        region: str | None = None,
        service_type: str | None = None,
        lists: str = "A",
    ) -> list[OfferedPop]:
        """The POPs a user's choices leave (:func:`select` under this profile's filters)."""
        return select(
            self.pops,
            self.filters,
            country=country,
            region=region,
            service_type=service_type,
            lists=lists,
        )


def profile_phonebooks(profile: ServiceProfile) -> list[tuple[Path, Path | None]]:
    """(``.pbk``, ``.pbr`` or None) for the profile's own book and each merged component's."""
    books: list[tuple[Path, Path | None]] = []
    own = profile.phonebook_path()
    if own is not None:
        region = profile.cms.get("ISP", "RegionFile")
        books.append((own, profile.resolve(region) if region else _beside(own, ".pbr")))
    for entry in profile.cms.entries(OPENCM):
        if entry.key.casefold().startswith("phonebook&") and entry.value:
            pbk = profile.resolve(entry.value)
            books.append((pbk, _beside(pbk, ".pbr")))
    return books


def _beside(pbk: Path, suffix: str) -> Path | None:
    """The file named like ``pbk`` with ``suffix``, in any case, if it exists."""
    found = resolve_case_insensitive(pbk.parent, pbk.with_suffix(suffix).name)
    return found if found.exists() else None


def read_offered(profile: ServiceProfile) -> PhoneBookView:
    """Read the profile's phone books and keep the POPs its ``[ISP]`` filters let through."""
    filters = read_isp_filters(profile.cms)
    offered: list[OfferedPop] = []
    problems: list[Problem] = []
    paths: list[Path] = []
    for pbk_path, pbr_path in profile_phonebooks(profile):
        try:
            data = pbk_path.read_bytes()
        except OSError as error:
            raise InputError(
                f"cannot read the phone book: {error.strerror}", path=pbk_path
            ) from error
        require_pop_book(data, pbk_path, "the profile's [ISP] PBFile (dial-up POPs)")
        regions: list[str] = []
        if pbr_path is not None:
            try:
                pbr_data = pbr_path.read_bytes()
            except OSError as error:
                raise InputError(
                    f"cannot read the region file ([ISP] RegionFile): {error.strerror}",
                    path=pbr_path,
                ) from error
            pbr = parse_pbr(pbr_data, pbr_path)
            problems += pbr.problems
            if pbr.voids_phone_book:
                continue
            regions = pbr.names
        read = parse_pbk(data, pbk_path, region_count=len(regions) if pbr_path else None)
        problems += read.problems
        paths.append(pbk_path)
        for pop in read.pops:
            which = filters.which_list(pop.flags)
            if which is None:
                continue
            name = regions[pop.region - 1] if 0 < pop.region <= len(regions) else ""
            offered.append(OfferedPop(pbk_path.stem, pop, name, which))
    return PhoneBookView(offered, problems, paths, filters)


def select(
    pops: Sequence[OfferedPop],
    filters: IspFilters,
    *,
    country: int | None = None,
    region: str | None = None,
    service_type: str | None = None,
    lists: str = "A",
) -> list[OfferedPop]:
    """The POPs a user's choices leave, in phone-book order.

    ``region`` is a region name (case-insensitive) or its number; ``lists`` is "A", "B" or "AB".
    An unknown service type is an error naming the ones the profile offers.
    """
    if service_type is not None:
        known = list(filters.service_types)
        if service_type.casefold() not in {name.casefold() for name in known}:
            raise InputError(
                f"no service type {service_type!r}; this profile offers: "
                + (", ".join(known) or "none"),
                field="--service-type",
            )
    chosen: list[OfferedPop] = []
    for offered in pops:
        pop = offered.pop
        if offered.list not in lists:
            continue
        if country is not None and pop.country != country:
            continue
        if region is not None and not _region_matches(offered, region):
            continue
        if service_type is not None and not filters.service_type_passes(service_type, pop.flags):
            continue
        chosen.append(offered)
    return chosen


def _region_matches(offered: OfferedPop, region: str) -> bool:
    wanted = region.strip()
    if wanted.isdigit():
        return offered.pop.region == int(wanted)
    return offered.region_name.casefold() == wanted.casefold()


def ordered_pops(
    chosen: Sequence[OfferedPop], *, first: int | None = None, limit: int = 5
) -> list[OfferedPop]:
    """The POPs the modem dialer tries in turn: the chosen POP, then its alternates.

    ``first`` is the POP index the user picked (default: the first POP left); alternates are
    the other POPs in the same country and region, in phone-book order, up to ``limit`` POPs
    with distinct numbers.
    """
    if not chosen:
        return []
    primary = next((p for p in chosen if p.pop.index == first), None) if first else chosen[0]
    if primary is None:
        raise InputError(f"no POP with index {first} among the POPs offered", field="--pop")
    alternates = [
        p
        for p in chosen
        if p is not primary
        and p.pop.country == primary.pop.country
        and p.pop.region == primary.pop.region
    ]
    ordered: list[OfferedPop] = []
    seen: set[str] = set()
    for candidate in [primary, *alternates]:
        if candidate.dial_string and candidate.dial_string not in seen:
            seen.add(candidate.dial_string)
            ordered.append(candidate)
    return ordered[:limit]


def dial_numbers(
    chosen: Sequence[OfferedPop], *, first: int | None = None, limit: int = 5
) -> list[str]:
    """The numbers of :func:`ordered_pops` as written in the phone book (no dialing rules)."""
    return [pop.dial_string for pop in ordered_pops(chosen, first=first, limit=limit)]
