"""The root daemon's private copy of a profile a user asked it to connect.

A profile's actions, its OpenVPN config and its phone book are used by the root daemon with
root's rights, so they must be what the administrator installed, and stay so for the whole
session. :func:`snapshot_profile` opens the profile once (``opencm.safepath``: the user's path
resolved with the user's rights, then walked again from ``/`` without following links, every
folder and file checked on its descriptor), and copies the ``.cmp`` and the service folder into
a root-only folder under the daemon's state folder. The session runs from that copy: the
``.cms`` and every action program, config and phone book it names are read there, never again
through a path the user chose.

Only profiles under an allowed root are copied: the all-users profile folder
(``/etc/opencm/Cm``), or what the daemon was given with ``--profile-root``. What the copy may
hold is bounded (files, bytes, depth), and a symbolic link, FIFO or device inside is refused.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError
from opencm.phonebook.update import book_files, install_files
from opencm.profile.ini import IniFile
from opencm.profile.model import CM, ServiceProfile
from opencm.safepath import Caller, CheckedWalk, UnsafePath, is_under, read_fd, resolve_as

#: Bounds on one copy: a profile is kilobytes to a few megabytes (phone books).
MAX_FILE = 64 * 1024 * 1024
MAX_TOTAL = 256 * 1024 * 1024
MAX_ENTRIES = 4096
MAX_DEPTH = 8
_PROFILE_TEXT = frozenset({".cmp", ".cms", ".inf"})
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:|\\\\|//|/)")


@dataclass(frozen=True)
class Snapshot:
    """A checked copy: ``target`` (inside ``root``) stands for ``origin`` (the real path)."""

    origin: Path
    root: Path
    target: Path
    #: The allowed root the origin lies under (its folders were checked from here down).
    trusted_root: str = "/"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def installed(self, copied: Path) -> Path:
        """Where the installed profile has the file or folder ``copied`` (inside the copy)."""
        depth = len(self.target.relative_to(self.root).parts)
        return self.origin.parents[depth - 1] / copied.relative_to(self.root)

    def shown(self, text: str) -> str:
        """``text`` with paths inside the copy told as the installed profile's."""
        return text.replace(str(self.root), str(self.installed(self.root)))

    def install_book_back(self, profile: ServiceProfile) -> None:
        """The session's post-connect update changed the copy's phone book: install it where
        the administrator installed the profile, so every user's next session has it.

        Only the book's ``.pbk``/``.pbr``/``.ver``, already verified against the profile's
        PhoneBookKey by the update; the installed folder is checked again (still root's alone)
        before root writes into it."""
        pbk = profile.phonebook_path()
        if pbk is None:
            return
        service = pbk.parent
        destination = self.installed(service)
        walk = CheckedWalk(Caller(0, 0, frozenset({0})), self.trusted_root)
        os.close(walk.open_dir(str(destination)))
        copied = book_files(service, pbk.stem)
        installed = book_files(destination, pbk.stem)
        install_files(
            destination,
            [
                (installed[suffix], copied[suffix].read_bytes())
                for suffix in (".pbk", ".pbr", ".ver")
                if copied[suffix].is_file()
            ],
        )


@dataclass
class _Budget:
    bytes: int = MAX_TOTAL
    entries: int = MAX_ENTRIES


def _match(fd: int, shown: str, name: str) -> str:
    """The entry of the open folder ``fd`` named ``name``, exact case first (profiles are
    written on Windows, which ignores case)."""
    names = sorted(os.listdir(fd))
    if name in names:
        return name
    for candidate in names:
        if candidate.casefold() == name.casefold():
            return candidate
    raise InputError("no such file", path=os.path.join(shown, name))


def _single(fd: int, shown: str, suffix: str) -> str | None:
    found = [n for n in sorted(os.listdir(fd)) if n.casefold().endswith(suffix)]
    if len(found) > 1:
        raise InputError(f"more than one {suffix} here ({', '.join(found)}); name one", path=shown)
    return found[0] if found else None


class _Copier:
    def __init__(self, walk: CheckedWalk) -> None:
        self.walk = walk
        self.budget = _Budget()

    def file(self, parent: int, shown: str, name: str, dest: Path) -> bytes:
        # The profile's own text (.cmp, .cms, .inf) is parsed and may be quoted in the user's
        # errors: the user must be able to read it. Other files (a 0600 key, a config) need
        # not be: the daemon uses them for the user, never shows them.
        parsed = Path(name).suffix.casefold() in _PROFILE_TEXT
        fd = self.walk.open_file(
            parent, shown, name, min(MAX_FILE, self.budget.bytes), readable=parsed
        )
        try:
            mode = os.fstat(fd).st_mode
            data = read_fd(fd, min(MAX_FILE, self.budget.bytes), os.path.join(shown, name))
        finally:
            os.close(fd)
        self.budget.bytes -= len(data)
        # Execute bits are kept (action programs); set-id bits and others' write never.
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o755)
        with os.fdopen(out, "wb") as handle:
            handle.write(data)
        return data

    def tree(self, fd: int, shown: str, dest: Path, depth: int = 0) -> None:
        """Copy the open folder ``fd`` into ``dest`` (made here); ``fd`` stays open."""
        if depth > MAX_DEPTH:
            raise UnsafePath(f"{shown}: folders nest deeper than {MAX_DEPTH}")
        dest.mkdir(mode=0o755)
        for name in sorted(os.listdir(fd)):
            self.budget.entries -= 1
            if self.budget.entries < 0:
                raise UnsafePath(f"{shown}: the profile has more than {MAX_ENTRIES} files")
            child_shown = os.path.join(shown, name)
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise UnsafePath(
                    f"{child_shown} is a symbolic link: a profile connected through the root "
                    "daemon may not contain links"
                )
            if stat.S_ISDIR(info.st_mode):
                child = self.walk.open_child_dir(fd, shown, name, readable=False)
                try:
                    self.tree(child, child_shown, dest / name, depth + 1)
                finally:
                    os.close(child)
            elif stat.S_ISREG(info.st_mode):
                self.file(fd, shown, name, dest / name)
            else:
                raise UnsafePath(f"{child_shown} is not a regular file or folder")


