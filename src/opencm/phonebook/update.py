"""Client side: install a verified full or delta phone-book cab into a service-profile folder.

The PBS auto-update (and anything else) calls :func:`apply_update` after it has checked the
cab's signature (:func:`opencm.phonebook.release.verify_release_file`). The phone book lives in
``<service_dir>/<BOOK>.pbk``, ``.pbr`` and ``.ver``; names are matched case-insensitively
because profiles made on Windows spell them as they like.

Atomicity: the new files are written to temporary names and flushed first; then ``.pbk`` and
``.pbr`` are renamed into place and the version file last. Until that last rename the installed
version still names the old book, and a delta made for the old version is refused by the
book's digest, so an interrupted update leads to a full download, never to a mixed book.
"""

from __future__ import annotations

from pathlib import Path

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write_all
from opencm.phonebook.cabinet import read_cab
from opencm.phonebook.delta import apply_delta, parse_delta
from opencm.phonebook.pbk import parse_pbk
from opencm.phonebook.pbr import parse_pbr
from opencm.phonebook.problems import Effect
from opencm.phonebook.versionfile import VersionInfo, first_integer, parse_version_file, sha256

__all__ = ["apply_update", "book_files", "install_files", "installed_version"]


def _find(directory: Path, name: str) -> Path | None:
    wanted = name.casefold()
    try:
        for entry in directory.iterdir():
            if entry.name.casefold() == wanted and entry.is_file():
                return entry
    except FileNotFoundError:
        return None
    return None


def book_files(service_dir: Path, book: str) -> dict[str, Path]:
    """Where ``.pbk``, ``.pbr`` and ``.ver`` of ``book`` are (existing spelling, else BOOK.x)."""
    result: dict[str, Path] = {}
    for suffix in (".pbk", ".pbr", ".ver"):
        found = _find(service_dir, book + suffix)
        result[suffix] = found if found is not None else service_dir / (book + suffix)
    return result


def installed_version(service_dir: Path, book: str) -> int | None:
    """The version of the installed book (first integer of its ``.ver``), None if none."""
    path = _find(service_dir, book + ".ver")
    if path is None:
        return None
    return first_integer(path.read_bytes())


def _member(members: dict[str, bytes], book: str, suffix: str) -> bytes:
    for name, data in members.items():
        if name.casefold() == (book + suffix).casefold():
            return data
    raise InputError(f"the cab has no {book}{suffix}", field="cab")


def _check_version(info: VersionInfo, book: str, version: int) -> None:
    if info.version != version:
        raise RefusedError(f"the cab holds {book} version {info.version}, expected {version}")
    if info.book is not None and info.book.casefold() != book.casefold():
        raise RefusedError(f"the cab holds phone book {info.book}, expected {book}")


def apply_update(
    service_dir: Path, book: str, cab: bytes, *, kind: str, base: int | None, version: int
) -> int:
    """Install a verified full or delta cab; returns the new installed version.

    Refuses (:class:`RefusedError`) a version older than the installed one (a full cab of the
    same version re-installs it), a delta whose base is not the installed version, and a cab
    whose contents do not match its version file.
    """
    members = read_cab(cab)
    ver = _member(members, book, ".ver")
    info = parse_version_file(ver, path=f"{book}.ver")
    _check_version(info, book, version)
    files = book_files(service_dir, book)
    installed = installed_version(service_dir, book)
    if installed is not None and version < installed:
        raise RefusedError(
            f"{book} version {installed} is installed; refusing to go back to version {version}"
        )
    if kind == "full":
        pbk = _member(members, book, ".pbk")
        pbr = _member(members, book, ".pbr")
        if info.pbk_sha256 is not None and info.pbk_sha256 != sha256(pbk):
            raise RefusedError(f"{book}.pbk does not match the digest in {book}.ver")
        if info.pbr_sha256 is not None and info.pbr_sha256 != sha256(pbr):
            raise RefusedError(f"{book}.pbr does not match the digest in {book}.ver")
        regions = parse_pbr(pbr, f"{book}.pbr")
        read = parse_pbk(pbk, f"{book}.pbk", region_count=len(regions.names))
        fatal = [p for p in read.problems if p.effect is Effect.ALL]
        if regions.voids_phone_book or fatal:
            problem = (regions.problems or fatal)[0]
            raise InputError(f"the new phone book would be void: {problem}")
    elif kind == "delta":
        if base is None or installed != base:
            raise RefusedError(
                f"this delta updates {book} from version {base}, but version {installed} is "
                "installed (a full update is needed)"
            )
        delta = parse_delta(_member(members, book, ".dlt"), path=f"{book}.dlt")
        if delta.book.casefold() != book.casefold():
            raise RefusedError(f"the delta inside is for phone book {delta.book}, not {book}")
        if delta.base != base or delta.version != version:
            raise RefusedError(
                f"the delta inside leads {delta.base} -> {delta.version}, expected {base} -> "
                f"{version}"
            )
        try:
            old_pbk = files[".pbk"].read_bytes()
            old_pbr = files[".pbr"].read_bytes() if files[".pbr"].exists() else b"0\r\n"
        except OSError as error:
            raise RefusedError(f"the installed {book}.pbk cannot be read ({error})") from error
        pbk, pbr = apply_delta(delta, old_pbk, old_pbr)
    else:
        raise InputError(f"kind must be 'full' or 'delta', not {kind!r}", field="kind")
    _install(service_dir, [(files[".pbk"], pbk), (files[".pbr"], pbr), (files[".ver"], ver)])
    return version


def install_files(directory: Path, writes: list[tuple[Path, bytes]]) -> None:
    """Replace a book's files together: each written aside and flushed, then renamed in the
    order given (the version file last, so a reader never sees a version its book lacks)."""
    _install(directory, writes)


def _install(directory: Path, writes: list[tuple[Path, bytes]]) -> None:
    """Write every file aside and flush, then rename in order (the version file last)."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_all([(target, data, 0o644) for target, data in writes])
