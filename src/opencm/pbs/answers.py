"""Every answer of the PBS endpoint, built once, and the one function that picks it.

An answer depends only on (method, path, raw query, ``If-None-Match``) and the current release of
the book asked for, so everything a server sends — status, headers, body — is prepared when a
release is loaded (:mod:`opencm.pbs.catalog`) and a request only looks it up with :func:`choose`.
Every front uses this: the ASGI and RSGI adapters (:mod:`opencm.pbs.app`, :mod:`opencm.pbs.rsgi`),
opencm's own HTTP server (:mod:`opencm.pbs.server`, which also keeps the status line and header
block as ready bytes) and the nginx export (:mod:`opencm.pbs.export`, which writes these same
headers into nginx's configuration).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

from opencm.pbs.query import QueryError, is_endpoint, parse_query
from opencm.pbs.stats import DELTA, ERROR, FULL, NONE, UNKNOWN

if TYPE_CHECKING:
    from opencm.pbs.catalog import BookTable

Headers = tuple[tuple[bytes, bytes], ...]
#: A body: bytes, or a view of a memory-mapped cab (shared by every process serving it).
Body = bytes | memoryview
CAB_TYPE = b"application/vnd.ms-cab-compressed"
TEXT_TYPE = b"text/plain; charset=utf-8"
CACHE_CONTROL = b"public, no-cache"
_KIND_INDEX = {"full": FULL, "delta": DELTA, "none": NONE}

#: ``If-None-Match`` (RFC 9110 13.1.2, weak comparison) as one expression on
#: ``<etag>|<header value>``; the nginx export uses the same expression in a ``map``.
ETAG_MATCH = r'^(?:[^|]*\|[ \t]*\*[ \t]*|("[^"|]*")\|(?:.*,)?[ \t]*(?:W/)?\1[ \t]*(?:,.*)?)$'
_ETAG_MATCH = re.compile(ETAG_MATCH.encode())


@dataclass(frozen=True, slots=True, eq=False)
class Answer:
    """One complete response, ready for the wire."""

    status: int
    headers: Headers
    body: Body
    #: The statistics bucket: book (or ``(unknown)``) and kind index; kind None = not counted.
    book: str
    kind: int | None
    etag: bytes = b""
    #: The ``304`` answer to a matching ``If-None-Match`` (answers with an ETag only).
    not_modified: Answer | None = None
    #: The headers as text, for granian's RSGI interface.
    text_headers: list[tuple[str, str]] = field(default_factory=list)
    #: Status line and header lines as bytes (each ending in CRLF), for opencm's own server.
    head: bytes = b""

    def __post_init__(self) -> None:
        text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.headers]
        object.__setattr__(self, "text_headers", text)
        reason = HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {reason}\r\n".encode()]
        lines += [b"%s: %s\r\n" % (_wire_name(k), v) for k, v in self.headers]
        object.__setattr__(self, "head", b"".join(lines))

    def counted(self, head_request: bool) -> bool:
        """Whether the statistics count this answer (HEAD counts errors only)."""
        return self.kind is not None and (not head_request or self.kind == ERROR)


def _wire_name(name: bytes) -> bytes:
    return b"-".join(part.capitalize() for part in name.split(b"-"))


def etag_matches(etag: bytes, if_none_match: bytes) -> bool:
    return _ETAG_MATCH.match(etag + b"|" + if_none_match) is not None


def text_answer(status: int, text: bytes, *extra: tuple[bytes, bytes], kind: int | None) -> Answer:
    headers = ((b"content-type", TEXT_TYPE), (b"content-length", b"%d" % len(text)), *extra)
    return Answer(status, headers, text, UNKNOWN, kind)


def cab_answer(
    book: str, version: int, base: int | None, body: Body, size: int, sha256: str, signature: bytes
) -> Answer:
    kind = "full" if base is None else "delta"
    etag = f'"{sha256[:32]}"'.encode()
    name = f"{book}-{version}-{'full' if base is None else f'delta-{base}'}.cab"
    common = _pbs_headers(etag, kind, book, version, base)
    headers = (
        (b"content-type", CAB_TYPE),
        (b"content-length", b"%d" % size),
        (b"content-disposition", f'attachment; filename="{name}"'.encode()),
        *common,
        (b"x-opencm-pbs-signature", base64.b64encode(signature)),
    )
    not_modified = Answer(304, headers[2:], b"", book, NONE, etag)
    return Answer(200, headers, body, book, _KIND_INDEX[kind], etag, not_modified)


def none_answer(book: str, version: int) -> Answer:
    etag = f'"none-{book}-{version}"'.encode()
    headers = _pbs_headers(etag, "none", book, version, None)
    not_modified = Answer(304, headers, b"", book, NONE, etag)
    return Answer(204, headers, b"", book, NONE, etag, not_modified)


def _pbs_headers(etag: bytes, kind: str, book: str, version: int, base: int | None) -> Headers:
    headers: Headers = (
        (b"etag", etag),
        (b"cache-control", CACHE_CONTROL),
        (b"x-opencm-pbs-kind", kind.encode()),
        (b"x-opencm-pbs-book", book.encode()),
        (b"x-opencm-pbs-version", b"%d" % version),
    )
    return (*headers, (b"x-opencm-pbs-base", b"%d" % base)) if base is not None else headers


def upload_too_large(limit: int) -> Answer:
    """``413`` for an upload over ``--max-upload`` (the server refuses it before reading it)."""
    body = b'{"error": "the upload is over %d bytes"}\n' % limit
    headers = ((b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)))
    return Answer(413, headers, body, UNKNOWN, None)


NOT_A_PBS_PATH = text_answer(404, b"Not Found: not a PBS path\n", kind=None)
METHOD_NOT_ALLOWED = text_answer(
    405, b"Method Not Allowed: use GET\n", (b"allow", b"GET, HEAD"), kind=None
)
_query_errors: dict[QueryError, Answer] = {}
_unknown_books: dict[str, Answer] = {}


def _query_error(error: QueryError) -> Answer:
    answer = _query_errors.get(error)
    if answer is None:
        answer = _query_errors[error] = text_answer(error.status, error.body, kind=ERROR)
    return answer


def unknown_book_text(book: str) -> bytes:
    return f"Not Found: no phone book named {book} on this server\n".encode()


def _unknown_book(book: str) -> Answer:
    answer = _unknown_books.get(book)
    if answer is None:
        if len(_unknown_books) > 4096:
            _unknown_books.clear()  # bounded: a scanner cannot grow it
        answer = _unknown_books[book] = text_answer(404, unknown_book_text(book), kind=ERROR)
    return answer


def select(tables: Mapping[str, BookTable], method: str, path: str, query: bytes) -> Answer:
    """The answer to a request before ``If-None-Match`` is considered."""
    if not is_endpoint(path):
        return NOT_A_PBS_PATH
    if method != "GET" and method != "HEAD":
        return METHOD_NOT_ALLOWED
    parsed = parse_query(query)
    if isinstance(parsed, QueryError):
        return _query_error(parsed)
    table = tables.get(parsed.key)
    if table is None:
        return _unknown_book(parsed.book)
    return table.decide(parsed.pbver)


def revalidate(answer: Answer, if_none_match: bytes | None) -> Answer:
    """``304`` when ``If-None-Match`` (its first header, if any) matches the answer's ETag."""
    not_modified = answer.not_modified
    if if_none_match is not None and not_modified is not None:
        return not_modified if etag_matches(answer.etag, if_none_match) else answer
    return answer


def choose(
    tables: Mapping[str, BookTable],
    method: str,
    path: str,
    query: bytes,
    if_none_match: bytes | None,
) -> Answer:
    """The answer to one request (``if_none_match``: the first such header, if any)."""
    return revalidate(select(tables, method, path, query), if_none_match)
