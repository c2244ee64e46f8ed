"""The publish store: where released phone books wait for the Phone Book Service.

This layout is opencm's own (Microsoft's PBS data folder is not documented); it is described in
``docs/pbs-store.md``::

    STORE/<BOOK>/<VERSION>/release.json        the manifest (below)
    STORE/<BOOK>/<VERSION>/full.cab            the whole phone book
    STORE/<BOOK>/<VERSION>/full.cab.minisig
    STORE/<BOOK>/<VERSION>/delta-<BASE>.cab    BASE -> VERSION, for each base in the window
    STORE/<BOOK>/<VERSION>/delta-<BASE>.cab.minisig
    STORE/<BOOK>/CURRENT                       "<VERSION>\\n": the release being served

A release folder is filled under a hidden temporary name, flushed, and renamed into place; only
then is ``CURRENT`` replaced (temp + rename). A reader that follows ``CURRENT`` therefore never
sees half a release, and a release folder never changes once it has its name.

The store lives in the phone-book package, below the service: the PBA posts into it
(:mod:`opencm.phonebook.post`) and the PBS (:mod:`opencm.pbs`) reads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write, atomic_write_folder
from opencm.phonebook import limits

RELEASE_FORMAT = "opencm-release/1"
MANIFEST = "release.json"
CURRENT = "CURRENT"
LOCK = ".lock"

_FILE_NAME = re.compile(r"^(full|delta-[0-9]{1,5})\.cab(\.minisig)?$")


def check_book_name(name: str) -> str:
    """The phone-book name rule (:func:`opencm.phonebook.limits.is_book_name`), checked again
    here because the name becomes a folder name."""
    return limits.check_book_name(name, field="pb")


@dataclass(frozen=True)
class Artifact:
    """One cab of a release and its detached signature."""

    file: str
    sha256: str
    size: int
    signature: str


@dataclass(frozen=True)
class Release:
    """A complete, immutable release of one phone book."""

    book: str
    version: int
    full: Artifact
    deltas: Mapping[int, Artifact]
    released: str
    directory: Path

    def path(self, artifact: Artifact) -> Path:
        return self.directory / artifact.file

    def signature_path(self, artifact: Artifact) -> Path:
        return self.directory / artifact.signature


def _artifact(files: Mapping[str, bytes], name: str) -> Artifact:
    data = files[name]
    return Artifact(name, hashlib.sha256(data).hexdigest(), len(data), name + ".minisig")


def build_manifest(book: str, version: int, files: Mapping[str, bytes]) -> bytes:
    """The ``release.json`` for a set of release files (cabs and their ``.minisig``)."""
    for name in files:
        if not _FILE_NAME.match(name):
            raise InputError(f"unexpected file {name!r} in a release", field="files")
        if not name.endswith(".minisig") and name + ".minisig" not in files:
            raise InputError(f"{name} has no signature ({name}.minisig)", field="files")
    if "full.cab" not in files:
        raise InputError("a release needs full.cab", field="files")
    deltas = {
        int(name[len("delta-") : -len(".cab")]): _artifact(files, name)
        for name in sorted(files)
        if name.startswith("delta-") and name.endswith(".cab")
    }
    for base in deltas:
        if not 0 < base < version:
            raise InputError(f"delta-{base}.cab cannot lead to version {version}", field="files")
    manifest = {
        "format": RELEASE_FORMAT,
        "book": book,
        "version": version,
        "released": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "full": _artifact(files, "full.cab").__dict__,
        "deltas": {str(base): art.__dict__ for base, art in sorted(deltas.items())},
    }
    return (json.dumps(manifest, indent=2) + "\n").encode()


def current_version(store: Path, book: str) -> int | None:
    """The version ``CURRENT`` points at, or None for a book never published."""
    try:
        text = (store / check_book_name(book) / CURRENT).read_text("ascii").strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        raise InputError(f"expected a version number, found {text!r}", path=store / book / CURRENT)
    return int(text)


def publish_release(
    store: Path,
    book: str,
    version: int,
    files: Mapping[str, bytes],
    *,
    allow_older: bool = False,
) -> Release:
    """Put a release into the store and make it current, atomically.

    ``files`` maps file names (``full.cab``, ``delta-N.cab`` and their ``.minisig``) to bytes.
    A version at or below the current one is refused unless ``allow_older`` (rollback
    protection on the server side; clients check signatures on their own).
    """
    check_book_name(book)
    if version < 1:
        raise InputError(f"version must be 1 or more, not {version}", field="version")
    book_dir = store / book
    book_dir.mkdir(parents=True, exist_ok=True)
    with _book_lock(book_dir):
        return _publish_locked(store, book, version, files, allow_older=allow_older)


@contextlib.contextmanager
def _book_lock(book_dir: Path) -> Iterator[None]:
    """One publisher per book at a time, across processes (uploads to several workers)."""
    fd = os.open(book_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _publish_locked(
    store: Path, book: str, version: int, files: Mapping[str, bytes], *, allow_older: bool
) -> Release:
    book_dir = store / book
    current = current_version(store, book)
    if current is not None and version <= current and not allow_older:
        raise RefusedError(f"{book} is at version {current}; refusing to publish version {version}")
    manifest = build_manifest(book, version, files)
    final = book_dir / str(version)
    if final.exists():
        raise RefusedError(f"{book} version {version} is already in the store", path=final)
    atomic_write_folder(final, {**files, MANIFEST: manifest})
    atomic_write(book_dir / CURRENT, f"{version}\n".encode())
    return load_release(store, book, version)


def load_release(store: Path, book: str, version: int) -> Release:
    directory = store / check_book_name(book) / str(version)
    manifest_path = directory / MANIFEST
    try:
        raw = json.loads(manifest_path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"unreadable release manifest ({error})", path=manifest_path) from error
    if raw.get("format") != RELEASE_FORMAT or raw.get("book") != book:
        raise InputError(f"not an {RELEASE_FORMAT} manifest for {book}", path=manifest_path)
    return Release(
        book=book,
        version=int(raw["version"]),
        full=Artifact(**raw["full"]),
        deltas={int(base): Artifact(**art) for base, art in raw["deltas"].items()},
        released=str(raw["released"]),
        directory=directory,
    )


def load_current(store: Path, book: str) -> Release | None:
    version = current_version(store, book)
    return None if version is None else load_release(store, book, version)


def list_books(store: Path) -> list[str]:
    """Books that have a current release, sorted."""
    if not store.is_dir():
        return []
    return sorted(
        entry.name
        for entry in store.iterdir()
        if entry.is_dir() and limits.is_book_name(entry.name) and (entry / CURRENT).exists()
    )
