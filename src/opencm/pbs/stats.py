"""Hit counters like Microsoft's "PBServer Monitor": full, delta, none and error per phone book.

Full/delta/none count answers *delivered* (the last byte handed to the server without error;
``HEAD`` requests are not counted, a ``304`` counts as "none"). Error counts requests that could
not be satisfied; unknown or malformed book names are all counted under :data:`UNKNOWN` so a
scanner cannot grow the table without bound.

Each server process keeps its counters in memory and flushes them about once a second to
``DATA/.stats/<host>-<pid>-<start>.json`` (temp + rename). ``opencm pbs stats`` and ``/metrics``
add up every file there, so the numbers cover all workers and all replicas sharing the data
folder, and they survive restarts (a restarted worker starts a new file).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from opencm.fsutil import atomic_write

KINDS = ("full", "delta", "none", "error")
FULL, DELTA, NONE, ERROR = range(4)
KIND_INDEX = {"full": FULL, "delta": DELTA, "none": NONE, "error": ERROR}
#: The bucket for errors that name no phone book this server knows.
UNKNOWN = "(unknown)"
STATS_DIR = ".stats"

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
        parts: list[Mapping[str, Mapping[str, int]]] = []
        try:
            files = sorted(self.directory.glob("*.json"))
        except OSError:
            return {}
        for path in files:
            if exclude_own and path == self.own:
                continue
            try:
                raw = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                continue  # a file another process is replacing right now; next read has it
            books = raw.get("books") if isinstance(raw, dict) else None
            if isinstance(books, dict):
                parts.append({str(k): v for k, v in books.items() if isinstance(v, dict)})
        return add_totals(parts)


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
