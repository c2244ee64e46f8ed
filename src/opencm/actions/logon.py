"""Which custom actions may run at logon/boot: opencm's "WinLogon Actions".

"WinLogon Actions" is the registry key "How Connection Manager Works" describes.

Windows runs no custom action while a profile connects from the logon screen, because such
actions run with system rights, unless the administrator lists the program under
``HKLM\\…\\Connection Manager\\<Profile>\\WinLogon Actions`` (name = program, data 0 = system
folder, 1 = profile folder). opencm's equivalent is a root-owned allow list,
``/etc/opencm/logon-actions.allow`` (``OPENCM_LOGON_ALLOW`` moves it), one entry a line::

    # PROFILE  PROGRAM       LOCATION
    CONTOSO    routes.sh     1     # <profile's service folder>/routes.sh
    CONTOSO    proxy-off     0     # /usr/lib/opencm/actions/proxy-off

An unattended (logon/boot) connection runs an action only if :func:`logon_allowed` says so:
the file must exist, be owned by root and not writable by group or others (and so must its
folder), and list the profile with the program at exactly that location; the program itself
(not a symlink) must be root-owned and not writable by others either, since it runs as root.
Anything else, a missing file included, means no: logon actions are off until an administrator
enables them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write
from opencm.paths import system_actions_dir, system_config_dir

LOCATION_SYSTEM = 0
LOCATION_PROFILE = 1


def allow_list_path() -> Path:
    override = os.environ.get("OPENCM_LOGON_ALLOW")
    return Path(override) if override else system_config_dir() / "logon-actions.allow"


@dataclass(frozen=True)
class AllowEntry:
    profile: str
    program: str
    location: int
    line: int = 0

    def program_path(self, service_dir: Path | None) -> Path | None:
        if self.location == LOCATION_SYSTEM:
            return system_actions_dir() / self.program
        return service_dir / self.program if service_dir is not None else None

    def render(self) -> str:
        return f"{self.profile} {self.program} {self.location}"


def check_trusted_file(path: Path, owner_uid: int = 0) -> None:
    """Refuse a file (and its folder) that someone other than ``owner_uid`` could change."""
    for target, what in ((path, path.name), (path.parent, f"folder of {path.name}")):
        info = target.lstat()
        if stat.S_ISLNK(info.st_mode):
            raise RefusedError(f"the {what} is a symlink", path=target)
        if info.st_uid != owner_uid:
            raise RefusedError(
                f"the {what} must be owned by uid {owner_uid}, not {info.st_uid}", path=target
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise RefusedError(
                f"the {what} is writable by group or others (mode {info.st_mode & 0o777:o})",
                path=target,
            )


def parse_allow_list(text: str, path: Path | None = None) -> list[AllowEntry]:
    entries: list[AllowEntry] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        head, _, location = line.rpartition(" ")
        profile, _, program = head.strip().partition(" ")
        program = program.strip()
        if not profile or not program or location not in ("0", "1"):
            raise InputError(
                "expected 'PROFILE PROGRAM LOCATION' with LOCATION 0 (system action folder) "
                "or 1 (profile folder)",
                path=path,
                line=number,
            )
        if "/" in program or program in (".", ".."):
            raise InputError(f"PROGRAM {program!r} must be a file name", path=path, line=number)
        entries.append(AllowEntry(profile, program, int(location), number))
    return entries


def read_allow_list(path: Path | None = None, *, owner_uid: int = 0) -> list[AllowEntry]:
    """The entries of a trustworthy allow list; [] when there is none."""
    target = path or allow_list_path()
    if not target.exists():
        return []
    check_trusted_file(target, owner_uid)
    try:
        text = target.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the allow list ({error})", path=target) from error
    return parse_allow_list(text, target)


@dataclass(frozen=True)
class LogonDecision:
    allowed: bool
    reason: str


def check_logon(
    profile: str,
    service_dir: Path | None,
    program_path: str | Path,
    *,
    allow_file: Path | None = None,
    owner_uid: int = 0,
) -> LogonDecision:
    """Whether ``program_path`` may run at logon/boot for ``profile``, and why (or why not)."""
    try:
        entries = read_allow_list(allow_file, owner_uid=owner_uid)
    except (InputError, RefusedError) as error:
        return LogonDecision(False, f"allow list not trusted: {error}")
    if not entries:
        return LogonDecision(False, "logon actions are off (no allow list entries)")
    wanted = Path(os.path.realpath(program_path))
    for entry in entries:
        if entry.profile.casefold() != profile.casefold():
            continue
        allowed = entry.program_path(service_dir)
        if allowed is None:
            continue
        # The allowed file itself, never what a link in its place points at.
        allowed = Path(os.path.realpath(allowed.parent)) / allowed.name
        if allowed != wanted:
            continue
        try:
            # It runs with system rights: nobody else may be able to change it.
            check_trusted_file(allowed, owner_uid)
        except (OSError, RefusedError) as error:
            return LogonDecision(False, f"allowed by line {entry.line}, but: {error}")
        return LogonDecision(True, f"allowed by line {entry.line}")
    return LogonDecision(False, f"{wanted} is not on the logon allow list for {profile}")


def logon_allowed(
    profile: object,
    program_path: str | Path,
    *,
    allow_file: Path | None = None,
    owner_uid: int = 0,
) -> bool:
    """The action engine's question. ``profile`` is a ServiceProfile or a short name."""
    short = getattr(profile, "short_name", None) or str(profile)
    service_dir = getattr(profile, "service_dir", None)
    return check_logon(
        short, service_dir, program_path, allow_file=allow_file, owner_uid=owner_uid
    ).allowed


def write_allow_list(path: Path, entries: list[AllowEntry]) -> None:
    header = "# opencm logon actions: PROFILE PROGRAM LOCATION (0 system folder, 1 profile)\n"
    body = "".join(entry.render() + "\n" for entry in entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (header + body).encode("utf-8"), mode=0o644)


def edit_allow_list(
    path: Path, profile: str, program: str, location: int | None, *, allow: bool
) -> list[AllowEntry]:
    """Add (``allow``) or remove an entry; returns the new list. The caller checks for root."""
    entries = read_allow_list(path, owner_uid=os.geteuid()) if path.exists() else []
    parse_allow_list(f"{profile} {program} {location if location is not None else 1}")

    def same(entry: AllowEntry) -> bool:
        return (
            entry.profile.casefold() == profile.casefold()
            and entry.program == program
            and (location is None or entry.location == location)
        )

    kept = [entry for entry in entries if not same(entry)]
    if allow:
        kept.append(
            AllowEntry(profile, program, LOCATION_PROFILE if location is None else location)
        )
    write_allow_list(path, kept)
    return kept
