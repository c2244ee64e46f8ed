"""Where a session's user name and password come from (docs/session.md, "Credentials").

In order (:func:`credentials_for`): ``--credentials FILE`` (for unattended use; the file must be
the caller's and mode 0600), the saved store when the profile allows saving (``[Connection
Manager] HideRememberPassword`` not 1), then the user is asked (the terminal's prompt, a front
end's dialog) when the profile asks for them (``[opencm] Credentials=password``). The saved
store is the system keyring when the optional ``keyring`` package is installed, else a 0600 file
in ``$XDG_CONFIG_HOME/opencm/credentials/``.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write
from opencm.links.api import Credentials
from opencm.profile.model import CM, ServiceProfile

KEYS = ("username", "password", "domain")
KEYRING_SERVICE = "opencm"


def read_credentials_file(path: Path) -> Credentials:
    """``key=value`` lines (username, password, domain); ``#`` starts a comment line."""
    try:
        info = path.stat()
    except OSError as error:
        raise InputError(
            f"cannot read the credentials file: {error.strerror}", path=path
        ) from error
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RefusedError(
            f"the credentials file is readable by others (mode {stat.S_IMODE(info.st_mode):04o});"
            " chmod 600 it",
            path=path,
        )
    if info.st_uid != os.geteuid():
        raise RefusedError("the credentials file belongs to another user", path=path)
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().casefold()
        if not sep or key not in KEYS:
            raise InputError(
                f"expected one of {', '.join(k + '=' for k in KEYS)}", path=path, line=number
            )
        values[key] = value.strip()
    return Credentials(**values)


def may_save(profile: ServiceProfile) -> bool:
    return not profile.cms.get_bool(CM, "HideRememberPassword", False)


def needs_credentials(profile: ServiceProfile) -> bool:
    return (profile.cms.get("opencm", "Credentials") or "none").strip().casefold() == "password"


def _keyring() -> Any | None:
    try:
        return importlib.import_module("keyring")
    except ImportError:
        return None


def _store_file(profile: ServiceProfile) -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "opencm" / "credentials" / f"{profile.short_name}.conf"


def load_saved(profile: ServiceProfile) -> Credentials | None:
    if not may_save(profile):
        return None
    keyring = _keyring()
    if keyring is not None:
        user = keyring.get_password(KEYRING_SERVICE, f"{profile.short_name}:username")
        password = keyring.get_password(KEYRING_SERVICE, f"{profile.short_name}:password")
        if user or password:
            return Credentials(username=user, password=password)
    path = _store_file(profile)
    return read_credentials_file(path) if path.exists() else None


def save(profile: ServiceProfile, credentials: Credentials) -> str:
    """Store ``credentials`` for ``profile``; returns where (the keyring, or the file)."""
    if not may_save(profile):
        raise RefusedError(
            "the profile does not allow saving the password "
            "([Connection Manager] HideRememberPassword=1)",
            path=profile.cms_path,
        )
    keyring = _keyring()
    if keyring is not None:
        keyring.set_password(
            KEYRING_SERVICE, f"{profile.short_name}:username", credentials.username or ""
        )
        keyring.set_password(
            KEYRING_SERVICE, f"{profile.short_name}:password", credentials.password or ""
        )
        return "the keyring"
    path = _store_file(profile)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = "".join(
        f"{key}={getattr(credentials, key)}\n" for key in KEYS if getattr(credentials, key)
    )
    atomic_write(path, text.encode(), mode=0o600)
    return str(path)


#: Asks the user for a user name and password (a terminal prompt, a dialog).
AskCredentials = Callable[[], Credentials]


@dataclass(frozen=True)
class Gathered:
    credentials: Credentials
    #: Where they were saved (``remember`` and newly given), else None.
    saved_in: str | None = None


def credentials_for(
    profile: ServiceProfile,
    *,
    credentials_file: Path | None = None,
    ask: AskCredentials | None = None,
    remember: bool = False,
) -> Gathered:
    """The credentials a connection of ``profile`` uses, by the policy above.

    ``ask`` is None when nobody is at the screen: a profile that needs credentials, with none
    given or saved, is then an :class:`InputError`. ``remember`` saves credentials newly given
    (from the file or the user), if the profile allows it.
    """
    if credentials_file is not None:
        found = read_credentials_file(credentials_file)
    else:
        saved = load_saved(profile)
        if saved is not None:
            return Gathered(saved)
        if not needs_credentials(profile):
            return Gathered(Credentials())
        if ask is None:
            raise InputError(
                "the profile needs a user name and password: pass --credentials FILE",
                path=profile.cms_path,
                field="[opencm] Credentials",
            )
        found = ask()
    return Gathered(found, save(profile, found) if remember else None)


__all__ = [
    "AskCredentials",
    "Gathered",
    "credentials_for",
    "load_saved",
    "may_save",
    "needs_credentials",
    "read_credentials_file",
    "save",
]
