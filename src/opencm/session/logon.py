"""What a logon screen shows and asks for one profile (the desktop client's, and any other).

"How Connection Manager Works": after the pre-init actions "the Connection Manager logon screen
appears. The user provides the information that this connection requires, as the administrator
determined when creating the service profile, and clicks Connect." The administrator decides it
in the ``.cms`` (``[Connection Manager]``: ``Logo``, ``Icon``, ``SmallIcon``, ``TrayIcon``,
``HelpFile``, ``HideDomain``, ``HideRememberPassword``, ``UserNamePrefix``/``UserNameSuffix``,
and opencm's ``[opencm] Credentials``); the ``.cmp`` gives first-time values ("By editing this
file, administrators can provide a first-time-only population of user information":
``UserName``, ``Domain``, ``RememberPassword``, ``DialAutomatically`` in its
``[Connection Manager]``, the keys Connection Manager 1.3 keeps there).

No Qt here: the desktop client shows these facts, and so could any other front end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opencm.links.api import Credentials
from opencm.profile.model import CM, ServiceProfile
from opencm.session.credentials import load_saved, may_save, needs_credentials


@dataclass(frozen=True)
class LogonFacts:
    service_name: str
    short_name: str
    #: The file a front end names when it connects (the ``.cmp``, else the ``.cms``).
    profile_path: Path
    icon: Path | None
    small_icon: Path | None
    tray_icon: Path | None
    logo: Path | None
    help_file: Path | None
    asks_credentials: bool
    shows_domain: bool
    may_save_password: bool
    user_prefix: str
    user_suffix: str
    first_user: str
    first_domain: str
    remember_password: bool
    connect_automatically: bool

    def realm_user(self, typed: str) -> str:
        """The user name the server gets: the realm prefix and suffix around what was typed
        (not added twice when the user typed them already)."""
        name = typed.strip()
        if not name:
            return name
        if self.user_prefix and not name.startswith(self.user_prefix):
            name = self.user_prefix + name
        if self.user_suffix and not name.endswith(self.user_suffix):
            name += self.user_suffix
        return name


def _file(profile: ServiceProfile, key: str) -> Path | None:
    written = (profile.cms.get(CM, key) or "").strip()
    if not written:
        return None
    path = profile.resolve(written)
    return path if path.is_file() else None


def logon_facts(profile: ServiceProfile) -> LogonFacts:
    cmp = profile.cmp
    icon = _file(profile, "Icon")

    def first(key: str) -> str:
        return ((cmp.get(CM, key) if cmp is not None else None) or "").strip()

    def first_flag(key: str) -> bool:
        return cmp is not None and cmp.get_bool(CM, key, False)

    return LogonFacts(
        service_name=profile.service_name,
        short_name=profile.short_name,
        profile_path=profile.cmp_path or profile.cms_path,
        icon=icon,
        small_icon=_file(profile, "SmallIcon") or icon,
        tray_icon=_file(profile, "TrayIcon") or _file(profile, "SmallIcon") or icon,
        logo=_file(profile, "Logo"),
        help_file=_file(profile, "HelpFile"),
        asks_credentials=needs_credentials(profile),
        shows_domain=not profile.cms.get_bool(CM, "HideDomain", False),
        may_save_password=may_save(profile),
        user_prefix=profile.cms.get(CM, "UserNamePrefix") or "",
        user_suffix=profile.cms.get(CM, "UserNameSuffix") or "",
        first_user=first("UserName"),
        first_domain=first("Domain"),
        remember_password=first_flag("RememberPassword"),
        connect_automatically=first_flag("DialAutomatically"),
    )


def saved_credentials(profile: ServiceProfile) -> Credentials | None:
    """What "Save password" kept last time (keyring, or the 0600 file), if the profile allows."""
    return load_saved(profile)


__all__ = ["LogonFacts", "logon_facts", "saved_credentials"]
