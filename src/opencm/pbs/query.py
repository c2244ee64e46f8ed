"""Parse and validate a Phone Book Service request.

Connection Manager asks ``GET /pbserver/pbserver.dll?osarch=0&ostype=0&osver=1&cmver=1&lcid=1033
&pbver=7&pb=WORLD`` ("How Connection Manager Works"). Parameter names are matched case-insensitively
(Microsoft's own scanner signature sends ``PBVer``/``PB``, the document lower case). Only ``pb`` and
``pbver`` decide the answer; the others are accepted and ignored, but their size is bounded.

Everything a client can get wrong comes back as a :class:`QueryError` with an HTTP status and a
one-line reason; nothing here raises. Parsed queries are cached by their raw bytes because real
clients send the same few hundred query strings over and over (see ``docs/pbs-protocol.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from opencm.phonebook.limits import is_book_name

PATH = "/pbserver/pbserver.dll"
#: Longer queries are refused (414) before they are parsed. A real one is about 80 bytes; the
#: bound leaves room for every parameter at its longest, percent-encoded.
MAX_QUERY_BYTES = 2048
#: The parameters opencm ignores (osarch, ostype, osver, cmver, lcid) are numbers in every
#: client seen; longer values are refused so the OpenAPI document can state a bound.
MAX_OTHER_CHARS = 32
#: "How Connection Manager Works" caps a phone book at 32,676 updates; more than nine digits is
#: nonsense.
MAX_VERSION = 999_999_999
_KNOWN = frozenset({b"osarch", b"ostype", b"osver", b"cmver", b"lcid", b"pbver", b"pb"})
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class PbsQuery:
    """A valid request: the phone book (upper case, as the catalog keys it) and the version."""

    book: str
    pbver: int


@dataclass(frozen=True, slots=True)
class QueryError:
    """Why a request cannot be answered: HTTP status and a reason for the body."""

    status: int
    reason: str

    @property
    def body(self) -> bytes:
        title = {400: "Bad Request", 414: "URI Too Long"}.get(self.status, "Bad Request")
        return f"{title}: {self.reason}\n".encode() if self.reason else f"{title}\n".encode()


BARE = QueryError(400, "")


def _decode(value: bytes) -> bytes:
    if b"%" in value or b"+" in value:
        return unquote_to_bytes(value.replace(b"+", b" "))
    return value


def _parse(raw: bytes) -> PbsQuery | QueryError:
    if not raw:
        return BARE
    if len(raw) > MAX_QUERY_BYTES:
        return QueryError(414, f"the query is longer than {MAX_QUERY_BYTES} bytes")
    seen: dict[bytes, bytes] = {}
    for part in raw.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        name = _decode(key).lower()
        if name not in _KNOWN:
            continue  # unknown parameters are ignored, as a tolerant server should
        if name in seen:
            return QueryError(400, f"parameter {name.decode()!r} is given twice")
        seen[name] = _decode(value)
    for name, value in seen.items():
        too_long = len(value) > MAX_OTHER_CHARS and name not in (b"pb", b"pbver")
        if too_long and len(value.decode("utf-8", "replace")) > MAX_OTHER_CHARS:
            return QueryError(400, f"{name.decode()} is longer than {MAX_OTHER_CHARS} characters")
    pb = seen.get(b"pb")
    pbver = seen.get(b"pbver")
    if pb is None and pbver is None:
        return QueryError(400, "the query needs pb (phone book name) and pbver (its version)")
    if pb is None or not pb:
        return QueryError(400, "pb (the phone book name) is missing")
    if not (pb.isascii() and is_book_name(pb.decode("ascii"))):
        return QueryError(400, "pb must be 1-8 letters, digits or '_', not all digits")
    if pbver is None or not pbver:
        return QueryError(400, "pbver (the installed phone book version) is missing")
    if not pbver.isdigit() or not pbver.isascii():
        return QueryError(400, "pbver must be a whole number (0 when no phone book is installed)")
    if len(pbver) > 9:
        return QueryError(400, f"pbver must be at most {MAX_VERSION}")
    return PbsQuery(pb.decode("ascii").upper(), int(pbver))


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
