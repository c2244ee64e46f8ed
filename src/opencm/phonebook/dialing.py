"""Dialing rules and the POP a user chose: what the modem really dials, and why.

A POP's number is canonical (``+<country> (<area>) <access>``); the digits the modem dials depend
on where the user is, as Windows' "Dialing Rules" decide:

- same country and area code → the access number alone (a local call);
- same country, another area → the long-distance prefix (``1`` in country 1, else ``0``), the
  area code and the access number;
- another country → the international prefix (``011`` from country 1, else ``00``), the
  country code, the area code and the access number;

and in front of all of it the outside-line prefix (``9,``) and the calling-card prefix, in that
order. Tone or pulse goes to the modem (``ATDT``/``ATDP``). A POP's country is its phone-book
country number, read as the calling code (they agree for the countries CM's samples use).

The user's values (``opencm.profile.usersettings``) come first, the ``.cmp``'s first-time
values (written by the kit) next; ``docs/kit-spec.md`` and ``docs/dialers.md`` describe them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError
from opencm.phonebook.select import OfferedPop, ordered_pops, read_offered
from opencm.profile.model import ServiceProfile
from opencm.profile.usersettings import FAVORITE_KEYS, UserSettings

OPENCM = "opencm"
_PREFIX = re.compile(r"[0-9*#,Ww ]*")
RULE_KEYS = ("DialCountry", "DialAreaCode", "OutsideLine", "DialMode", "CallingCard",
             "LongDistance", "International")  # fmt: skip


@dataclass(frozen=True)
class DialingRules:
    """Where the user dials from."""

    country: int | None = None
    area_code: str = ""
    outside_line: str = ""
    tone: bool = True
    calling_card: str = ""
    long_distance: str | None = None
    international: str | None = None

    def number_for(self, country: int, area: str, access: str) -> str:
        """The digits to dial for a canonical number, these rules applied."""
        area_digits = _digits(area)
        access_digits = _digits(access)
        if self.country is None or (
            country == self.country and (not area_digits or area_digits == self.area_code)
        ):
            body = access_digits if self.country is not None else area_digits + access_digits
        elif country == self.country:
            body = self._long_distance() + area_digits + access_digits
        else:
            body = self._international() + str(country) + area_digits + access_digits
        return self.outside_line + self.calling_card + body

    def _long_distance(self) -> str:
        if self.long_distance is not None:
            return self.long_distance
        return "1" if self.country == 1 else "0"

    def _international(self) -> str:
        if self.international is not None:
            return self.international
        return "011" if self.country == 1 else "00"

    def to_json(self) -> dict[str, object]:
        return {
            "country": self.country,
            "area_code": self.area_code,
            "outside_line": self.outside_line,
            "dial_mode": "tone" if self.tone else "pulse",
            "calling_card": self.calling_card,
            "long_distance": self._long_distance() if self.country is not None else None,
            "international": self._international() if self.country is not None else None,
        }


def _digits(text: str) -> str:
    return re.sub(r"[^0-9#*]", "", text)


def check_prefix(value: str, field: str) -> str:
    """A dialing prefix: digits, ``*``, ``#``, ``,`` (pause) and ``W`` (wait for tone)."""
    if not _PREFIX.fullmatch(value) or len(value) > 40:
        raise InputError(
            f"{value!r} is not a dialing prefix (digits, '*', '#', ',' or 'W')", field=field
        )
    return value.replace(" ", "")


def rules_from(values: dict[str, str], where: str = "") -> DialingRules:
    """Rules from ``[opencm]`` keys (``DialCountry``, ``DialAreaCode``, ``OutsideLine``,
    ``DialMode``, ``CallingCard``, ``LongDistance``, ``International``)."""
    country_text = values.get("DialCountry", "").strip()
    if country_text and not country_text.isdigit():
        raise InputError(f"expected a country code, got {country_text!r}",
                         field=f"{where}DialCountry")  # fmt: skip
    mode = values.get("DialMode", "tone").strip().casefold() or "tone"
    if mode not in ("tone", "pulse"):
        raise InputError(f"expected tone or pulse, got {mode!r}", field=f"{where}DialMode")
    optional = {
        key: check_prefix(values[key], f"{where}{key}")
        for key in ("LongDistance", "International")
        if values.get(key, "").strip()
    }
    return DialingRules(
        country=int(country_text) if country_text else None,
        area_code=_digits(values.get("DialAreaCode", "")),
        outside_line=check_prefix(values.get("OutsideLine", ""), f"{where}OutsideLine"),
        tone=mode == "tone",
        calling_card=check_prefix(values.get("CallingCard", ""), f"{where}CallingCard"),
        long_distance=optional.get("LongDistance"),
        international=optional.get("International"),
    )


