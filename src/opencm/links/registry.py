"""Finding and loading dialers: the ``opencm.dialers`` entry points and the admin's allow list.

Windows loads a custom dialer only when its DLL is named in an administrators-only registry value
(``HKLM\\System\\CurrentControlSet\\Services\\RasMan\\Parameters\\CustomDLL``), because a dialer
may run with system rights at logon. opencm keeps the same rule with Linux means:

- dialers are Python classes published in the ``opencm.dialers`` entry-point group
  (``NAME = "package.module:Class"``);
- the dialers shipped inside opencm itself are always allowed;
- any other dialer is loaded only when its name is on the allow list, by default
  ``/etc/opencm/dialers.allow`` (``$OPENCM_SYSTEM_CONFIG_DIR/dialers.allow``), which must be
  owned by root and not writable by group or others (its folder likewise). The format is
  described in ``docs/dialers.md``: one name per line, optionally followed by the exact
  entry-point value it must resolve to, ``#`` comments.

A dialer must provide all five entry points of Microsoft's "Custom Dialers"; one missing and it is
rejected with the names of the missing ones.

This registry is the one place that knows which dialers exist: a profile's ``[opencm]
Link&<server>`` and a kit spec's ``vpn.link`` name any tunnel dialer it allows
(:func:`tunnel_link`), and each dialer class says which profile keys it reads
(:class:`~opencm.links.api.ProfileKeys`).
"""

from __future__ import annotations

import importlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from opencm import paths
from opencm.errors import InputError, RefusedError
from opencm.links.api import (
    DEFAULT_PROFILE_KEYS,
    ENTRY_POINTS,
    Dialer,
    ProfileKeys,
    Stage,
)

GROUP = "opencm.dialers"
ALLOW_LIST_NAME = "dialers.allow"
#: The tunnel link of a server that names none (a profile's ``Link&``, a kit's ``vpn.link``).
DEFAULT_LINK = "openvpn"
#: The built-in dialers, the one list of them: opencm registers no entry points for its own
#: dialers, so a built-in loads straight from here instead of scanning every installed
#: distribution's metadata (milliseconds on the path of every connection), and a plug-in can
#: never take a built-in's name. Each class declares the profile keys it reads
#: (``profile_keys``); the order here is the order ``Link&`` choices are offered in.
BUILTIN_DIALERS = {
    "openvpn": "opencm.links.openvpn:OpenVPNDialer",
    "wireguard": "opencm.links.wireguard:WireGuardDialer",
    "modem": "opencm.links.modem:ModemDialer",
    "networkmanager": "opencm.links.networkmanager:NetworkManagerDialer",
    "ikev2": "opencm.links.ikev2:IKEv2Dialer",
    "sstp": "opencm.links.sstp:SSTPDialer",
}


def default_allow_list(env: Mapping[str, str] | None = None) -> Path:
    """The administrator's allow list: ``/etc/opencm/dialers.allow``."""
    return paths.system_config_dir(env) / ALLOW_LIST_NAME


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
    """Every dialer: the built-ins, then the ``opencm.dialers`` plug-ins by name."""
    found = {
        name: DialerInfo(name, target, "opencm", builtin=True)
        for name, target in BUILTIN_DIALERS.items()
    }
    for entry_point in metadata.entry_points(group=GROUP):
        if entry_point.name in found:
            continue  # a plug-in cannot take over a built-in's name (nor another's)
        dist = entry_point.dist.name if entry_point.dist is not None else None
        found[entry_point.name] = DialerInfo(entry_point.name, entry_point.value, dist, False)
    return sorted(found.values(), key=lambda info: (not info.builtin, info.name))


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


@dataclass(frozen=True)
class DialerStatus:
    """One dialer as ``opencm dialers list`` and a front end's settings page show it."""

    info: DialerInfo
    #: Why opencm will not load it (the allow list, or a broken plug-in); None: it loads.
    refused_because: str | None
    #: What it reads from a profile; None when it is refused (a refused plug-in is never
    #: imported, not even to ask).
    profile_keys: ProfileKeys | None

    @property
    def allowed(self) -> bool:
        return self.refused_because is None


def survey(*, allow_list: Path | None = None) -> list[DialerStatus]:
    """Every dialer there is, and whether opencm may load it, in :func:`discover` order."""
    where = allow_list or default_allow_list()
    allow_error: str | None = None
    try:
        allow = read_allow_list(where)
    except (InputError, RefusedError) as error:
        allow, allow_error = {}, str(error)
    statuses: list[DialerStatus] = []
    for info in discover():
        reason: str | None = None
        keys: ProfileKeys | None = None
        try:
            if not info.builtin:
                if allow_error is not None:
                    raise RefusedError(allow_error)
                allowed(info, allow, where)
            keys = profile_keys(info)
        except (InputError, RefusedError) as error:
            reason = str(error)
        statuses.append(DialerStatus(info, reason, keys))
    return statuses


