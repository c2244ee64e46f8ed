"""Statistics from a static server's access log (nginx's ``combined`` format).

The exported tree (:mod:`opencm.pbs.export`) is served without opencm's code, so its hits are
counted afterwards from the log, by the rules the live server counts by
(:mod:`opencm.pbs.stats`): per book, *full*, *delta* and *none* count delivered answers (``HEAD``
not counted, ``304`` is *none*), *error* counts refused PBS requests under ``(unknown)``; other
paths and ``405`` are not counted. The request line gives book and version through the same
parser the server uses. A ``200`` is a delta when its size is that of a ``delta-<pbver>.cab``
of the book in the store within the delta window, otherwise the full book (the log does not say
which file was sent; two different cabs of one book would have to be the same size to mislead).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

from opencm.errors import InputError
from opencm.pbs.query import QueryError, is_endpoint, parse_query
from opencm.pbs.stats import DELTA, ERROR, FULL, NONE, UNKNOWN, Counters, Totals
from opencm.phonebook import store
from opencm.phonebook.limits import DELTA_WINDOW

#: ``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent …``
_COMBINED = re.compile(
    r'^\S+ \S+ .*?\[[^\]]*\] "(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-)'
)


def _delta_sizes(data: Path) -> dict[str, dict[int, set[int]]]:
    """Book (upper case) -> base -> the sizes of every delta from that base, by release."""
    sizes: dict[str, dict[int, set[int]]] = {}
    for folder in store.list_books(data):
        book = sizes.setdefault(folder.upper(), {})
        for entry in (data / folder).iterdir():
            if not entry.name.isdigit() or not (entry / store.MANIFEST).is_file():
                continue
            release = store.load_release(data, folder, int(entry.name))
            for base, artifact in release.deltas.items():
                if release.version - base <= DELTA_WINDOW:
                    book.setdefault(base, set()).add(artifact.size)
    return sizes


def count_lines(lines: Iterable[str], data: Path) -> tuple[Totals, int]:
    """The counters a live server would have for these requests, and how many lines were skipped."""
    deltas = _delta_sizes(data)
    counters = Counters()
    skipped = 0
    for line in lines:
        match = _COMBINED.match(line)
        if match is None:
            if line.strip():
                skipped += 1
            continue
        parts = match["request"].split(" ")
        if len(parts) not in (2, 3):
            continue  # a request nginx could not read: no server would have counted it
        method, target = parts[:2]  # nginx logs a too-long request line cut short
        path, _, query = target.partition("?")
        if not is_endpoint(unquote(path)) or method not in ("GET", "HEAD"):
            continue
        status = int(match["status"])
        parsed = parse_query(query.encode("latin-1", "replace"))
        if isinstance(parsed, QueryError) or status in (400, 404, 414):
            counters.hit(UNKNOWN, ERROR)
            continue
        if method == "HEAD":
            continue
        sent = 0 if match["bytes"] == "-" else int(match["bytes"])
        if status in (204, 304):
            counters.hit(parsed.key, NONE)
        elif status == 200:
            is_delta = sent in deltas.get(parsed.key, {}).get(parsed.pbver, set())
            counters.hit(parsed.key, DELTA if is_delta else FULL)
        else:
            skipped += 1  # 499 (client gone), 5xx: not a delivered answer
    return counters.totals(), skipped


def count_log(path: Path, data: Path) -> tuple[Totals, int]:
    try:
        with open(path, encoding="latin-1") as handle:
            return count_lines(handle, data)
    except OSError as error:
        raise InputError(f"cannot read the log ({error.strerror})", path=path) from error
