"""The administrator's workspace: every phone book, its POPs, regions, releases and undo log,
in one SQLite database (stdlib ``sqlite3``).

Schema changes are migrations numbered by ``PRAGMA user_version``. Every command that changes
anything runs in one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two
commands at once queue behind a busy timeout instead of failing half-way or deadlocking), and
the database is in WAL mode so readers never block. A failed command rolls back completely.

Undo: each command that changes a book is an *operation*; its rows in ``changes`` remember the
POPs (as their canonical ``.pbk`` line) and region lists as they were before. ``undo`` reverts
the newest operation not yet released; a release closes the change set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import zlib
from collections.abc import Callable, Iterator, KeysView, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import minisign

from opencm.errors import DiskFullError, InputError, OpencmError, RefusedError, is_disk_full
from opencm.fsutil import atomic_write
from opencm.paths import data_home
from opencm.phonebook import limits
from opencm.phonebook.cabinet import read_cab
from opencm.phonebook.pbk import Pop, format_pbk, format_pop, parse_pbk
from opencm.phonebook.pbr import format_pbr
from opencm.phonebook.release import Snapshot, build_release, delta_bases

DB_NAME = "workspace.sqlite"
BUSY_TIMEOUT_MS = 30_000

_POP_COLUMNS = (
    "idx, country, region, name, area, access, min_speed, max_speed, reserved, flags, dun"
)

MIGRATIONS: tuple[str, ...] = (
    # 1: books, regions, POPs, operations and their undo rows, releases and their files.
    """
    CREATE TABLE books (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        created TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        post_target TEXT,
        posted_version INTEGER NOT NULL DEFAULT 0,
        changes_since_post INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE regions (
        book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL COLLATE NOCASE,
        PRIMARY KEY (book_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE pops (
        book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        country INTEGER NOT NULL,
        region INTEGER NOT NULL,
        name TEXT NOT NULL COLLATE NOCASE,
        area TEXT NOT NULL COLLATE NOCASE,
        access TEXT NOT NULL COLLATE NOCASE,
        min_speed INTEGER NOT NULL,
        max_speed INTEGER NOT NULL,
        reserved INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        dun TEXT NOT NULL,
        PRIMARY KEY (book_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX pops_name ON pops (book_id, name);
    CREATE INDEX pops_access ON pops (book_id, access);
    CREATE INDEX pops_area ON pops (book_id, area);
    CREATE TABLE operations (
        id INTEGER PRIMARY KEY,
        book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
        command TEXT NOT NULL,
        created TEXT NOT NULL,
        pop_changes INTEGER NOT NULL DEFAULT 0,
        released INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE changes (
        op_id INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        pop_idx INTEGER,
        before TEXT,
        PRIMARY KEY (op_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE releases (
        book_id INTEGER NOT NULL REFERENCES books(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        created TEXT NOT NULL,
        pops INTEGER NOT NULL,
        added INTEGER NOT NULL,
        changed INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        pbk BLOB,
        pbr BLOB,
        posted TEXT,
        PRIMARY KEY (book_id, version)
    ) WITHOUT ROWID;
    CREATE TABLE release_files (
        book_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        name TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (book_id, version, name),
        FOREIGN KEY (book_id, version) REFERENCES releases(book_id, version) ON DELETE CASCADE
    ) WITHOUT ROWID;
    """,
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Book:
    id: int
    name: str
    created: str
    version: int
    post_target: str | None
    posted_version: int
    changes_since_post: int
    pops: int
    regions: int
    unreleased: int

    @property
    def posted(self) -> bool:
        return self.posted_version > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "version": self.version,
            "pops": self.pops,
            "regions": self.regions,
            "unreleased_operations": self.unreleased,
            "post_target": self.post_target,
            "posted_version": self.posted_version or None,
            "changes_since_post": self.changes_since_post,
        }


@dataclass(frozen=True)
class ReleaseInfo:
    version: int
    created: str
    pops: int
    added: int
    changed: int
    deleted: int
    posted: str | None

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def pop_as_json(pop: Pop) -> dict[str, Any]:
    return {
        "index": pop.index,
        "country": pop.country,
        "region": pop.region,
        "name": pop.name,
        "area": pop.area,
        "access": pop.access,
        "min_speed": pop.min_speed,
        "max_speed": pop.max_speed,
        "reserved": pop.reserved,
        "flags": pop.flags,
        "dun": pop.dun,
    }


def _pop_row(book_id: int, pop: Pop) -> tuple[Any, ...]:
    return (
        book_id,
        pop.index,
        pop.country,
        pop.region,
        pop.name,
        pop.area,
        pop.access,
        pop.min_speed,
        pop.max_speed,
        pop.reserved,
        pop.flags,
        pop.dun,
    )


def _row_pop(row: Sequence[Any]) -> Pop:
    return Pop(*row)


def _line_pop(line: str) -> Pop:
    return parse_pbk(line.encode("latin-1")).pops[0]


class Workspace:
    """One administrator's phone books. Use as a context manager (closes the connection)."""

    def __init__(self, directory: Path, *, clock: Callable[[], str] = now) -> None:
        self.directory = directory
        self.clock = clock
        self.path = directory / DB_NAME
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(
                f"cannot create the workspace folder ({error.strerror})", path=directory
            ) from error
        try:
            self.db = sqlite3.connect(
                self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1e3
            )
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA cache_size = -65536")  # 64 MiB: 65,000-POP imports
            self._migrate()
        except sqlite3.DatabaseError as error:
            if is_disk_full(error, self.path):
                raise DiskFullError(self.path) from error
            raise InputError(
                f"not a usable workspace database ({error})", path=self.path
            ) from error

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the write lock from its start (BEGIN IMMEDIATE)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise OpencmError(
                f"the workspace stays busy ({error}): another command has held it for "
                f"{BUSY_TIMEOUT_MS // 1000} s",
                path=self.path,
            ) from error
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException as error:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.DatabaseError):
                    self.db.execute("ROLLBACK")
            if is_disk_full(error, self.path):
                raise DiskFullError(self.path) from error
            raise

    def _migrate(self) -> None:
        (version,) = self.db.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise InputError(
                f"the workspace has schema {version}, newer than this opencm knows "
                f"({len(MIGRATIONS)}); upgrade opencm",
                path=self.path,
            )
        if version == len(MIGRATIONS):
            return
        with self.transaction() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()  # another process won?
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    # -- books ------------------------------------------------------------------------------

    def _book_id(self, name: str) -> int:
        row = self.db.execute("SELECT id FROM books WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise InputError(f"no phone book named {name!r} in this workspace", field="name")
        return int(row[0])

    def create_book(self, name: str) -> Book:
        limits.check_book_name(name)
        with self.transaction() as db:
            (count,) = db.execute("SELECT count(*) FROM books").fetchone()
            limits.check_book_count(count)
            if db.execute("SELECT 1 FROM books WHERE name = ?", (name,)).fetchone():
                raise RefusedError(f"a phone book named {name!r} already exists")
            db.execute("INSERT INTO books (name, created) VALUES (?, ?)", (name, self.clock()))
        return self.book(name)

    def delete_book(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM books WHERE id = ?", (self._book_id(name),))

    def book(self, name: str) -> Book:
        book_id = self._book_id(name)
        row = self.db.execute(
            "SELECT id, name, created, version, post_target, posted_version, changes_since_post,"
            " (SELECT count(*) FROM pops WHERE book_id = b.id),"
            " (SELECT count(*) FROM regions WHERE book_id = b.id),"
            " (SELECT count(*) FROM operations WHERE book_id = b.id AND NOT released)"
            " FROM books b WHERE id = ?",
            (book_id,),
        ).fetchone()
        return Book(*row)

    def books(self) -> list[Book]:
        names = [row[0] for row in self.db.execute("SELECT name FROM books ORDER BY name")]
        return [self.book(name) for name in names]

    # -- operations and undo ----------------------------------------------------------------

    def _begin_op(self, db: sqlite3.Connection, book_id: int, command: str) -> int:
        cursor = db.execute(
            "INSERT INTO operations (book_id, command, created) VALUES (?, ?, ?)",
            (book_id, command, self.clock()),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _log_pops(self, db: sqlite3.Connection, op: int, book_id: int, indexes: list[int]) -> None:
        """Remember the POPs ``indexes`` as they are now (None: did not exist)."""
        before: dict[int, str] = {}
        for chunk_start in range(0, len(indexes), 500):
            chunk = indexes[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(
                f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = ? AND idx IN ({marks})",
                (book_id, *chunk),
            ):
                before[row[0]] = format_pop(_row_pop(row))
        (seq,) = db.execute("SELECT count(*) FROM changes WHERE op_id = ?", (op,)).fetchone()
        db.executemany(
            "INSERT INTO changes (op_id, seq, kind, pop_idx, before) VALUES (?, ?, 'pop', ?, ?)",
            ((op, seq + n, index, before.get(index)) for n, index in enumerate(indexes)),
        )

    def _log_regions(self, db: sqlite3.Connection, op: int, book_id: int) -> None:
        (seq,) = db.execute("SELECT count(*) FROM changes WHERE op_id = ?", (op,)).fetchone()
        names = self._region_names(db, book_id)
        db.execute(
            "INSERT INTO changes (op_id, seq, kind, before) VALUES (?, ?, 'regions', ?)",
            (op, seq, json.dumps(names)),
        )

    def _count_pop_changes(self, db: sqlite3.Connection, op: int, book_id: int, n: int) -> None:
        db.execute("UPDATE operations SET pop_changes = pop_changes + ? WHERE id = ?", (n, op))
        db.execute(
            "UPDATE books SET changes_since_post = changes_since_post + ? WHERE id = ?",
            (n, book_id),
        )

    def undo(self, name: str) -> str:
        """Revert the newest unreleased operation of ``name``; returns its command text."""
        with self.transaction() as db:
            book_id = self._book_id(name)
            row = db.execute(
                "SELECT id, command, pop_changes FROM operations"
                " WHERE book_id = ? AND NOT released ORDER BY id DESC LIMIT 1",
                (book_id,),
            ).fetchone()
            if row is None:
                raise RefusedError(f"{name} has no unreleased change to undo")
            op, command, pop_changes = row
            changes = db.execute(
                "SELECT kind, pop_idx, before FROM changes WHERE op_id = ? ORDER BY seq DESC",
                (op,),
            ).fetchall()
            for kind, index, before in changes:
                if kind == "regions":
                    db.execute("DELETE FROM regions WHERE book_id = ?", (book_id,))
                    db.executemany(
                        "INSERT INTO regions (book_id, position, name) VALUES (?, ?, ?)",
                        ((book_id, n, region) for n, region in enumerate(json.loads(before), 1)),
                    )
                    continue
                if kind == "added":
                    db.executemany(
                        "DELETE FROM pops WHERE book_id = ? AND idx = ?",
                        ((book_id, added) for added in json.loads(before)),
                    )
                    continue
                db.execute("DELETE FROM pops WHERE book_id = ? AND idx = ?", (book_id, index))
                if before is not None:
                    db.execute(
                        "INSERT INTO pops VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        _pop_row(book_id, _line_pop(before)),
                    )
            db.execute("DELETE FROM operations WHERE id = ?", (op,))
            db.execute(
                "UPDATE books SET changes_since_post = max(0, changes_since_post - ?) WHERE id = ?",
                (pop_changes, book_id),
            )
        return str(command)

    # -- regions ----------------------------------------------------------------------------

    def _region_names(self, db: sqlite3.Connection, book_id: int) -> list[str]:
        return [
            row[0]
            for row in db.execute(
                "SELECT name FROM regions WHERE book_id = ? ORDER BY position", (book_id,)
            )
        ]

    def regions(self, name: str) -> list[str]:
        return self._region_names(self.db, self._book_id(name))

    def region_id(self, name: str, region: str) -> int:
        """A region given by name or number, as its 1-based id."""
        names = self.regions(name)
        return _resolve_region(names, region)

    def add_region(self, name: str, region: str) -> int:
        limits.check_text(region, "region", limits.REGION_NAME_MAX)
        if not region:
            raise InputError("a region needs a name", field="region")
        with self.transaction() as db:
            book_id = self._book_id(name)
            names = self._region_names(db, book_id)
            if region.casefold() in (existing.casefold() for existing in names):
                raise RefusedError(f"{name} already has a region {region!r}")
            if len(names) >= limits.MAX_REGIONS:
                raise RefusedError(f"{name} has {len(names)} regions; at most {limits.MAX_REGIONS}")
            op = self._begin_op(db, book_id, f"region add {region}")
            self._log_regions(db, op, book_id)
            db.execute(
                "INSERT INTO regions (book_id, position, name) VALUES (?, ?, ?)",
                (book_id, len(names) + 1, region),
            )
        return len(names) + 1

    def rename_region(self, name: str, region: str, new_name: str) -> None:
        limits.check_text(new_name, "region", limits.REGION_NAME_MAX)
        with self.transaction() as db:
            book_id = self._book_id(name)
            names = self._region_names(db, book_id)
            position = _resolve_region(names, region)
            if any(
                other.casefold() == new_name.casefold() and n != position
                for n, other in enumerate(names, 1)
            ):
                raise RefusedError(f"{name} already has a region {new_name!r}")
            op = self._begin_op(db, book_id, f"region rename {region} {new_name}")
            self._log_regions(db, op, book_id)
            db.execute(
                "UPDATE regions SET name = ? WHERE book_id = ? AND position = ?",
                (new_name, book_id, position),
            )

    def delete_region(self, name: str, region: str, *, force: bool = False) -> int:
        """Delete a region; POPs in it refuse the delete unless ``force`` (they get region 0).

        Later regions move up one place, and the POPs that name them follow.
        """
        with self.transaction() as db:
            book_id = self._book_id(name)
            names = self._region_names(db, book_id)
            position = _resolve_region(names, region)
            users = [
                row[0]
                for row in db.execute(
                    "SELECT idx FROM pops WHERE book_id = ? AND region >= ?", (book_id, position)
                )
            ]
            (in_region,) = db.execute(
                "SELECT count(*) FROM pops WHERE book_id = ? AND region = ?", (book_id, position)
            ).fetchone()
            if in_region and not force:
                raise RefusedError(
                    f"{in_region} POPs are in region {names[position - 1]!r}; move them first or "
                    "pass --force (they then belong to no region)"
                )
            op = self._begin_op(db, book_id, f"region delete {region}")
            self._log_regions(db, op, book_id)
            self._log_pops(db, op, book_id, users)
            self._count_pop_changes(db, op, book_id, len(users))
            db.execute(
                "DELETE FROM regions WHERE book_id = ? AND position = ?", (book_id, position)
            )
            # Two steps through negative numbers keep the primary key unique while shifting.
            db.execute(
                "UPDATE regions SET position = -(position - 1) WHERE book_id = ? AND position > ?",
                (book_id, position),
            )
            db.execute(
                "UPDATE regions SET position = -position WHERE book_id = ? AND position < 0",
                (book_id,),
            )
            db.execute(
                "UPDATE pops SET region = CASE WHEN region = ? THEN 0 ELSE region - 1 END"
                " WHERE book_id = ? AND region >= ?",
                (position, book_id, position),
            )
            return len(users)

    # -- POPs -------------------------------------------------------------------------------

    def pop(self, name: str, index: int) -> Pop:
        book_id = self._book_id(name)
        row = self.db.execute(
            f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = ? AND idx = ?", (book_id, index)
        ).fetchone()
        if row is None:
            raise InputError(f"{name} has no POP {index}", field="index")
        return _row_pop(row)

    def pops(self, name: str, *, limit: int | None = None, offset: int = 0) -> list[Pop]:
        book_id = self._book_id(name)
        rows = self.db.execute(
            f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = ? ORDER BY idx LIMIT ? OFFSET ?",
            (book_id, -1 if limit is None else limit, offset),
        )
        return [_row_pop(row) for row in rows]

    def search(
        self, name: str, query: str, *, limit: int = 50, contains: bool = False
    ) -> list[Pop]:
        """Up to ``limit`` POPs whose name, area code or access number starts with ``query``
        (any case), or whose index is ``query``, sorted by index; ``contains`` matches
        anywhere (a full scan).

        A prefix is an index range scan (``col >= q AND col < q + DEL`` under NOCASE: stored
        values are printable ASCII, so none sorts above DEL), each cut at ``limit``.
        """
        book_id = self._book_id(name)
        if contains:
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self.db.execute(
                f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = :b AND (name LIKE :p ESCAPE"
                " '\\' OR area LIKE :p ESCAPE '\\' OR access LIKE :p ESCAPE '\\')"
                " ORDER BY idx LIMIT :n",
                {"b": book_id, "p": f"%{escaped}%", "n": limit},
            )
            return [_row_pop(row) for row in rows]
        found: dict[int, Pop] = {}
        for column in ("name", "area", "access"):
            rows = self.db.execute(
                f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = ? AND {column} >= ?"
                f" AND {column} < ? LIMIT ?",
                (book_id, query, query + "\x7f", limit),
            )
            for row in rows:
                found[row[0]] = _row_pop(row)
        if query.isdigit():
            row = self.db.execute(
                f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = ? AND idx = ?",
                (book_id, int(query)),
            ).fetchone()
            if row is not None:
                found[row[0]] = _row_pop(row)
        return [found[index] for index in sorted(found)[:limit]]

    def _check_pop(self, db: sqlite3.Connection, book_id: int, pop: Pop) -> Pop:
        if pop.index < 1:
            raise InputError(f"POP index must be 1 or more, not {pop.index}", field="index")
        if pop.country < 1:
            raise InputError("a POP needs a country code", field="country")
        checked = check_pop_fields(pop)
        (regions,) = db.execute(
            "SELECT count(*) FROM regions WHERE book_id = ?", (book_id,)
        ).fetchone()
        if pop.region > regions:
            raise InputError(
                f"unknown region {pop.region} (the book has {regions} regions)", field="region"
            )
        return checked

    def add_pop(self, name: str, pop: Pop) -> Pop:
        with self.transaction() as db:
            book_id = self._book_id(name)
            if pop.index == 0:
                (top,) = db.execute(
                    "SELECT coalesce(max(idx), 0) FROM pops WHERE book_id = ?", (book_id,)
                ).fetchone()
                pop = replace(pop, index=top + 1)
            pop = self._check_pop(db, book_id, pop)
            if db.execute(
                "SELECT 1 FROM pops WHERE book_id = ? AND idx = ?", (book_id, pop.index)
            ).fetchone():
                raise RefusedError(f"{name} already has POP {pop.index}")
            (count,) = db.execute(
                "SELECT count(*) FROM pops WHERE book_id = ?", (book_id,)
            ).fetchone()
            limits.check_pop_count(count + 1)
            op = self._begin_op(db, book_id, f"pop add {pop.index}")
            self._log_pops(db, op, book_id, [pop.index])
            self._count_pop_changes(db, op, book_id, 1)
            db.execute("INSERT INTO pops VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _pop_row(book_id, pop))
        return pop

    def edit_pop(self, name: str, index: int, /, **changes: Any) -> Pop:
        with self.transaction() as db:
            book_id = self._book_id(name)
            before = self.pop(name, index)
            pop = self._check_pop(db, book_id, replace(before, **changes))
            if pop.index != index:
                raise InputError("a POP's index cannot be edited; delete and add", field="index")
            op = self._begin_op(db, book_id, f"pop edit {index}")
            self._log_pops(db, op, book_id, [index])
            self._count_pop_changes(db, op, book_id, 1)
            db.execute("DELETE FROM pops WHERE book_id = ? AND idx = ?", (book_id, index))
            db.execute("INSERT INTO pops VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _pop_row(book_id, pop))
        return pop

    def delete_pop(self, name: str, index: int) -> None:
        with self.transaction() as db:
            book_id = self._book_id(name)
            self.pop(name, index)
            op = self._begin_op(db, book_id, f"pop delete {index}")
            self._log_pops(db, op, book_id, [index])
            self._count_pop_changes(db, op, book_id, 1)
            db.execute("DELETE FROM pops WHERE book_id = ? AND idx = ?", (book_id, index))

    def apply_import(
        self,
        name: str,
        upserts: Sequence[Pop],
        deletes: Sequence[int],
        *,
        source: str,
        check: Callable[[Book, KeysView[int], int, int], None] | None = None,
    ) -> tuple[int, int, int]:
        """Apply an import in one transaction: (added, changed, deleted).

        ``check(book, existing_indexes, operations, new_total)`` runs inside the transaction
        before anything is written, so limits are checked against the book as it is under the
        write lock.
        """
        with self.transaction() as db:
            book_id = self._book_id(name)
            book = self.book(name)
            existing = {
                row[0]: row
                for row in db.execute(
                    f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = ?", (book_id,)
                )
            }
            region_count = book.regions
            for pop in upserts:
                if pop.region > region_count:
                    raise InputError(
                        f"POP {pop.index}: unknown region {pop.region} (the book has "
                        f"{region_count} regions)",
                        field="region",
                    )
            added = [pop for pop in upserts if pop.index not in existing]
            changed = [
                pop
                for pop in upserts
                if pop.index in existing and tuple(existing[pop.index]) != _pop_row(0, pop)[1:]
            ]
            total = len(existing) + len(added) - len(deletes)
            if check is not None:
                check(book, existing.keys(), len(added) + len(changed) + len(deletes), total)
            missing = [index for index in deletes if index not in existing]
            if missing:
                raise InputError(f"cannot delete POP {missing[0]}: the book has no such POP")
            limits.check_pop_count(total)
            op = self._begin_op(db, book_id, f"import {source}")
            touched = [pop.index for pop in changed] + list(deletes)
            self._log_pops(db, op, book_id, touched)
            if added:
                # Undoing an add is deleting it: one row lists every added index.
                db.execute(
                    "INSERT INTO changes (op_id, seq, kind, before) VALUES (?, ?, 'added', ?)",
                    (op, len(touched), json.dumps([pop.index for pop in added])),
                )
            self._count_pop_changes(db, op, book_id, len(added) + len(changed) + len(deletes))
            db.executemany(
                "DELETE FROM pops WHERE book_id = ? AND idx = ?",
                ((book_id, index) for index in touched),
            )
            db.executemany(
                "INSERT INTO pops VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (_pop_row(book_id, pop) for pop in [*added, *changed]),
            )
        return len(added), len(changed), len(deletes)

    # -- export, releases -------------------------------------------------------------------

    def export(self, name: str) -> Snapshot:
        """The book as it is now, in canonical ``.pbk`` and ``.pbr`` form."""
        book_id = self._book_id(name)
        pops = [
            _row_pop(row)
            for row in self.db.execute(
                f"SELECT {_POP_COLUMNS} FROM pops WHERE book_id = ? ORDER BY idx", (book_id,)
            )
        ]
        regions = self._region_names(self.db, book_id)
        book = self.book(name)
        return Snapshot(book.version, format_pbk(pops), format_pbr(regions), len(pops))

    def snapshot(self, name: str, version: int) -> Snapshot | None:
        book_id = self._book_id(name)
        row = self.db.execute(
            "SELECT pbk, pbr, pops FROM releases WHERE book_id = ? AND version = ?",
            (book_id, version),
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return Snapshot(version, zlib.decompress(row[0]), row[1], row[2])

    def add_release(
        self,
        name: str,
        build: Callable[[Snapshot, dict[int, Snapshot]], dict[str, bytes]],
    ) -> tuple[ReleaseInfo, dict[str, bytes]]:
        """Make the next version from the current book; ``build`` makes the signed files."""
        with self.transaction() as db:
            book = self.book(name)
            if book.unreleased == 0 and book.version > 0:
                raise RefusedError(f"{name} has no changes since version {book.version}")
            version = book.version + 1
            limits.check_update_count(version)
            current = self.export(name)
            snapshot = Snapshot(version, current.pbk, current.pbr, current.pops)
            previous = {
                base: snap
                for base in delta_bases(version)
                if (snap := self.snapshot(name, base)) is not None
            }
            files = build(snapshot, previous)
            last = previous.get(version - 1)
            added, changed, deleted = _count_changes(last.pbk if last else b"", snapshot.pbk)
            created = self.clock()
            db.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    book.id,
                    version,
                    created,
                    snapshot.pops,
                    added,
                    changed,
                    deleted,
                    zlib.compress(snapshot.pbk, 1),
                    snapshot.pbr,
                ),
            )
            db.executemany(
                "INSERT INTO release_files VALUES (?, ?, ?, ?)",
                ((book.id, version, file, data) for file, data in files.items()),
            )
            # Snapshots and cabs older than the delta window are no longer needed: deltas are
            # built from the window, and only the newest release is ever posted. The history
            # (counts, dates) stays.
            db.execute(
                "UPDATE releases SET pbk = NULL WHERE book_id = ? AND version < ?",
                (book.id, version - 5),
            )
            db.execute(
                "DELETE FROM release_files WHERE book_id = ? AND version < ?",
                (book.id, version - 5),
            )
            db.execute("UPDATE operations SET released = 1 WHERE book_id = ?", (book.id,))
            db.execute("UPDATE books SET version = ? WHERE id = ?", (version, book.id))
        info = ReleaseInfo(version, created, snapshot.pops, added, changed, deleted, None)
        return info, files

    def release(
        self, name: str, secret_key: minisign.SecretKey
    ) -> tuple[ReleaseInfo, dict[str, bytes]]:
        """The next version, signed: the full cab and the deltas from the versions in the
        window (:func:`opencm.phonebook.release.build_release`)."""
        book = self.book(name)

        def build(snapshot: Snapshot, previous: dict[int, Snapshot]) -> dict[str, bytes]:
            return build_release(book.name, snapshot, previous, secret_key)

        return self.add_release(name, build)

    def export_to(self, name: str, directory: Path, *, released: bool = False) -> list[str]:
        """Write the book's ``.pbk`` and ``.pbr`` into ``directory``: the working copy, or with
        ``released`` the latest release's files (its ``.ver`` too: what a kit's
        ``[phonebook]`` folder holds). Returns the file names written."""
        book = self.book(name)
        if released:
            if book.version == 0:
                raise RefusedError(f"{name} has no release yet")
            members = read_cab(self.release_files(name, book.version)["full.cab"])
        else:
            snapshot = self.export(name)
            members = {f"{book.name}.pbk": snapshot.pbk, f"{book.name}.pbr": snapshot.pbr}
        directory.mkdir(parents=True, exist_ok=True)
        for member, data in members.items():
            atomic_write(directory / member, data)
        return sorted(members)

    def history(self, name: str) -> list[ReleaseInfo]:
        book_id = self._book_id(name)
        rows = self.db.execute(
            "SELECT version, created, pops, added, changed, deleted, posted FROM releases"
            " WHERE book_id = ? ORDER BY version",
            (book_id,),
        )
        return [ReleaseInfo(*row) for row in rows]

    def release_files(self, name: str, version: int) -> dict[str, bytes]:
        book_id = self._book_id(name)
        rows = self.db.execute(
            "SELECT name, data FROM release_files WHERE book_id = ? AND version = ? ORDER BY name",
            (book_id, version),
        ).fetchall()
        if not rows:
            raise InputError(f"{name} has no release {version}", field="version")
        return {row[0]: bytes(row[1]) for row in rows}

    def set_post_target(
        self, name: str, target: str, *, force: bool, check_only: bool = False
    ) -> None:
        """Remember the book's home service; a different one is refused unless ``force``.

        ``check_only`` refuses or passes without remembering (check before posting, remember
        once the post has succeeded).
        """
        with self.transaction() as db:
            book = self.book(name)
            if book.post_target not in (None, target) and not force:
                raise RefusedError(
                    f"{name} is published to {book.post_target}; a phone book has one home "
                    "service (posting to two causes version conflicts). Pass --force to move it."
                )
            if check_only:
                return
            db.execute("UPDATE books SET post_target = ? WHERE id = ?", (target, book.id))

    def mark_posted(self, name: str, version: int) -> None:
        with self.transaction() as db:
            book = self.book(name)
            db.execute(
                "UPDATE releases SET posted = ? WHERE book_id = ? AND version = ?",
                (self.clock(), book.id, version),
            )
            db.execute(
                "UPDATE books SET posted_version = ?, changes_since_post = 0 WHERE id = ?",
                (version, book.id),
            )


_PLAIN_TEXT = re.compile(r"[\x20\x21\x23-\x2b\x2d-\x7e]*")  # printable ASCII but ',' and '"'
_PLAIN_AREA = re.compile(rf"[0-9]{{0,{limits.AREA_MAX}}}")
_PLAIN_ACCESS = re.compile(rf"(?=.*[0-9])[0-9#*\- ]{{1,{limits.ACCESS_MAX}}}")


def is_plain_pop(pop: Pop) -> bool:
    """True when ``pop`` passes :func:`check_pop_fields` unchanged (one pass of cheap checks)."""
    return bool(
        len(pop.name) <= limits.POP_NAME_MAX
        and len(pop.dun) <= limits.DUN_MAX
        and _PLAIN_TEXT.fullmatch(pop.name)
        and _PLAIN_TEXT.fullmatch(pop.dun)
        and _PLAIN_AREA.fullmatch(pop.area)
        and _PLAIN_ACCESS.fullmatch(pop.access)
        and min(pop.country, pop.region, pop.min_speed, pop.max_speed, pop.reserved) >= 0
        and 0 <= pop.flags <= 255
        and not pop.flags & 1
    )


def check_pop_fields(pop: Pop) -> Pop:
    """PBA's field rules for a POP an administrator enters (tighter than MS-CPSP's reader)."""
    if is_plain_pop(pop):
        return pop
    # Something is unusual: the detailed checks name the field and the rule.
    limits.check_text(pop.name, "name", limits.POP_NAME_MAX)
    area = limits.check_area(pop.area)
    access = limits.check_access(pop.access)
    limits.check_text(pop.dun, "dun", limits.DUN_MAX)
    for field_name in ("country", "region", "min_speed", "max_speed", "reserved", "flags"):
        value = getattr(pop, field_name)
        if value < 0:
            raise InputError(f"must be 0 or more, not {value}", field=field_name)
    if pop.flags > 255:
        raise InputError(f"flags {pop.flags}: only bits 0-7 exist", field="flags")
    if pop.flags & 1:
        raise InputError(
            "flag bit 0 (Sign On) must be 0: MS-CPSP clients ignore such a POP", field="flags"
        )
    return replace(pop, area=area, access=access)


def _resolve_region(names: list[str], region: str) -> int:
    if region.isdigit():
        number = int(region)
        if not 1 <= number <= len(names):
            raise InputError(f"no region {number} (the book has {len(names)})", field="region")
        return number
    for number, existing in enumerate(names, 1):
        if existing.casefold() == region.casefold():
            return number
    known = ", ".join(names) if names else "none yet"
    raise InputError(
        f"no region named {region!r} (the book's regions: {known}); add it first with"
        f" `opencm phonebook region add BOOK {region}`",
        field="region",
    )


def _count_changes(old: bytes, new: bytes) -> tuple[int, int, int]:
    def keyed(data: bytes) -> dict[bytes, bytes]:
        return {line.split(b",", 1)[0]: line for line in data.split(b"\r\n") if line}

    before, after = keyed(old), keyed(new)
    added = len(after.keys() - before.keys())
    deleted = len(before.keys() - after.keys())
    changed = sum(1 for key, line in after.items() if key in before and before[key] != line)
    return added, changed, deleted


def default_directory() -> Path:
    configured = os.environ.get("OPENCM_PBA_WORKSPACE")
    if configured:
        return Path(configured)
    return data_home() / "opencm" / "pba"
