"""Hit counters like Microsoft's "PBServer Monitor": full, delta, none and error per phone book.

Full/delta/none count answers *delivered* (the last byte handed to the server without error;
``HEAD`` requests are not counted, a ``304`` counts as "none"). Error counts requests that could
not be satisfied; unknown or malformed book names are all counted under :data:`UNKNOWN` so a
scanner cannot grow the table without bound.

Each server process keeps its counters in memory and flushes them about once a second to
``DATA/.stats/<host>-<pid>-<start>.json`` (temp + rename). ``opencm pbs stats`` and ``/metrics``
add up every file there, so the numbers cover all workers and all replicas sharing the data
folder, and they survive restarts (a restarted worker starts a new file; at start-up the files
of finished processes on this host are folded into ``<host>-archive.json``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from opencm.fsutil import atomic_write

KINDS = ("full", "delta", "none", "error")
FULL, DELTA, NONE, ERROR = range(4)
#: The bucket for errors that name no phone book this server knows.
UNKNOWN = "(unknown)"
STATS_DIR = ".stats"
ARCHIVE_SUFFIX = "-archive.json"

Totals = dict[str, dict[str, int]]


class Counters:
    """This process's counters: book -> [full, delta, none, error]."""

    def __init__(self) -> None:
        self.books: dict[str, list[int]] = {}
        self.changed = False

    def hit(self, book: str, kind: int) -> None:
        row = self.books.get(book)
        if row is None:
            row = self.books[book] = [0, 0, 0, 0]
        row[kind] += 1
        self.changed = True

    def totals(self) -> Totals:
        return {book: dict(zip(KINDS, row, strict=True)) for book, row in self.books.items()}


def add_totals(parts: Iterable[Mapping[str, Mapping[str, int]]]) -> Totals:
    summed: Totals = {}
    for part in parts:
        for book, row in part.items():
            target = summed.setdefault(book, dict.fromkeys(KINDS, 0))
            for kind in KINDS:
                value = row.get(kind, 0)
                if isinstance(value, int) and value >= 0:
                    target[kind] += value
    return dict(sorted(summed.items()))


class StatsFiles:
    """The per-process stats files under ``DATA/.stats``."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / STATS_DIR
        start = time.time_ns() // 1_000_000
        self.own = self.directory / f"{socket.gethostname()}-{os.getpid()}-{start}.json"

    def write(self, counters: Counters) -> None:
        self.directory.mkdir(mode=0o755, exist_ok=True)
        payload = {"pid": os.getpid(), "updated": int(time.time()), "books": counters.totals()}
        atomic_write(self.own, (json.dumps(payload) + "\n").encode(), mode=0o644)
        counters.changed = False

    def read_all(self, *, exclude_own: bool = False) -> Totals:
        try:
            files = sorted(self.directory.glob("*.json"))
        except OSError:
            return {}
        loaded = {path.name: _load(path) for path in files}
        absorbed = {name for raw in loaded.values() if raw is not None for name in raw["absorbed"]}
        parts = [
            raw["books"]
            for name, raw in loaded.items()
            if raw is not None
            and name not in absorbed
            and not (exclude_own and name == self.own.name)
        ]
        return add_totals(parts)

    def compact(self, alive: Callable[[int], bool] | None = None) -> int:
        """Fold the files of this host's finished processes into ``<host>-archive.json``.

        Without this, every restart would leave files behind for ever. The archive lists the
        names it absorbed, so a crash between writing it and deleting them never counts twice.
        Returns how many files were folded in.
        """
        is_alive = alive or _pid_alive
        host = socket.gethostname()
        archive_path = self.directory / f"{host}{ARCHIVE_SUFFIX}"
        if not self.directory.is_dir():
            return 0
        with _locked(self.directory / ".lock"):
            archive = _load(archive_path) or {"books": {}, "absorbed": []}
            for name in archive.get("absorbed", []):  # left over from an interrupted compaction
                (self.directory / name).unlink(missing_ok=True)
            dead: list[tuple[Path, Mapping[str, Mapping[str, int]]]] = []
            for path in sorted(self.directory.glob(f"{host}-*.json")):
                pid_text = path.name[len(host) + 1 :].split("-")[0]
                if path in (archive_path, self.own) or not pid_text.isdigit():
                    continue
                raw = _load(path)
                if raw is not None and not is_alive(int(pid_text)):
                    dead.append((path, raw["books"]))
            if not dead:
                return 0
            books = add_totals([archive["books"], *(books for _, books in dead)])
            body = {"books": books, "absorbed": [path.name for path, _ in dead]}
            atomic_write(archive_path, (json.dumps(body) + "\n").encode(), mode=0o644)
            for path, _ in dead:
                path.unlink(missing_ok=True)
            return len(dead)


def _load(path: Path) -> dict[str, Any] | None:
    """A stats file as {"books": …, "absorbed": […]}, or None while it cannot be read."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None  # a file another process is replacing right now; the next read has it
    if not isinstance(raw, dict) or not isinstance(raw.get("books"), dict):
        return None
    books = {str(k): v for k, v in raw["books"].items() if isinstance(v, dict)}
    absorbed = raw.get("absorbed", [])
    names = [str(n) for n in absorbed] if isinstance(absorbed, list) else []
    return {"books": books, "absorbed": names}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_totals(data_dir: Path) -> Totals:
    """Everything every process serving ``data_dir`` has counted (for ``opencm pbs stats``)."""
    return StatsFiles(data_dir).read_all()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(totals: Mapping[str, Mapping[str, int]], versions: Mapping[str, int]) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of the counters and served versions."""
    lines = [
        "# HELP opencm_pbs_hits_total Phone-book requests by book and outcome: full, delta and "
        "none count delivered answers, error counts requests that could not be satisfied.",
        "# TYPE opencm_pbs_hits_total counter",
    ]
    lines += [
        f'opencm_pbs_hits_total{{book="{_label(book)}",kind="{kind}"}} {row.get(kind, 0)}'
        for book, row in sorted(totals.items())
        for kind in KINDS
    ]
    lines += [
        "# HELP opencm_pbs_book_version The phone-book version this server answers with.",
        "# TYPE opencm_pbs_book_version gauge",
    ]
    lines += [
        f'opencm_pbs_book_version{{book="{_label(b)}"}} {v}' for b, v in sorted(versions.items())
    ]
    return ("\n".join(lines) + "\n").encode()
