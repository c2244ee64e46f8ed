"""Finding and loading dialers: the ``opencm.dialers`` entry points and the admin's allow list.

Windows loads a custom dialer only when its DLL is named in an administrators-only registry value
(``HKLM\\System\\CurrentControlSet\\Services\\RasMan\\Parameters\\CustomDLL``), because a dialer
may run with system rights at logon. opencm keeps the same rule with Linux means:

- dialers are Python classes published in the ``opencm.dialers`` entry-point group
  (``NAME = "package.module:Class"``);
- the dialers shipped inside opencm itself are always allowed;
- any other dialer is loaded only when its name is on the allow list, by default
  ``/etc/opencm/dialers.allow``, which must be owned by root and not writable by group or others
  (its folder likewise). The format is described in ``docs/dialers.md``: one name per line,
  optionally followed by the exact entry-point value it must resolve to, ``#`` comments.

A dialer must provide all five entry points of seed 003; one missing and it is rejected with the
names of the missing ones.
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from opencm.errors import InputError, RefusedError
from opencm.links.api import ENTRY_POINTS, Dialer

GROUP = "opencm.dialers"
DEFAULT_ALLOW_LIST = Path("/etc/opencm/dialers.allow")
#: Built-in dialers live in this package and come with the opencm distribution.
BUILTIN_MODULE_PREFIX = "opencm.links."
#: The built-in dialers: the same table as opencm's own ``opencm.dialers`` entry points (a test
#: keeps the two equal). A plug-in can never take a built-in's name, so a built-in loads straight
#: from here instead of scanning every installed distribution's metadata, which costs ~10 ms on
#: the path of every connection.
BUILTIN_DIALERS = {
    "openvpn": "opencm.links.openvpn:OpenVPNDialer",
    "wireguard": "opencm.links.wireguard:WireGuardDialer",
    "modem": "opencm.links.modem:ModemDialer",
    "networkmanager": "opencm.links.networkmanager:NetworkManagerDialer",
    "ikev2": "opencm.links.ikev2:IKEv2Dialer",
}


@dataclass(frozen=True)
class DialerInfo:
    """One dialer found in the entry-point group."""

    name: str
    #: ``module:attribute`` as registered.
    target: str
    distribution: str | None
    builtin: bool


@dataclass(frozen=True)
class AllowEntry:
    name: str
    #: When set, the dialer's entry point must resolve to exactly this ``module:attribute``.
    target: str | None
    line: int


def discover() -> list[DialerInfo]:
    """Every dialer registered in the ``opencm.dialers`` group, built-ins first, by name."""
    found: dict[str, DialerInfo] = {}
    for entry_point in metadata.entry_points(group=GROUP):
        dist = entry_point.dist.name if entry_point.dist is not None else None
        info = DialerInfo(
            entry_point.name, entry_point.value, dist, _is_builtin(entry_point.value, dist)
        )
        previous = found.get(info.name)
        # A plug-in cannot take over a built-in's name: the built-in wins.
        if previous is None or (info.builtin and not previous.builtin):
            found[info.name] = info
    return sorted(found.values(), key=lambda info: (not info.builtin, info.name))


def _is_builtin(target: str, dist: str | None) -> bool:
    return target.startswith(BUILTIN_MODULE_PREFIX) and (dist is None or dist.lower() == "opencm")


def read_allow_list(path: Path) -> dict[str, AllowEntry]:
    """Parse the allow list after checking who may write it; raise :class:`RefusedError` if unsafe.

    An absent file allows no plug-in (built-ins need no entry).
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise RefusedError(
            f"cannot read the dialer allow list: {error.strerror}", path=path
        ) from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise RefusedError("the dialer allow list must be a regular file, not a link", path=path)
    _check_root_only(path, info, "the dialer allow list")
    parent = path.parent.resolve()
    _check_root_only(parent, parent.stat(), "the folder of the dialer allow list")
    entries: dict[str, AllowEntry] = {}
    for number, raw in enumerate(
        path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
    ):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) > 2 or (len(fields) == 2 and ":" not in fields[1]):
            raise InputError(
                f"expected 'NAME' or 'NAME module:Class', got {text!r}", path=path, line=number
            )
        entries[fields[0]] = AllowEntry(fields[0], fields[1] if len(fields) == 2 else None, number)
    return entries


