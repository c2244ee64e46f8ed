"""Where a session's user name and password come from (docs/session.md, "Credentials").

In order (:func:`credentials_for`): ``--credentials FILE`` (for unattended use; the file must be
the caller's and mode 0600), the saved store when the profile allows saving (``[Connection
Manager] HideRememberPassword`` not 1), then the user is asked (the terminal's prompt, a front
end's dialog) when the profile asks for them (``[opencm] Credentials=password``), with the
``.cmp``'s user name as the default. The saved store is the system keyring when the optional
``keyring`` package is installed, else a 0600 file in ``$XDG_CONFIG_HOME/opencm/credentials/``.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write
from opencm.links.api import Credentials
from opencm.paths import config_home
from opencm.profile.model import CM, ConnectionType, ServiceProfile
from opencm.profile.usersettings import UserSettings

KEYS = ("username", "password", "domain")
KEYRING_SERVICE = "opencm"
#: Which credentials: the logon's (the tunnel's, or the dial-up's when only dialing) or the
#: Internet (dial-up) ones of a double dial.
LOGON, INET = "logon", "inet"


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


def _store_file(profile: ServiceProfile, kind: str = LOGON) -> Path:
    suffix = "" if kind == LOGON else f".{kind}"
    return config_home() / "opencm" / "credentials" / f"{profile.short_name}{suffix}.conf"


def _keyring_name(profile: ServiceProfile, kind: str, key: str) -> str:
    return f"{profile.short_name}:{key}" if kind == LOGON else f"{profile.short_name}:{kind}:{key}"


def load_saved(profile: ServiceProfile, kind: str = LOGON) -> Credentials | None:
    if not may_save(profile):
        return None
    keyring = _keyring()
    if keyring is not None:
        user = keyring.get_password(KEYRING_SERVICE, _keyring_name(profile, kind, "username"))
        password = keyring.get_password(KEYRING_SERVICE, _keyring_name(profile, kind, "password"))
        if user or password:
            return Credentials(username=user, password=password)
    path = _store_file(profile, kind)
    try:
        saved = path.exists()
    except OSError as error:  # e.g. $HOME is another user's (sudo/runuser keep root's HOME)
        raise InputError(
            f"cannot look for saved credentials: {error.strerror}; is $HOME ({Path.home()})"
            " your own?",
            path=path,
        ) from None
    return read_credentials_file(path) if saved else None


def _check_storable(credentials: Credentials) -> None:
    """Refuse values the line-based store cannot hold as they are.

    A line break in a user name would start a new ``key=value`` line, so ``jo\ndomain=EVIL``
    would come back as a domain the user never typed; no real user name, password or domain
    contains a line break or NUL, so they are refused rather than escaped (escaping would change
    the meaning of backslashes in hand-written files, where ``CONTOSO\\jo`` is common).
    """
    for key in KEYS:
        value = getattr(credentials, key) or ""
        bad = next((c for c in value if c in "\r\n\0"), None)
        if bad is not None:
            raise InputError(
                f"the {key} contains a line break or NUL ({bad!r}): it cannot be saved"
            )


def needs_inet_credentials(profile: ServiceProfile, connection_type: ConnectionType) -> bool:
    """A double dial asks for its own Internet (dial-up) credentials unless the profile says
    to send the tunnel's (``[Connection Manager] UseSameUserName=1``)."""
    return connection_type is ConnectionType.DOUBLE and not profile.cms.get_bool(
        CM, "UseSameUserName", False
    )


def logon_defaults(profile: ServiceProfile, kind: str = LOGON) -> Credentials:
    """The logon screen's defaults: the user's ``.cmp`` values ("How Connection Manager Works":
    first-time values the administrator may fill in, overwritten by the user's), never a
    password."""
    user = UserSettings(profile)
    if kind == INET:
        return Credentials(username=user.get("InternetUserName"))
    return Credentials(username=user.get("UserName"), domain=user.get("Domain"))


def remember_logon(profile: ServiceProfile, credentials: Credentials, kind: str = LOGON) -> Path:
    """Save the user name (and domain) typed back to the user's ``.cmp`` (no password)."""
    user = UserSettings(profile)
    if kind == INET:
        return user.save({"InternetUserName": credentials.username})
    return user.save({"UserName": credentials.username, "Domain": credentials.domain})


