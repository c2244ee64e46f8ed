"""The in-memory decision table of every phone book the service answers for.

Each book's current release (``STORE/<BOOK>/CURRENT``, see :mod:`opencm.phonebook.store`) is
read once into a :class:`BookTable` of :class:`~opencm.pbs.answers.Answer` (cabs memory-mapped,
headers prepared ahead) so the hot path only looks things up. :meth:`Catalog.refresh` notices a
changed ``CURRENT`` (by its inode, size and mtime: ``publish_release`` replaces it by rename),
builds the new table completely, checks every file against the manifest's SHA-256, and only then
swaps it in with one assignment. A request therefore sees either the old release or the new one,
never a mix; a release that fails to load leaves the old one serving and is reported.

The version rule ("How Connection Manager Works"; opencm's reading of the exactly-five case in
``docs/pbs-protocol.md``): ``pbver >= current`` -> no update; ``current - pbver`` within
:data:`~opencm.phonebook.limits.DELTA_WINDOW` and the release has that delta -> the delta;
anything else (further behind, 0 = no book, or a delta the release lacks) -> full.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from opencm.errors import OpencmError
from opencm.pbs.answers import Answer, Body, cab_answer, none_answer
from opencm.phonebook import store
from opencm.phonebook.limits import DELTA_WINDOW

log = logging.getLogger("opencm.pbs")


@dataclass(frozen=True, slots=True)
class BookTable:
    """Everything needed to answer for one book at one release."""

    book: str
    version: int
    none: Answer
    full: Answer
    deltas: Mapping[int, Answer]

    def decide(self, pbver: int) -> Answer:
        if pbver >= self.version:
            return self.none
        if self.version - pbver <= DELTA_WINDOW:
            delta = self.deltas.get(pbver)
            if delta is not None:
                return delta
        return self.full


class ReleaseError(OpencmError):
    """A release in the store that cannot be served (missing file, wrong checksum)."""


def map_file(path: Path) -> Body:
    """The file's bytes as a read-only shared mapping: every process serving it shares one copy
    in the page cache, and pages nobody asks for are not resident."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return b""
        mapped = mmap.mmap(handle.fileno(), size, prot=mmap.PROT_READ)
    return memoryview(mapped)


def _read_checked(release: store.Release, artifact: store.Artifact) -> tuple[Body, bytes]:
    path = release.path(artifact)
    try:
        body = map_file(path)
        signature = release.signature_path(artifact).read_bytes()
    except OSError as error:
        raise ReleaseError(f"cannot read {error.filename}: {error.strerror}") from error
    if len(body) != artifact.size or hashlib.sha256(body).hexdigest() != artifact.sha256:
        raise ReleaseError(f"{path} does not match the SHA-256 in {store.MANIFEST}")
    if isinstance(body, memoryview) and isinstance(body.obj, mmap.mmap):
        body.obj.madvise(mmap.MADV_DONTNEED)  # hashing made it resident; the cache keeps it
    return body, signature


def load_table(store_dir: Path, book: str) -> BookTable | None:
    """The decision table of ``book``'s current release (None if it was never published)."""
    release = store.load_current(store_dir, book)
    if release is None:
        return None
    name, version = book.upper(), release.version

    def answer(artifact: store.Artifact, base: int | None) -> Answer:
        body, signature = _read_checked(release, artifact)
        return cab_answer(name, version, base, body, artifact.size, artifact.sha256, signature)

    full = answer(release.full, None)
    deltas = {base: answer(artifact, base) for base, artifact in release.deltas.items()}
    return BookTable(name, version, none_answer(name, version), full, deltas)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class Catalog:
    """Books by upper-case name; ``tables`` is replaced whole, never mutated in place."""

    store_dir: Path
    tables: Mapping[str, BookTable] = field(default_factory=dict)
    #: The CURRENT stamp each table was loaded from, by folder name.
    _stamps: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: Books whose newest release could not be loaded, with the reason (shown in logs/stats).
    problems: dict[str, str] = field(default_factory=dict)

    def get(self, book: str) -> BookTable | None:
        return self.tables.get(book)

    def refresh(self) -> list[str]:
        """Reload the books whose ``CURRENT`` changed; returns what changed, for the log."""
        changes: list[str] = []
        new_tables = dict(self.tables)
        seen: set[str] = set()
        for folder in store.list_books(self.store_dir):
            key = folder.upper()
            if key in seen:
                self.problems[folder] = f"another folder already serves {key} (names ignore case)"
                continue
            seen.add(key)
            stamp = _stamp(self.store_dir / folder / store.CURRENT)
            if stamp is None or self._stamps.get(folder) == stamp:
                continue
            try:
                table = load_table(self.store_dir, folder)
            except OpencmError as error:
                if self.problems.get(folder) != str(error):
                    log.error("pbs: keeping the previous release of %s: %s", folder, error)
                self.problems[folder] = str(error)
                continue
            self._stamps[folder] = stamp
            self.problems.pop(folder, None)
            if table is not None:
                old = new_tables.get(key)
                new_tables[key] = table
                before = f" (was {old.version})" if old else ""
                changes.append(f"{key} version {table.version}{before}")
        for key in [k for k in new_tables if k not in seen]:
            del new_tables[key]
            changes.append(f"{key} removed")
        for folder in [f for f in self._stamps if f.upper() not in seen]:
            del self._stamps[folder]
        if changes:
            self.tables = new_tables  # one assignment: requests see the old dict or the new one
        return changes
