"""A service profile on disk: the ``.cmp``, the ``.cms`` it points at, and the ``.inf``.

The installed layout follows "How Connection Manager Works": the ``.cmp`` sits in a folder, and
beside it a folder named by the profile's short (eight-character) name holds the ``.cms``, the phone
book and the action programs::

    Cm/CONTOSO.cmp             [Connection Manager] CMSFile=CONTOSO\\CONTOSO.cms
    Cm/CONTOSO/CONTOSO.cms
    Cm/CONTOSO/CONTOSO.inf
    Cm/CONTOSO/cmroute.dll …

Paths inside profiles are full, or relative to the ``.cmp`` folder, and Windows tools write them
with ``\\``; on Linux they are resolved case-insensitively, one component at a time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from opencm.errors import InputError
from opencm.profile.ini import IniFile

CM = "Connection Manager"


class ConnectionType(enum.IntEnum):
    """The value of ``%ConnectionType%``: 0 dial-up, 1 direct tunnel, 2 dial-up then tunnel."""

    DIALUP = 0
    DIRECT = 1
    DOUBLE = 2

    @property
    def dials(self) -> bool:
        return self in (ConnectionType.DIALUP, ConnectionType.DOUBLE)

    @property
    def tunnels(self) -> bool:
        return self in (ConnectionType.DIRECT, ConnectionType.DOUBLE)

    @classmethod
    def from_name(cls, name: str) -> ConnectionType:
        return {"dialup": cls.DIALUP, "direct": cls.DIRECT, "double": cls.DOUBLE}[name]

    @property
    def cli_name(self) -> str:
        return {0: "dialup", 1: "direct", 2: "double"}[int(self)]


def resolve_case_insensitive(base: Path, windows_path: str) -> Path:
    """Resolve a profile path (``CONTOSO\\cmroute.dll``) against ``base`` on a Linux disk.

    An absolute Linux path is used as it is. Each component that does not exist with the exact
    case is matched case-insensitively against the directory's entries; components that match
    nothing are kept as written, so the result names what was looked for.
    """
    text = windows_path.strip().replace("\\", "/")
    if "\0" in text:
        raise InputError(f"the path {windows_path!r} contains a NUL character")
    if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in text.split("/")):
        raise InputError(f"the path {windows_path!r} has a name longer than 255 bytes")
    if text.startswith("/"):
        return Path(text)
    current = base
    for part in [p for p in text.split("/") if p not in ("", ".")]:
        exact = current / part
        if part == ".." or exact.exists():
            current = exact
            continue
        try:
            match = next(
                (entry for entry in current.iterdir() if entry.name.casefold() == part.casefold()),
                None,
            )
        except OSError:
            match = None
        current = match if match is not None else exact
    return current


@dataclass
class ServiceProfile:
    """The files of one service profile and the facts the engine reads from them."""

    cms: IniFile
    cms_path: Path
    #: The ``.cmp``; None when only a ``.cms`` was given and no ``.cmp`` sits where it should.
    cmp: IniFile | None
    cmp_path: Path | None
    inf: IniFile | None = None
    inf_path: Path | None = None
    #: Problems met while locating the files (shown by ``profile check``).
    notes: list[str] = field(default_factory=list)

    @property
    def profile_dir(self) -> Path:
        """The ``.cmp`` folder: relative paths in the profile start here."""
        if self.cmp_path is not None:
            return self.cmp_path.parent
        service_dir = self.cms_path.parent
        # Installed layout without its .cmp: the .cms lives in <short>/ under the profile dir.
        if service_dir.name.casefold() == self.cms_path.stem.casefold():
            return service_dir.parent
        return service_dir

    @property
    def service_dir(self) -> Path:
        """The folder holding the ``.cms`` and the rest of the profile's files."""
        return self.cms_path.parent

    @property
    def short_name(self) -> str:
        return self.cms_path.stem

    @property
    def service_name(self) -> str:
        return self.cms.get(CM, "ServiceName") or self.short_name

    def resolve(self, windows_path: str) -> Path:
        try:
            return resolve_case_insensitive(self.profile_dir, windows_path)
        except InputError as error:
            raise InputError(error.message, path=self.cms_path) from None

    def supported_types(self) -> list[ConnectionType]:
        """Connection types the profile offers, from ``Dialup``/``Direct``/``Tunnel``."""
        tunnel = self.cms.get_bool(CM, "Tunnel", False)
        dialup = self.cms.get_bool(CM, "Dialup", not tunnel)
        direct = self.cms.get_bool(CM, "Direct", tunnel and not dialup)
        types: list[ConnectionType] = []
        if tunnel and direct:
            types.append(ConnectionType.DIRECT)
        if dialup:
            types.append(ConnectionType.DOUBLE if tunnel else ConnectionType.DIALUP)
        return types or [ConnectionType.DIALUP]

    def default_connection_type(self) -> ConnectionType:
        """``ConnectionType`` (0 dial-up, 1 direct) picks among what the profile offers."""
        offered = self.supported_types()
        wanted = self.cms.get_int(CM, "ConnectionType", 0)
        if wanted == 1 and ConnectionType.DIRECT in offered:
            return ConnectionType.DIRECT
        return offered[-1] if wanted == 0 and len(offered) > 1 else offered[0]

    @property
    def phonebook_url(self) -> str | None:
        """``[opencm] PhoneBookURL``: the Phone Book Service this profile updates from, if any.

        Its presence is what turns on the built-in phone-book update at post-connect.
        """
        return (self.cms.get("opencm", "PhoneBookURL") or "").strip() or None

    def phonebook_path(self) -> Path | None:
        pbfile = self.cms.get("ISP", "PBFile")
        return self.resolve(pbfile) if pbfile else None

    def base_macros(self) -> dict[str, str]:
        """Macro values the profile alone determines; the session adds the link's."""
        macros = {
            "ServiceName": self.service_name,
            "ServiceDir": str(self.service_dir),
            "Profile": str(self.cmp_path) if self.cmp_path else "",
            "UserPrefix": self.cms.get(CM, "UserNamePrefix") or "",
            "UserSuffix": self.cms.get(CM, "UserNameSuffix") or "",
            "DialRasEntry": self.cms.get(CM, "DUN") or "",
            "TunnelRasEntry": self.cms.get(CM, "TunnelDUN") or "",
            "TunnelServerAddress": self.cms.get(CM, "TunnelAddress") or "",
        }
        phonebook = self.phonebook_path()
        if phonebook is not None:
            macros["DialRasPhoneBook"] = str(phonebook)
            macros["TunnelRasPhoneBook"] = str(phonebook)
        # Empty values are "not defined": the action engine passes NULL for them.
        return {name: value for name, value in macros.items() if value}


