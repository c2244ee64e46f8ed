"""Checks that several built-in dialers make on an entry's settings.

Each dialer keeps its own words where they differ (what its config file is called); the checks
themselves live here once, so that every dialer refuses the same mistakes the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from opencm.errors import InputError
from opencm.links import codes, proc
from opencm.links.api import DialEntry, DialError


def check_settings(entry: DialEntry, known: Sequence[str]) -> dict[str, str]:
    """A copy of the entry's settings to normalise; refuse any setting the dialer does not know."""
    settings = dict(entry.settings)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise InputError(
            f"unknown setting(s) {', '.join(unknown)}; expected {', '.join(known)}",
            field=f"{entry.name}.{unknown[0]}",
        )
    return settings


def config_file(entry: DialEntry, *, needs: str, no_such: str) -> Path:
    """The absolute path of the entry's required ``config`` file.

    ``needs`` is the message when the setting is missing, ``no_such`` when the file is not there.
    """
    config = entry.settings.get("config", "").strip()
    if not config:
        raise InputError(needs, field=f"{entry.name}.config")
    path = Path(config).expanduser().absolute()
    if not path.is_file():
        raise InputError(no_such, path=path, field=f"{entry.name}.config")
    return path


def check_netns(entry: DialEntry, settings: Mapping[str, str]) -> None:
    """A ``netns`` setting, when given, must be a name ``ip netns`` accepts."""
    if settings.get("netns"):
        proc.check_netns_name(settings["netns"], field=f"{entry.name}.netns")


def check_seconds(entry: DialEntry, settings: Mapping[str, str], keys: Iterable[str]) -> None:
    """Each of ``keys`` that is set must be a positive number of seconds."""
    for key in keys:
        if settings.get(key):
            try:
                if float(settings[key]) <= 0:
                    raise ValueError
            except ValueError:
                raise InputError(
                    f"{settings[key]!r} is not a positive number of seconds",
                    field=f"{entry.name}.{key}",
                ) from None


def existing_netns(entry: DialEntry) -> str | None:
    """The entry's network namespace (None: the host's), which must exist when dialling."""
    netns = entry.settings.get("netns") or None
    if netns and not proc.netns_exists(netns):
        raise DialError(
            f"{entry.name}: network namespace {netns!r} does not exist",
            code=codes.BAD_ENTRY,
            retryable=False,
        )
    return netns
