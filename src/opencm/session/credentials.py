"""Where a session's user name and password come from (docs/session.md, "Credentials").

In order: ``--credentials FILE`` (for unattended use; the file must be the caller's and mode
0600), the saved store when the profile allows saving (``[Connection Manager]
HideRememberPassword`` not 1), then a prompt at the terminal when the profile asks for them
(``[opencm] Credentials=password``). The saved store is the system keyring when the optional
``keyring`` package is installed, else a 0600 file in ``$XDG_CONFIG_HOME/opencm/credentials/``.
"""

from __future__ import annotations

import importlib
import os
import stat
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
        module = importlib.import_module("keyring")
    except ImportError:
        return None
    # keyring's "fail" backend (no Secret Service on this desktop) has priority 0: use the file.
    if getattr(module.get_keyring(), "priority", 1) <= 0:
        return None
    return module


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


__all__ = [
    "load_saved",
    "may_save",
    "needs_credentials",
    "read_credentials_file",
    "save",
]