def with_realm(profile: ServiceProfile, credentials: Credentials) -> Credentials:
    """The user name the server gets: ``UserNamePrefix`` + name + ``UserNameSuffix``."""
    prefix = (profile.cms.get(CM, "UserNamePrefix") or "").strip()
    suffix = (profile.cms.get(CM, "UserNameSuffix") or "").strip()
    if not credentials.username or not (prefix or suffix):
        return credentials
    return replace(credentials, username=f"{prefix}{credentials.username}{suffix}")


def stage_credentials(
    profile: ServiceProfile,
    connection_type: ConnectionType,
    logon: Credentials,
    inet: Credentials | None,
) -> dict[str, Credentials]:
    """The credentials each link gets ("dial", "tunnel").

    The realm goes on the name the first server sees: the dial-up server's when the profile
    dials (an ISP's roaming realm), the VPN server's on a direct connection. A double dial
    sends the Internet credentials to the dial-up server, or the logon ones when
    ``UseSameUserName=1``; the tunnel always gets the logon credentials.
    """
    if connection_type is ConnectionType.DIRECT:
        return {"tunnel": with_realm(profile, logon)}
    if connection_type is ConnectionType.DIALUP:
        return {"dial": with_realm(profile, logon)}
    dial = logon if not needs_inet_credentials(profile, connection_type) else inet
    return {"dial": with_realm(profile, dial or Credentials()), "tunnel": logon}


def save(profile: ServiceProfile, credentials: Credentials, kind: str = LOGON) -> str:
    _check_storable(credentials)
    if not may_save(profile):
        raise RefusedError(
            "the profile does not allow saving the password "
            "([Connection Manager] HideRememberPassword=1)",
            path=profile.cms_path,
        )
    keyring = _keyring()
    if keyring is not None:
        for key in ("username", "password"):
            keyring.set_password(
                KEYRING_SERVICE, _keyring_name(profile, kind, key), getattr(credentials, key) or ""
            )
        return "the keyring"
    path = _store_file(profile, kind)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = "".join(
        f"{key}={getattr(credentials, key)}\n" for key in KEYS if getattr(credentials, key)
    )
    atomic_write(path, text.encode(), mode=0o600)
    return str(path)


#: Asks the user (a terminal prompt, a dialog): given the defaults (the ``.cmp``'s user name and
#: domain, never a password) and the kind (:data:`LOGON` or :data:`INET`), returns what was typed.
AskCredentials = Callable[[Credentials, str], Credentials]


@dataclass(frozen=True)
class Gathered:
    credentials: Credentials
    #: The ``.cmp`` the typed user name was written back to (only when the user was asked).
    remembered_in: Path | None = None
    #: Where the credentials were saved (``remember`` and newly given), else None.
    saved_in: str | None = None


def credentials_for(
    profile: ServiceProfile,
    *,
    kind: str = LOGON,
    credentials_file: Path | None = None,
    ask: AskCredentials | None = None,
    remember: bool = False,
) -> Gathered:
    """The logon (``kind`` :data:`LOGON`) or Internet (:data:`INET`) credentials a connection of
    ``profile`` uses, by the policy above.

    ``ask`` is None when nobody is at the screen: a profile that needs credentials, with none
    given or saved, is then an :class:`InputError`. A typed user name is written back to the
    ``.cmp``; ``remember`` saves credentials newly given (from the file or the user), if the
    profile allows it.
    """
    remembered_in = None
    if credentials_file is not None:
        found = read_credentials_file(credentials_file)
    else:
        saved = load_saved(profile, kind)
        if saved is not None:
            return Gathered(saved)
        if not needs_credentials(profile):
            return Gathered(Credentials())
        if ask is None:
            what = "Internet " if kind == INET else ""
            option = "--inet-credentials" if kind == INET else "--credentials"
            raise InputError(
                f"the profile needs a {what.lower()}user name and password: pass {option} FILE",
                path=profile.cms_path,
                field="[opencm] Credentials",
            )
        found = ask(logon_defaults(profile, kind), kind)
        remembered_in = remember_logon(profile, found, kind)
    return Gathered(found, remembered_in, save(profile, found, kind) if remember else None)


__all__ = [
    "INET",
    "LOGON",
    "AskCredentials",
    "Gathered",
    "credentials_for",
    "load_saved",
    "logon_defaults",
    "may_save",
    "needs_credentials",
    "needs_inet_credentials",
    "read_credentials_file",
    "remember_logon",
    "save",
    "stage_credentials",
    "with_realm",
]
