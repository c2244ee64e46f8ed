"""``opencm install`` / ``uninstall`` / ``list``: putting a verified profile package in place.

Install checks the package's signature and every hash before it writes anything (see
:mod:`.package`), then writes the profile in the layout of "How Connection Manager Works" under the
scope's ``Cm`` folder, a desktop entry that opens the logon dialog (``opencm-gui --profile <cmp>``),
and last an install record listing exactly what it added. Uninstall removes exactly what the record
lists, so files a user or the client added later (saved settings, logs) are never touched.

Re-installing (an update) keeps what belongs to the user and replaces the rest:

- the installed ``.cmp`` stays, with only the keys the package's ``.cmp`` sets rewritten, so the
  user's saved user name and other keys survive;
- files in the service folder that the previous install did not add (saved credentials, a
  client's state) are left alone;
- a phone book updated through the Phone Book Service since (its ``<BOOK>.ver`` holds a higher
  number than the package's) is kept, with its ``.pbk``/``.pbr``;
- a package older than the installed version is refused unless ``force`` (rollback protection);
  the same version re-installs (a repair).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import minisign

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write, atomic_write_all
from opencm.kit.package import VerifiedPackage, check_member_name, read_package
from opencm.kit.roots import Scope
from opencm.kit.spec import check_short_name
from opencm.profile.ini import IniFile
from opencm.secrecy import file_mode

_INTEGER = re.compile(r"\s*([0-9]+)")
_PHONEBOOK_SUFFIXES = (".pbk", ".pbr", ".ver")


@dataclass
class InstallRecord:
    short_name: str
    service_name: str
    version: int
    scope: str
    #: Files added, relative to the scope's ``Cm`` folder (``CONTOSO.cmp``, ``CONTOSO/…``).
    files: list[str]
    #: Folders created for them, relative to ``Cm``.
    dirs: list[str]
    desktop_entry: str | None
    signer: str
    installed_at: str

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=1) + "\n").encode("utf-8")

    @classmethod
    def load(cls, path: Path) -> InstallRecord:
        try:
            raw = json.loads(path.read_text("utf-8"))
            record = cls(**raw)
        except (OSError, ValueError, TypeError) as error:
            raise InputError(f"unreadable install record ({error})", path=path) from error
        for name in [*record.files, *record.dirs]:
            check_member_name(name, path)  # a tampered record must not aim outside Cm
        return record

    def cmp_path(self, scope: Scope) -> Path:
        return scope.profiles_dir / f"{self.short_name}.cmp"


@dataclass
class InstallResult:
    record: InstallRecord
    scope: Scope
    previous_version: int | None = None
    #: What was kept from the previous install (relative paths) and why.
    kept: list[tuple[str, str]] = field(default_factory=list)


def record_path(scope: Scope, short: str) -> Path:
    return scope.records_dir / f"{short}.json"


def find_record(scope: Scope, short: str) -> InstallRecord | None:
    """The record for ``short`` (matched case-insensitively, like the profile's names)."""
    if not scope.records_dir.is_dir():
        return None
    for path in scope.records_dir.glob("*.json"):
        if path.stem.casefold() == short.casefold():
            return InstallRecord.load(path)
    return None


def read_version_file(data: bytes) -> int | None:
    """A ``<BOOK>.ver`` file as an integer (its first number), None when it holds none."""
    match = _INTEGER.match(data.decode("utf-8", errors="replace"))
    return int(match.group(1)) if match else None


def _desktop_arg(arg: str) -> str:
    """Quote one Exec argument (Desktop Entry spec) and escape it as a string value."""
    if re.search(r"[\s\"'\\><~|&;$*?#()`]", arg):
        arg = '"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"'
    return arg.replace("\\", "\\\\").replace("%", "%%")


def gui_command() -> str:
    """The desktop client to name in a menu entry.

    A desktop session starts menu entries with its own PATH, which holds neither a virtual
    environment's ``bin`` nor, often, ``~/.local/bin``: name the ``opencm-gui`` installed beside
    the Python running opencm by its full path when there is one, else rely on PATH.
    """
    beside = Path(sys.executable).parent / "opencm-gui"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("opencm-gui")
    return str(Path(found).absolute()) if found else "opencm-gui"


def desktop_entry(service_name: str, cmp_path: Path) -> bytes:
    # The menu entry opens the profile's logon dialog (the desktop client, opencm[gui]): it
    # runs without a terminal, so `opencm connect` could ask nothing and would skip every
    # action that interacts with the user. `opencm connect` stays the scriptable path.
    exec_line = " ".join(_desktop_arg(a) for a in [gui_command(), "--profile", str(cmp_path)])
    name = service_name.replace("\n", " ")
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Version=1.0\n"
        f"Name={name}\n"
        f"Comment=Connect to {name} with opencm\n"
        f"Exec={exec_line}\n"
        "Icon=network-vpn\n"
        "Terminal=false\n"
        "Categories=Network;\n"
    ).encode()


def desktop_path(scope: Scope, short: str) -> Path:
    return scope.applications_dir / f"opencm-{short.lower()}.desktop"


def _merged_cmp(installed: Path, package_cmp: bytes) -> bytes:
    """The installed ``.cmp`` with only the package's keys rewritten (user keys survive)."""
    ini = IniFile.load(installed)
    new = IniFile.parse(package_cmp)
    for section in new.sections():
        for entry in new.entries(section):
            if ini.get(section, entry.key) != entry.value:
                ini.set(section, entry.key, entry.raw_value)
    return ini.render()