def _check_root_only(path: Path, info: os.stat_result, what: str) -> None:
    if info.st_uid != 0:
        raise RefusedError(
            f"{what} must be owned by root (it belongs to uid {info.st_uid})", path=path
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        raise RefusedError(
            f"{what} must not be writable by group or others (mode {mode:04o})",
            path=path,
        )


def allowed(info: DialerInfo, allow: dict[str, AllowEntry], allow_list: Path) -> None:
    """Raise :class:`RefusedError` unless ``info`` may be loaded."""
    if info.builtin:
        return
    entry = allow.get(info.name)
    if entry is None:
        raise RefusedError(
            f"dialer {info.name!r} ({info.target}, from {info.distribution or 'unknown package'}) "
            f"is not on the administrator's allow list; root can add the line '{info.name}' "
            "to allow it",
            path=allow_list,
        )
    if entry.target is not None and entry.target != info.target:
        raise RefusedError(
            f"dialer {info.name!r} resolves to {info.target}, but the allow list pins it to "
            f"{entry.target}",
            path=allow_list,
            line=entry.line,
        )


def missing_entry_points(candidate: object) -> list[str]:
    """The seed's five entry points that ``candidate`` does not provide as callables."""
    return [name for name in ENTRY_POINTS if not callable(getattr(candidate, name, None))]


def load_dialer(name: str, *, allow_list: Path = DEFAULT_ALLOW_LIST) -> Dialer:
    """Load and instantiate the dialer registered as ``name``.

    Raises :class:`InputError` for an unknown name, a plug-in that fails to import or lacks entry
    points, and :class:`RefusedError` when the allow list does not admit it.
    """
    if name in BUILTIN_DIALERS:
        return instantiate(DialerInfo(name, BUILTIN_DIALERS[name], "opencm", builtin=True))
    infos = {info.name: info for info in discover()}
    info = infos.get(name)
    if info is None:
        known = ", ".join(sorted(infos)) or "none"
        raise InputError(
            f"no dialer named {name!r} is installed (installed: {known})", field="dialer"
        )
    if not info.builtin:
        allowed(info, read_allow_list(allow_list), allow_list)
    return instantiate(info)


def instantiate(info: DialerInfo) -> Dialer:
    """Import the entry point, build the dialer, check its five entry points."""
    try:
        factory: Any = _load(info)
        dialer: Any = factory() if isinstance(factory, type) else factory
    except Exception as error:  # a broken plug-in is the admin's problem to see, not a crash
        raise InputError(
            f"dialer {info.name!r} ({info.target}) failed to load: {error!r}"
        ) from error
    missing = missing_entry_points(dialer)
    if missing:
        raise InputError(
            f"dialer {info.name!r} ({info.target}) lacks the entry point(s) {', '.join(missing)}; "
            f"a dialer must provide all of {', '.join(ENTRY_POINTS)}",
            field="dialer",
        )
    if not isinstance(getattr(dialer, "name", None), str):
        raise InputError(f"dialer {info.name!r} ({info.target}) has no 'name' attribute")
    return dialer  # type: ignore[no-any-return]


def _load(info: DialerInfo) -> Any:
    if info.builtin:
        module, _, attribute = info.target.partition(":")
        return getattr(importlib.import_module(module), attribute)
    return _entry_point(info).load()


def _entry_point(info: DialerInfo) -> metadata.EntryPoint:
    candidates: Iterable[metadata.EntryPoint] = metadata.entry_points(group=GROUP, name=info.name)
    for entry_point in candidates:
        if entry_point.value == info.target:
            return entry_point
    raise InputError(f"dialer {info.name!r} disappeared while loading")