def _service_parts(cmp: IniFile, cmp_shown: str) -> list[str]:
    reference = cmp.get(CM, "CMSFile") or ""
    if not reference.strip():
        raise InputError(
            "[Connection Manager] CMSFile is missing: the .cmp must name its .cms", path=cmp_shown
        )
    parts = [p for p in reference.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    if _WINDOWS_ABSOLUTE.match(reference.strip()) or ".." in parts or not parts:
        raise UnsafePath(
            f"{cmp_shown}: [Connection Manager] CMSFile must name a file inside the profile folder"
        )
    return parts


def snapshot_profile(user_path: str, caller: Caller, roots: Sequence[Path], into: Path) -> Snapshot:
    """Copy the profile ``user_path`` names, for ``caller``, into a new folder in ``into``.

    Raises :class:`~opencm.safepath.UnsafePath` (refused) or :class:`InputError` (malformed);
    neither ever quotes a file the caller cannot read.
    """
    real = resolve_as(caller, user_path)
    allowed = [os.path.realpath(root) for root in roots]
    trusted = next((root for root in allowed if is_under(real, root)), None)
    if trusted is None:
        raise UnsafePath(
            f"{user_path}: the root daemon connects, for a user, only profiles installed for all "
            f"users (under {', '.join(allowed)}); connect others with --foreground"
        )
    walk = CheckedWalk(caller, trusted)
    folder_path, name = os.path.split(real)
    folder = walk.open_dir(folder_path)
    dest = into / secrets.token_hex(8)
    into.mkdir(parents=True, exist_ok=True, mode=0o700)
    dest.mkdir(mode=0o700)
    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            child = walk.open_child_dir(folder, folder_path, name)
            os.close(folder)
            folder = child
            folder_path = real
            name = _single(folder, real, ".cmp") or _single(folder, real, ".cms") or ""
            if not name:
                raise InputError("no .cmp or .cms file in this folder", path=real)
        copier = _Copier(walk)
        if name.casefold().endswith(".cmp"):
            target = _copy_from_cmp(copier, folder, folder_path, name, dest)
        elif name.casefold().endswith(".cms"):
            target = _copy_from_cms(copier, folder, folder_path, name, dest)
        else:
            raise InputError("expected a .cmp or .cms file, or a profile folder", path=real)
    except OSError as error:  # changed under us (only root can: every folder is root's alone)
        shutil.rmtree(dest, ignore_errors=True)
        raise InputError(f"cannot read the profile: {error.strerror}", path=real) from error
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        os.close(folder)
    return Snapshot(origin=Path(real), root=dest, target=target, trusted_root=trusted)


def _copy_from_cmp(copier: _Copier, folder: int, shown: str, name: str, dest: Path) -> Path:
    data = copier.file(folder, shown, name, dest / name)
    cmp_shown = os.path.join(shown, name)
    parts = _service_parts(IniFile.parse(data, cmp_shown), cmp_shown)
    # Down to the folder holding the .cms, each step checked; that folder is copied whole.
    current, current_shown, actual = os.dup(folder), shown, []
    try:
        for part in parts[:-1]:
            step = _match(current, current_shown, part)
            child = copier.walk.open_child_dir(current, current_shown, step)
            os.close(current)
            current = child
            current_shown = os.path.join(current_shown, step)
            actual.append(step)
        cms_name = _match(current, current_shown, parts[-1])
        if not actual:
            # The .cms beside the .cmp: copy it (and its .inf) only, not every other profile.
            for entry in sorted(os.listdir(current)):
                if Path(entry).stem.casefold() == Path(cms_name).stem.casefold() and entry != name:
                    copier.file(current, current_shown, entry, dest / entry)
        else:
            (dest / Path(*actual)).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            copier.tree(current, current_shown, dest / Path(*actual))
    finally:
        os.close(current)
    return dest / name


def _copy_from_cms(copier: _Copier, folder: int, shown: str, name: str, dest: Path) -> Path:
    service = Path(shown).name
    copier.tree(folder, shown, dest / service)
    return dest / service / name


__all__ = ["MAX_ENTRIES", "MAX_FILE", "MAX_TOTAL", "Snapshot", "snapshot_profile"]
