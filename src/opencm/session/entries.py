"""Telling dialers that a profile's entries are gone ("Custom Dialers":
``RasCustomDeleteEntryNotify``).

When a profile is uninstalled, every dialer one of its entries names (the VPN servers' links
and the dial-up modem) gets :meth:`~opencm.links.api.Dialer.entry_deleted` for that entry, so a
plug-in can forget what it stored for it. Only allow-listed dialers are asked; a dialer that
cannot be loaded or fails is reported, and never stops the uninstall.
"""

from __future__ import annotations

from dataclasses import dataclass

from opencm.errors import OpencmError
from opencm.links.api import DialEntry
from opencm.profile.model import ServiceProfile
from opencm.session.config import session_config
from opencm.session.options import DialerLookup, default_dialer_lookup


@dataclass(frozen=True)
class Notified:
    entry: str
    dialer: str
    #: None: told; else why it could not be told.
    problem: str | None = None


def profile_entries(profile: ServiceProfile) -> list[DialEntry]:
    config = session_config(profile)
    return [*config.tunnel_entries, *config.dial_entries]


def notify_entries_deleted(
    profile: ServiceProfile, lookup: DialerLookup = default_dialer_lookup
) -> list[Notified]:
    """Call ``entry_deleted`` of each entry's dialer; returns who was told (or why not)."""
    told: list[Notified] = []
    for entry in profile_entries(profile):
        try:
            lookup(entry.dialer).entry_deleted(entry)
        except OpencmError as error:
            told.append(Notified(entry.name, entry.dialer, str(error)))
        except Exception as error:  # a plug-in's bug must not stop the uninstall
            told.append(Notified(entry.name, entry.dialer, f"{type(error).__name__}: {error}"))
        else:
            told.append(Notified(entry.name, entry.dialer))
    return told


__all__ = ["Notified", "notify_entries_deleted", "profile_entries"]