def missing_entry_points(candidate: object) -> list[str]:
    """The five entry points ("Custom Dialers") that ``candidate`` does not provide as callables."""
    return [name for name in ENTRY_POINTS if not callable(getattr(candidate, name, None))]


def resolve(name: str, *, allow_list: Path | None = None) -> DialerInfo:
    """The dialer registered as ``name``, once it is known to be loadable by policy.

    Raises :class:`InputError` for an unknown name and :class:`RefusedError` when the allow list
    (``allow_list``, default :func:`default_allow_list`) does not admit a plug-in.
    """
    if name in BUILTIN_DIALERS:
        return DialerInfo(name, BUILTIN_DIALERS[name], "opencm", builtin=True)
    infos = {info.name: info for info in discover()}
    info = infos.get(name)
    if info is None:
        known = ", ".join(sorted(infos)) or "none"
        raise InputError(
            f"no dialer named {name!r} is installed (installed: {known})", field="dialer"
        )
    if not info.builtin:
        where = allow_list or default_allow_list()
        allowed(info, read_allow_list(where), where)
    return info


def load_dialer(name: str, *, allow_list: Path | None = None) -> Dialer:
    """Load and instantiate the dialer registered as ``name``.

    Raises :class:`InputError` for an unknown name, a plug-in that fails to import or lacks entry
    points, and :class:`RefusedError` when the allow list does not admit it.
    """
    return instantiate(resolve(name, allow_list=allow_list))


def profile_keys(info: DialerInfo) -> ProfileKeys:
    """What the dialer's class declares it reads from a profile (imports it, builds nothing)."""
    declared = getattr(_factory(info), "profile_keys", DEFAULT_PROFILE_KEYS)
    if not isinstance(declared, ProfileKeys):
        raise InputError(
            f"dialer {info.name!r} ({info.target}): profile_keys must be an "
            "opencm.links.api.ProfileKeys"
        )
    return declared


def tunnel_link(
    name: str, *, allow_list: Path | None = None, named_by: str | None = None
) -> ProfileKeys:
    """The profile keys of ``name`` as a profile's tunnel link (``[opencm] Link&<server>``, a
    kit spec's ``vpn.link``): a built-in tunnel dialer or a plug-in the allow list admits.

    Raises :class:`InputError` naming the links there are when ``name`` is none of them (or is
    the dial-up modem), and :class:`RefusedError` naming the allow list for a plug-in it does
    not admit; ``named_by`` (say "[opencm] Link&Main in X.cms") is added to that message, whose
    location is the allow list.
    """
    if name in BUILTIN_DIALERS or name in {info.name for info in discover()}:
        try:
            info = resolve(name, allow_list=allow_list)
        except RefusedError as error:
            if named_by is None:
                raise
            raise RefusedError(
                f"{error.message} (named by {named_by})", path=error.path, line=error.line
            ) from error
        keys = profile_keys(info)
        if keys.stage is Stage.TUNNEL:
            return keys
    names = ", ".join(link_names(allow_list=allow_list))
    raise InputError(f"expected one of {names}, got {name!r}")


def link_names(*, allow_list: Path | None = None) -> list[str]:
    """The names a profile may give a tunnel link: the built-in tunnel dialers in their table's
    order, then the installed plug-ins the allow list admits, by name."""
    names = [
        name
        for name, target in BUILTIN_DIALERS.items()
        if profile_keys(DialerInfo(name, target, "opencm", builtin=True)).stage is Stage.TUNNEL
    ]
    plugins = [info for info in discover() if not info.builtin]
    if plugins:
        where = allow_list or default_allow_list()
        try:
            allow = read_allow_list(where)
        except (InputError, RefusedError):
            allow = {}  # an unreadable allow list admits no plug-in (loading one says why)
        for info in plugins:
            try:
                allowed(info, allow, where)
            except RefusedError:
                continue
            names.append(info.name)
    return names


def _factory(info: DialerInfo) -> Any:
    """The class (or factory) the entry point names, imported."""
    try:
        return _load(info)
    except Exception as error:  # a broken plug-in is the admin's problem to see, not a crash
        raise InputError(
            f"dialer {info.name!r} ({info.target}) failed to load: {error!r}"
        ) from error


def instantiate(info: DialerInfo) -> Dialer:
    """Import the entry point, build the dialer, check its five entry points."""
    factory = _factory(info)
    try:
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
