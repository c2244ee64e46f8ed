"""The ``[ISP]`` filters of a ``.cms``: which phone-book POPs a profile offers.

Every real profile carries the same block (research/cm-formats.md §1.6)::

    Mask&Surcharge=0x0040     Match&Surcharge=0x0040
    Mask&SurchargeSignon=0x0041  Match&SurchargeSignon=0x0040
    FilterA&=NosurchargeSignon
    FilterB&=SurchargeSignon

A POP passes filter *X* when ``POP flags & Mask&X == Match&X``; every ``Match`` value is the
"positive" state of MS-CPSP's (partly inverted) flag bits. ``FilterA&`` and ``FilterB&`` name the
filters of the two lists CM offers; opencm reads A as the main list and B as the second list
(surcharged numbers in every real profile). ``[Service Types]`` maps a name shown to the user
(``Modem``, ``ISDN MultiCast``) to a filter. The reading of A/B is opencm's, as no public
document says more; ``docs/profile-files.md`` records it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from opencm.profile.ini import IniFile

_MASK = re.compile(r"^(Mask|Match)&(.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class PopFilter:
    name: str
    mask: int
    match: int

    def passes(self, flags: int) -> bool:
        return flags & self.mask == self.match


@dataclass(frozen=True)
class IspFilters:
    """The filters a profile defines and the ones its two POP lists use."""

    filters: Mapping[str, PopFilter]
    #: Filter names of the main (A) and second (B) list; empty means "every POP".
    list_a: tuple[str, ...]
    list_b: tuple[str, ...]
    #: ``[Service Types]``: the name a user picks -> a filter name.
    service_types: Mapping[str, str]

    def _passes_all(self, names: tuple[str, ...], flags: int) -> bool:
        # A name the profile never defined filters nothing out, as an absent key reads as 0/0.
        return all(
            self.filters[n.casefold()].passes(flags) for n in names if n.casefold() in self.filters
        )

    def which_list(self, flags: int) -> str | None:
        """``"A"``, ``"B"`` or None: the list a POP with these flags appears in."""
        if self._passes_all(self.list_a, flags):
            return "A"
        if self.list_b and self._passes_all(self.list_b, flags):
            return "B"
        return None

    def service_type_passes(self, service_type: str, flags: int) -> bool:
        wanted = service_type.strip().casefold()
        for label, filter_name in self.service_types.items():
            if label.casefold() == wanted:
                return self._passes_all((filter_name,), flags)
        raise KeyError(service_type)


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"[\s,]+", value or "") if part)


def read_isp_filters(cms: IniFile) -> IspFilters:
    masks: dict[str, int] = {}
    matches: dict[str, int] = {}
    spelled: dict[str, str] = {}
    for entry in cms.entries("ISP"):
        found = _MASK.match(entry.key)
        if not found:
            continue
        kind, name = found.group(1).casefold(), found.group(2)
        value = cms.get_int("ISP", entry.key, 0)
        (masks if kind == "mask" else matches).setdefault(name.casefold(), value)
        spelled.setdefault(name.casefold(), name)
    filters = {
        key: PopFilter(spelled[key], masks.get(key, 0), matches.get(key, 0)) for key in spelled
    }
    service_types = {e.key: e.value for e in cms.entries("Service Types")}
    return IspFilters(
        filters=filters,
        list_a=_names(cms.get("ISP", "FilterA&")),
        list_b=_names(cms.get("ISP", "FilterB&")),
        service_types=service_types,
    )
