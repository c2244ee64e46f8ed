"""The in-memory decision table of every phone book the service answers for.

Each book's current release (``STORE/<BOOK>/CURRENT``, see :mod:`opencm.phonebook.store`) is read
once into a :class:`BookTable`: the cab bytes, their signatures and the response headers, all
prepared ahead so the hot path only looks things up. :meth:`Catalog.refresh` notices a changed
``CURRENT`` (by its inode, size and mtime: ``publish_release`` replaces it by rename), builds the
new table completely, checks every file against the manifest's SHA-256, and only then swaps it in
with one assignment. A request therefore sees either the old release or the new one, never a mix;
a release that fails to load leaves the old one serving and is reported.

The version rule ("How Connection Manager Works", opencm's reading of the exactly-five case in
``docs/pbs-protocol.md``): ``pbver >= current`` -> no update; ``current - pbver`` in 1..4 and the
release has that delta -> the delta; anything else (5 or more behind, 0 = no book, or a delta the
release lacks) -> full.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from opencm.errors import OpencmError
from opencm.phonebook import store

log = logging.getLogger("opencm.pbs")

#: A client at most this many versions behind gets a delta (the PBA makes deltas from the five
#: previous versions, docs/pbs-protocol.md); further behind, or a missing delta: the full book.
DELTA_WINDOW = 5
CAB_TYPE = b"application/vnd.ms-cab-compressed"
CACHE_CONTROL = b"public, no-cache"

Kind = Literal["none", "delta", "full"]
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Payload:
    """One possible answer, with its headers prepared for the wire."""

    kind: Kind
    book: str
    version: int
    base: int | None
    status: int
    body: bytes
    etag: bytes
    headers: Headers
    #: Headers of the 304 answer to a matching ``If-None-Match``.
    not_modified_headers: Headers
    #: The same two header lists as text, for granian's RSGI interface.
    text_headers: list[tuple[str, str]] = field(default_factory=list)
    text_not_modified: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        as_text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers]
        object.__setattr__(self, "text_headers", as_text)
        not_modified = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.not_modified_headers
        ]
        object.__setattr__(self, "text_not_modified", not_modified)


def _cab_payload(
    book: str, version: int, base: int | None, body: bytes, signature: bytes, sha256: str
) -> Payload:
    kind: Kind = "full" if base is None else "delta"
    etag = f'"{sha256[:32]}"'.encode()
    name = f"{book}-{version}-{'full' if base is None else f'delta-{base}'}.cab"
    common: Headers = [
        (b"etag", etag),
        (b"cache-control", CACHE_CONTROL),
        (b"x-opencm-pbs-kind", kind.encode()),
        (b"x-opencm-pbs-book", book.encode()),
        (b"x-opencm-pbs-version", str(version).encode()),
    ]
    if base is not None:
        common.append((b"x-opencm-pbs-base", str(base).encode()))
    headers: Headers = [
        (b"content-type", CAB_TYPE),
        (b"content-length", str(len(body)).encode()),
        (b"content-disposition", f'attachment; filename="{name}"'.encode()),
        *common,
        (b"x-opencm-pbs-signature", base64.b64encode(signature)),
    ]
    return Payload(kind, book, version, base, 200, body, etag, headers, common)


def _none_payload(book: str, version: int) -> Payload:
    etag = f'"none-{book}-{version}"'.encode()
    headers: Headers = [
        (b"etag", etag),
        (b"cache-control", CACHE_CONTROL),
        (b"x-opencm-pbs-kind", b"none"),
        (b"x-opencm-pbs-book", book.encode()),
        (b"x-opencm-pbs-version", str(version).encode()),
    ]
    return Payload("none", book, version, None, 204, b"", etag, headers, headers)


@dataclass(frozen=True, slots=True)
class BookTable:
    """Everything needed to answer for one book at one release."""

    book: str
    version: int
    none: Payload
    full: Payload
    deltas: Mapping[int, Payload]

    def decide(self, pbver: int) -> Payload:
        if pbver >= self.version:
            return self.none
        if self.version - pbver <= DELTA_WINDOW:
            delta = self.deltas.get(pbver)
            if delta is not None:
                return delta
        return self.full


class ReleaseError(OpencmError):
    """A release in the store that cannot be served (missing file, wrong checksum)."""


def _read_checked(release: store.Release, artifact: store.Artifact) -> tuple[bytes, bytes]:
    path = release.path(artifact)
    try:
        body = path.read_bytes()
        signature = release.signature_path(artifact).read_bytes()
    except OSError as error:
        raise ReleaseError(f"cannot read {error.filename}: {error.strerror}") from error
    if len(body) != artifact.size or hashlib.sha256(body).hexdigest() != artifact.sha256:
        raise ReleaseError(f"{path} does not match the SHA-256 in {store.MANIFEST}")
    return body, signature


def load_table(store_dir: Path, book: str) -> BookTable | None:
    """The decision table of ``book``'s current release (None if it was never published)."""
    release = store.load_current(store_dir, book)
    if release is None:
        return None
    name = book.upper()
    body, signature = _read_checked(release, release.full)
    full = _cab_payload(name, release.version, None, body, signature, release.full.sha256)
    deltas: dict[int, Payload] = {}
    for base, artifact in release.deltas.items():
        body, signature = _read_checked(release, artifact)
        deltas[base] = _cab_payload(name, release.version, base, body, signature, artifact.sha256)
    return BookTable(name, release.version, _none_payload(name, release.version), full, deltas)


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