def _single(candidates: list[Path], what: str, where: Path) -> Path | None:
    if len(candidates) > 1:
        names = ", ".join(sorted(p.name for p in candidates))
        raise InputError(f"more than one {what} here ({names}); name the one to use", path=where)
    return candidates[0] if candidates else None


def _glob_ci(folder: Path, suffix: str) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_file() and p.suffix.casefold() == suffix]
    except OSError as error:
        raise InputError(f"cannot read folder: {error.strerror}", path=folder) from error


def _find_cmp_for(cms_path: Path) -> Path | None:
    stem = cms_path.stem.casefold()
    for folder in (cms_path.parent.parent, cms_path.parent):
        for candidate in _glob_ci(folder, ".cmp"):
            if candidate.stem.casefold() == stem:
                return candidate
    return None


def load_profile(path: str | Path) -> ServiceProfile:
    """Load a profile from its ``.cmp``, its ``.cms`` or a folder holding either.

    Raises :class:`~opencm.errors.InputError` naming the file when something cannot be read.
    """
    target = Path(path)
    if not target.exists():
        raise InputError("no such file or folder", path=target)
    cmp_path: Path | None
    cms_path: Path | None
    notes: list[str] = []
    if target.is_dir():
        cmp_path = _single(_glob_ci(target, ".cmp"), ".cmp", target)
        cms_path = None
        if cmp_path is None:
            cms_path = _single(_glob_ci(target, ".cms"), ".cms", target)
            if cms_path is None:
                raise InputError("no .cmp or .cms file in this folder", path=target)
    elif target.suffix.casefold() == ".cmp":
        cmp_path, cms_path = target, None
    elif target.suffix.casefold() == ".cms":
        cmp_path, cms_path = None, target
    else:
        raise InputError("expected a .cmp or .cms file, or a profile folder", path=target)

    cmp: IniFile | None = None
    if cms_path is None:
        assert cmp_path is not None
        cmp = IniFile.load(cmp_path)
        cms_ref = cmp.get(CM, "CMSFile")
        if not cms_ref:
            raise InputError(
                "[Connection Manager] CMSFile is missing: the .cmp must name its .cms",
                path=cmp_path,
            )
        cms_path = resolve_case_insensitive(cmp_path.parent, cms_ref)
        if not cms_path.is_file():
            raise InputError(
                f"[Connection Manager] CMSFile={cms_ref} names a file that does not exist "
                f"({cms_path})",
                path=cmp_path,
                line=cmp.line_of(CM, "CMSFile"),
            )
    else:
        cmp_path = _find_cmp_for(cms_path)
        if cmp_path is None:
            notes.append(f"no {cms_path.stem}.cmp found beside or above {cms_path.name}")
        else:
            cmp = IniFile.load(cmp_path)

    cms = IniFile.load(cms_path)
    infs = _glob_ci(cms_path.parent, ".inf")
    # The .inf shares the .cms's short name; prefer the exact spelling when both exist.
    inf_path = next((p for p in infs if p.stem == cms_path.stem), None) or next(
        (p for p in infs if p.stem.casefold() == cms_path.stem.casefold()), None
    )
    return ServiceProfile(
        cms=cms,
        cms_path=cms_path,
        cmp=cmp,
        cmp_path=cmp_path,
        inf=IniFile.load(inf_path) if inf_path else None,
        inf_path=inf_path,
        notes=notes,
    )