def _kept_phonebooks(scope: Scope, package: VerifiedPackage) -> dict[str, str]:
    """Phone-book files to keep because the installed book is newer than the package's.

    A book's version is its ``<BOOK>.ver`` read as an integer; a package without one offers
    version 0, so any book the client updated since wins over it.
    """
    kept: dict[str, str] = {}
    for path in package.files:
        pure = PurePosixPath(path)
        if pure.suffix.casefold() != ".pbk":
            continue
        installed_ver = scope.profiles_dir / pure.with_suffix(".ver")
        if not installed_ver.is_file():
            continue
        have = read_version_file(installed_ver.read_bytes())
        offered_data = package.files.get(str(pure.with_suffix(".ver")))
        offered = (read_version_file(offered_data) if offered_data is not None else None) or 0
        if have is None or have <= offered:
            continue
        for suffix in _PHONEBOOK_SUFFIXES:
            sibling = str(pure.with_suffix(suffix))
            if (scope.profiles_dir / sibling).is_file():
                kept[sibling] = f"phone book version {have} is newer than the package's {offered}"
    return kept


def install_package(
    package_path: str | Path,
    scope: Scope,
    *,
    trusted_keys: Sequence[minisign.PublicKey] | None = None,
    force: bool = False,
) -> InstallResult:
    """Verify and install a package into ``scope``; nothing is written if verification fails."""
    keys = list(trusted_keys) if trusted_keys is not None else scope.trusted_keys()
    package = read_package(package_path, keys)
    manifest = package.manifest
    short = manifest.short_name
    check_short_name(short)
    old = find_record(scope, short)
    root = scope.profiles_dir
    if old is not None:
        if manifest.version < old.version and not force:
            raise RefusedError(
                f"{short} version {old.version} is installed; this package is the older version "
                f"{manifest.version} (pass --force to roll back)",
                path=package_path,
            )
    else:
        clashes = (
            [p for p in root.iterdir() if p.stem.casefold() == short.casefold()]
            if root.is_dir()
            else []
        )
        if clashes and not force:
            raise RefusedError(
                f"{clashes[0]} exists and was not installed by opencm; remove it or pass --force",
                path=package_path,
            )

    kept: dict[str, str] = {}
    writes: dict[str, bytes] = {}
    for path, data in package.files.items():
        installed = root / path
        if old is not None and path == f"{short}.cmp" and installed.is_file():
            writes[path] = _merged_cmp(installed, data)
            kept.setdefault(path, "user keys in the .cmp")
        else:
            writes[path] = data
    if old is not None:
        for path, reason in _kept_phonebooks(scope, package).items():
            writes.pop(path, None)
            kept[path] = reason

    dirs = sorted({str(p) for path in package.files for p in PurePosixPath(path).parents} - {"."})
    for folder in dirs:
        (root / folder).mkdir(parents=True, exist_ok=True)
    # All files are staged before any is renamed: a full disk leaves the installed profile as
    # it was. A symbolic link planted at an installed file's path is refused.
    atomic_write_all(
        [
            (
                root / path,
                data,
                file_mode(executable=package.is_executable(path), secret=package.is_private(path)),
            )
            for path, data in writes.items()
        ]
    )
    if old is not None:
        for path in set(old.files) - set(package.files):
            with contextlib.suppress(FileNotFoundError):
                (root / path).unlink()
    scope.applications_dir.mkdir(parents=True, exist_ok=True)
    desktop = desktop_path(scope, short)
    atomic_write(desktop, desktop_entry(manifest.service_name, root / f"{short}.cmp"))
    record = InstallRecord(
        short_name=short,
        service_name=manifest.service_name,
        version=manifest.version,
        scope=scope.name,
        files=sorted(package.files),
        dirs=dirs,
        desktop_entry=str(desktop),
        signer=package.signer,
        installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    scope.records_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(record_path(scope, short), record.to_bytes())
    return InstallResult(
        record,
        scope,
        previous_version=old.version if old else None,
        kept=sorted(kept.items()) if old is not None else [],
    )


@dataclass
class UninstallResult:
    record: InstallRecord
    removed: list[str]
    #: Folders left because they hold files opencm did not install.
    left: list[str]


def uninstall(short: str, scope: Scope) -> UninstallResult:
    record = find_record(scope, short)
    if record is None:
        raise InputError(f"{short} is not installed ({scope.name}: {scope.profiles_dir})")
    root = scope.profiles_dir
    removed: list[str] = []
    for path in record.files:
        target = root / path
        if target.is_file() or target.is_symlink():
            target.unlink()
            removed.append(path)
    if record.desktop_entry:
        entry = Path(record.desktop_entry)
        if entry.parent == scope.applications_dir and entry.is_file():
            entry.unlink()
    left: list[str] = []
    for folder in sorted(record.dirs, key=lambda d: d.count("/"), reverse=True):
        target = root / folder
        try:
            target.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            left.append(folder)
    record_path(scope, record.short_name).unlink()
    return UninstallResult(record, removed, left)


def list_installed(scopes: Iterable[Scope]) -> list[tuple[Scope, InstallRecord]]:
    found: list[tuple[Scope, InstallRecord]] = []
    for scope in scopes:
        if scope.records_dir.is_dir():
            found += [
                (scope, InstallRecord.load(p)) for p in sorted(scope.records_dir.glob("*.json"))
            ]
    return found


def find_installed_cmp(name: str, scopes: Iterable[Scope]) -> Path | None:
    """The ``.cmp`` of an installed profile named by its short name (first scope wins).

    ``opencm connect CONTOSO`` and the boot unit (``opencm-connect@CONTOSO``) name profiles
    this way; pass ``[user_scope(), all_users_scope()]`` for a user, all users only for boot.
    """
    for scope in scopes:
        record = find_record(scope, name)
        if record is not None and record.cmp_path(scope).is_file():
            return record.cmp_path(scope)
    return None
