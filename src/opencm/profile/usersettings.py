"""The user's own values of a profile: what the logon screen and the dial-up choices remember.

"How Connection Manager Works": the ``.cmp`` "contains user-related information";
an administrator may fill it in for a "first-time-only population of user information", and
users overwrite it. opencm keeps the user's values there:

- ``[Connection Manager] UserName``, ``Domain``, ``InternetUserName``: the logon defaults
  (CM's own keys; passwords are never written here, see ``opencm.session.credentials``);
- ``[opencm]`` in the ``.cmp``: the chosen POP (``PopCountry``, ``PopRegion``,
  ``PopServiceType``, ``PopIndex``, ``PopName``), the dialing rules (``DialCountry``,
  ``DialAreaCode``, ``OutsideLine``, ``DialMode``, ``CallingCard``, ``LongDistance``,
  ``International``), an explicit ``PhoneNumber`` (typed by the user, or written by a pre-dial
  action: read after the pre-dial actions have run), the modem values a profile leaves to the
  user (``ModemDevice``/``ModemBaud``/``ModemInit`` when the ``.cms`` says ``ask``) and
  ``CurrentFavorite``;
- ``[Favorite <name>]`` sections: saved sets of those choices (CM's "Use settings for").

A profile installed for all users has a ``.cmp`` the user cannot write; the user's values then
live in ``$XDG_CONFIG_HOME/opencm/user/<SHORT>.cmp`` (same shape), which is read over the
``.cmp``. ``docs/profile-files.md`` lists the keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from opencm.errors import InputError
from opencm.fsutil import atomic_write
from opencm.paths import config_home
from opencm.profile.ini import IniFile
from opencm.profile.model import CM, ServiceProfile

OPENCM = "opencm"
#: The ``[Connection Manager]`` keys of the logon screen's first-time values.
LOGON_KEYS = ("UserName", "Domain", "InternetUserName")
#: The ``[opencm]`` keys a user (or a pre-dial action) sets in the ``.cmp``.
CHOICE_KEYS = (
    "PopCountry", "PopRegion", "PopServiceType", "PopIndex", "PopName", "PhoneNumber",
    "DialCountry", "DialAreaCode", "OutsideLine", "DialMode", "CallingCard", "LongDistance",
    "International", "ModemDevice", "ModemBaud", "ModemInit", "CurrentFavorite",
)  # fmt: skip
FAVORITE_PREFIX = "Favorite "
#: What a favorite remembers: the POP, a typed number and the dialing rules.
FAVORITE_KEYS = tuple(
    key for key in CHOICE_KEYS if not key.startswith("Modem") and key != "CurrentFavorite"
)
_MAX_VALUE = 256


def overlay_path(profile: ServiceProfile) -> Path:
    return config_home() / "opencm" / "user" / f"{profile.short_name}.cmp"


def _section_of(key: str) -> str:
    return CM if key in LOGON_KEYS else OPENCM


def _check(key: str, value: str) -> None:
    if key not in LOGON_KEYS and key not in CHOICE_KEYS:
        raise InputError(f"'{key}' is not a user setting (expected one of "
                         f"{', '.join(LOGON_KEYS + CHOICE_KEYS)})", field=key)  # fmt: skip
    if len(value) > _MAX_VALUE or any(char in value for char in "\r\n\0"):
        raise InputError(f"expected one line of at most {_MAX_VALUE} characters", field=key)


class UserSettings:
    """The user's values of one profile, read fresh from disk on every :meth:`reload`."""

    def __init__(self, profile: ServiceProfile) -> None:
        self.profile = profile
        self.cmp: IniFile | None = None
        self.overlay: IniFile | None = None
        self.reload()

    def reload(self) -> None:
        """Read the ``.cmp`` (and the overlay) again: a pre-dial action may have changed it."""
        cmp_path = self.profile.cmp_path
        self.cmp = IniFile.load(cmp_path) if cmp_path is not None and cmp_path.is_file() else None
        overlay = overlay_path(self.profile)
        self.overlay = IniFile.load(overlay) if overlay.is_file() else None

    def get(self, key: str, section: str | None = None) -> str | None:
        section = section or _section_of(key)
        for ini in (self.overlay, self.cmp):
            if ini is not None:
                value = ini.get(section, key)
                if value is not None and value.strip():
                    return value.strip()
        return None

    def values(self) -> dict[str, str]:
        """Every user value set, by key (overlay over ``.cmp``)."""
        found: dict[str, str] = {}
        for key in LOGON_KEYS + CHOICE_KEYS:
            value = self.get(key)
            if value is not None:
                found[key] = value
        return found

    def overlay_values(self) -> dict[str, str]:
        """The choices kept in the user's own file beside a ``.cmp`` they cannot write: what a
        client sends the root daemon, which does not read users' homes."""
        if self.overlay is None:
            return {}
        return {
            key: value
            for key in CHOICE_KEYS
            if (value := (self.overlay.get(OPENCM, key) or "").strip())
        }

    def favorites(self) -> list[str]:
        names: list[str] = []
        for ini in (self.cmp, self.overlay):
            for section in ini.sections() if ini is not None else []:
                if section.startswith(FAVORITE_PREFIX):
                    name = section[len(FAVORITE_PREFIX) :]
                    if name not in names:
                        names.append(name)
        return names

    def favorite(self, name: str) -> dict[str, str]:
        section = FAVORITE_PREFIX + name
        values: dict[str, str] = {}
        for ini in (self.cmp, self.overlay):
            for entry in ini.entries(section) if ini is not None else []:
                if entry.key in FAVORITE_KEYS and entry.value:
                    values[entry.key] = entry.value
        if not values:
            known = ", ".join(self.favorites()) or "none"
            raise InputError(f"no favorite named '{name}' (saved: {known})", field="favorite")
        return values

    # -- writing ---------------------------------------------------------------------------------

    def _target(self) -> tuple[IniFile, Path]:
        """The user's own file: the ``.cmp`` when the user may write it, else the overlay."""
        cmp_path = self.profile.cmp_path
        if cmp_path is not None and self.cmp is not None and os.access(cmp_path, os.W_OK):
            return self.cmp, cmp_path
        path = overlay_path(self.profile)
        if self.overlay is None:
            self.overlay = IniFile.new(path)
            self.overlay.set("Profile Format", "Version", "5")
        return self.overlay, path

    def save(
        self,
        values: Mapping[str, str | None],
        *,
        favorite: str | None = None,
    ) -> Path:
        """Write ``values`` (None removes a key) to the user's file; returns that file.

        With ``favorite`` the choice keys are also kept under ``[Favorite <name>]`` and
        ``CurrentFavorite`` names it.
        """
        for key, value in values.items():
            _check(key, value or "")
        ini, path = self._target()
        for key, value in values.items():
            section = _section_of(key)
            if value is None or value == "":
                ini.delete(section, key)
            else:
                ini.set(section, key, value)
        if favorite is not None:
            _check("CurrentFavorite", favorite)
            if not favorite.strip() or "]" in favorite:
                raise InputError("a favorite needs a name without ']'", field="favorite")
            for key in FAVORITE_KEYS:  # the whole choice, so that switching restores it
                value = ini.get(OPENCM, key)
                if value is None and ini is self.overlay and self.cmp is not None:
                    value = self.cmp.get(OPENCM, key)
                if value:
                    ini.set(FAVORITE_PREFIX + favorite, key, value)
                else:
                    ini.delete(FAVORITE_PREFIX + favorite, key)
            ini.set(OPENCM, "CurrentFavorite", favorite)
        if ini is self.overlay:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, ini.render(), mode=0o600 if ini is self.overlay else None)
        self.reload()
        return path


def choice_updates(pairs: Iterable[tuple[str, object | None]]) -> dict[str, str]:
    """Keep the given (key, value) pairs whose value is not None, as text."""
    return {key: str(value) for key, value in pairs if value is not None}


__all__ = [
    "CHOICE_KEYS",
    "FAVORITE_KEYS",
    "LOGON_KEYS",
    "UserSettings",
    "choice_updates",
    "overlay_path",
]