def read_rules(profile: ServiceProfile, user: UserSettings | None = None) -> DialingRules:
    user = user or UserSettings(profile)
    values = {key: value for key in RULE_KEYS if (value := user.get(key)) is not None}
    return rules_from(values, where=f"{profile.cmp_path or profile.cms_path}: [opencm] ")


@dataclass(frozen=True)
class DialChoice:
    """What a dial-up attempt dials: numbers in order, the POP they come from, the rules."""

    numbers: tuple[str, ...]
    pop: OfferedPop | None
    rules: DialingRules
    #: ``PhoneNumber`` or ``DialNumbers``: dialed as written, no POP, no rules.
    explicit: bool = False
    favorite: str | None = None


def _choice(user: UserSettings, profile: ServiceProfile, key: str) -> str | None:
    # The user's value first; the .cms's keys of the same name are the administrator's default.
    value = user.get(key)
    if value is None:
        value = (profile.cms.get(OPENCM, key) or "").strip() or None
    return value


def choose_numbers(profile: ServiceProfile, user: UserSettings | None = None) -> DialChoice:
    """The numbers a dial-up attempt tries now: the user's ``PhoneNumber`` (typed, or written
    by a pre-dial action), else the ``.cms``'s fixed ``DialNumbers``, else the chosen POP and
    its alternates with the dialing rules applied. Both are dialed as written.
    """
    user = user or UserSettings(profile)
    rules = read_rules(profile, user)
    favorite = user.get("CurrentFavorite")
    explicit = user.get("PhoneNumber")
    if explicit:
        numbers = tuple(n.strip() for n in explicit.split(";") if n.strip())
        return DialChoice(numbers, None, rules, explicit=True, favorite=favorite)
    fixed = tuple(
        n.strip() for n in (profile.cms.get(OPENCM, "DialNumbers") or "").split(";") if n.strip()
    )
    if fixed:
        return DialChoice(fixed, None, rules, explicit=True, favorite=favorite)
    if profile.phonebook_path() is not None:
        view = read_offered(profile)
        country = _choice(user, profile, "PopCountry")
        index = _choice(user, profile, "PopIndex")
        chosen = view.select(
            country=int(country) if country and country.isdigit() else None,
            region=_choice(user, profile, "PopRegion"),
            service_type=_choice(user, profile, "PopServiceType"),
        )
        first = int(index) if index and index.isdigit() else None
        ordered = ordered_pops(chosen, first=first)
        if ordered:
            legacy_prefix = (profile.cms.get(OPENCM, "DialPrefix") or "").strip()
            numbers = tuple(
                legacy_prefix + rules.number_for(pop.pop.country, pop.pop.area, pop.pop.access)
                for pop in ordered
            )
            return DialChoice(tuple(dict.fromkeys(numbers)), ordered[0], rules, favorite=favorite)
    return DialChoice((), None, rules, favorite=favorite)


def save_choice(
    profile: ServiceProfile,
    *,
    country: int | None = None,
    region: str | None = None,
    service_type: str | None = None,
    index: int | None = None,
    rules: dict[str, str] | None = None,
    number: str | None = None,
    favorite: str | None = None,
) -> Path:
    """Save the user's POP (checked against what the profile offers) and dialing rules.

    What ``opencm pops --choose`` and the front ends call. A chosen POP replaces an explicit
    ``PhoneNumber``; ``number`` sets one instead. Returns the file written (the user's ``.cmp``
    or their overlay, see :mod:`opencm.profile.usersettings`).
    """
    user = UserSettings(profile)
    updates: dict[str, str | None] = {}
    if rules:
        merged = {**{k: v for k in RULE_KEYS if (v := user.get(k)) is not None}, **rules}
        rules_from(merged, where="")  # raises naming the bad value
        updates.update(rules)
    if number is not None:
        for part in number.split(";"):
            if part.strip() and not re.fullmatch(r"[0-9*#,Ww ()+-]+", part.strip()):
                raise InputError(f"{part.strip()!r} is not a phone number", field="number")
        updates["PhoneNumber"] = number
    elif any(value is not None for value in (country, region, service_type, index)):
        view = read_offered(profile)
        chosen = view.select(
            country=country,
            region=region,
            service_type=service_type,
        )
        ordered = ordered_pops(chosen, first=index)
        if not ordered:
            raise InputError("no POP matches these choices", field="--country/--region")
        pop = ordered[0]
        updates.update(
            PopCountry=str(country) if country is not None else None,
            PopRegion=region,
            PopServiceType=service_type,
            PopIndex=str(pop.pop.index),
            PopName=pop.pop.name or None,
            PhoneNumber=None,
        )
    if favorite is not None and not updates:
        saved = user.favorite(favorite)
        updates = {key: saved.get(key) for key in FAVORITE_KEYS}
    return user.save(updates, favorite=favorite)


__all__ = [
    "DialChoice",
    "DialingRules",
    "check_prefix",
    "choose_numbers",
    "read_rules",
    "rules_from",
    "save_choice",
]
