"""Parse and validate a Phone Book Service request, as an ordered list of rules on the raw query.

Connection Manager asks ``GET /pbserver/pbserver.dll?osarch=0&ostype=0&osver=1&cmver=1&lcid=1033
&pbver=7&pb=WORLD`` ("How Connection Manager Works"). Parameter names are matched
case-insensitively (Microsoft's own scanner signature sends ``PBVer``/``PB``, the documents lower
case). Only ``pb`` and ``pbver`` decide the answer; the others are accepted and ignored, but
their size is bounded.

The validation is written once, as :data:`RULES`: regular expressions tried in order on the raw
query, the first that matches decides the error. Python runs them here; ``opencm pbs export``
writes the very same expressions into nginx's configuration (PCRE and Python's ``re`` agree on
this subset), so both servers refuse the same requests with the same words. Values are taken
literally, without percent-decoding: every valid value is letters, digits and ``_``, so an
encoded one can only be refused, and nginx cannot decode inside a ``map``.

Nothing here raises. Parsed queries are cached by their raw bytes because real clients send the
same few thousand query strings over and over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opencm.phonebook.limits import BOOK_NAME_MAX

PATH = "/pbserver/pbserver.dll"
#: Longer queries are refused (414) before they are parsed. A real one is about 80 bytes; the
#: bound leaves room for every parameter at its longest.
MAX_QUERY_BYTES = 2048
#: The parameters opencm ignores (osarch, ostype, osver, cmver, lcid) are numbers in every
#: client seen; longer values are refused so the OpenAPI document can state a bound.
MAX_OTHER_CHARS = 32
#: "How Connection Manager Works" caps a phone book at 32,676 updates; more than nine digits is
#: nonsense.
MAX_VERSION = 999_999_999
IGNORED = ("osarch", "ostype", "osver", "cmver", "lcid")
KNOWN = (*IGNORED, "pbver", "pb")
_CACHE_LIMIT = 16384


@dataclass(frozen=True, slots=True)
class PbsQuery:
    """A valid request: the phone book as sent, its catalog key (upper case), the version."""

    book: str
    pbver: int

    @property
    def key(self) -> str:
        return self.book.upper()


@dataclass(frozen=True, slots=True)
class QueryError:
    """Why a request cannot be answered: HTTP status and the whole text body."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Rule:
    """One refusal: a case-insensitive regular expression on the raw query and its answer."""

    pattern: str
    error: QueryError


def _param(name: str) -> str:
    """Somewhere in the query, a parameter called ``name`` (with or without ``=value``)."""
    return f"(?:^|&){name}(?:=|&|$)"


def _absent(name: str, value: str = "") -> str:
    """No parameter ``name`` whose value matches ``value`` (anchored at the query's start)."""
    tail = f"={value}" if value else "(?:=|&|$)"
    return f"^(?!(?:.*&)?{name}{tail})"


def _bad(text: str) -> QueryError:
    return QueryError(400, f"Bad Request: {text}\n".encode())


#: The phone-book name rule of :func:`opencm.phonebook.limits.is_book_name` as an expression
#: nginx can run too (tests/pbs/test_query.py checks that the two agree).
BOOK_NAME = f"(?=[^&]*[A-Za-z_])[A-Za-z0-9_]{{1,{BOOK_NAME_MAX}}}"
_VALID_BOOK = BOOK_NAME + "(?:&|$)"

#: The refusals, in the order they are tried (the first match answers).
RULES: tuple[Rule, ...] = (
    Rule("^$", QueryError(400, b"Bad Request\n")),
    Rule(
        f"(?s)^.{{{MAX_QUERY_BYTES + 1}}}",
        QueryError(
            414, f"URI Too Long: the query is longer than {MAX_QUERY_BYTES} bytes\n".encode()
        ),
    ),
    *(
        Rule(
            f"(?:^|&){name}(?:=[^&]*)?&(?:.*&)?{name}(?:=|&|$)",
            _bad(f"parameter '{name}' is given twice"),
        )
        for name in KNOWN
    ),
    *(
        Rule(
            f"(?:^|&){name}=[^&]{{{MAX_OTHER_CHARS + 1}}}",
            _bad(f"{name} is longer than {MAX_OTHER_CHARS} characters"),
        )
        for name in IGNORED
    ),
    Rule(
        _absent("pb") + _absent("pbver")[1:],
        _bad("the query needs pb (phone book name) and pbver (its version)"),
    ),
    Rule(_absent("pb", "[^&]"), _bad("pb (the phone book name) is missing")),
    Rule(_absent("pb", _VALID_BOOK), _bad("pb must be 1-8 letters, digits or '_', not all digits")),
    Rule(_absent("pbver", "[^&]"), _bad("pbver (the installed phone book version) is missing")),
    Rule(
        _absent("pbver", "[0-9]+(?:&|$)"),
        _bad("pbver must be a whole number (0 when no phone book is installed)"),
    ),
    Rule("(?:^|&)pbver=[0-9]{10}", _bad(f"pbver must be at most {MAX_VERSION}")),
)
#: Where a valid query keeps its two values (the rules above guarantee one of each).
BOOK_VALUE = "(?:^|&)pb=([^&]*)"
VERSION_VALUE = "(?:^|&)pbver=0*([0-9]+)"

_COMPILED = [(re.compile(rule.pattern.encode(), re.IGNORECASE), rule.error) for rule in RULES]
_BOOK = re.compile(BOOK_VALUE.encode(), re.IGNORECASE)
_VERSION = re.compile(VERSION_VALUE.encode(), re.IGNORECASE)


def _parse(raw: bytes) -> PbsQuery | QueryError:
    for pattern, error in _COMPILED:
        if pattern.search(raw):
            return error
    book = _BOOK.search(raw)
    version = _VERSION.search(raw)
    assert book is not None and version is not None  # the rules leave no other case
    return PbsQuery(book.group(1).decode("ascii"), int(version.group(1)))


_cache: dict[bytes, PbsQuery | QueryError] = {}


def parse_query(raw: bytes) -> PbsQuery | QueryError:
    """The request's phone book and version, or why it is refused (cached by raw bytes)."""
    hit = _cache.get(raw)
    if hit is not None:
        return hit
    result = _parse(raw)
    if len(raw) <= 256:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()  # crude but bounded; the working set refills in microseconds
        _cache[raw] = result
    return result


def is_endpoint(path: str) -> bool:
    """``/pbserver/pbserver.dll`` in any case (IIS paths are case-insensitive)."""
    return path == PATH or path.lower() == PATH
