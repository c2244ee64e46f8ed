"""The Phone Book Service as a plain ASGI application (no framework on the hot path).

``GET /pbserver/pbserver.dll?…&pbver=V&pb=NAME`` is answered from the in-memory
:class:`~opencm.pbs.catalog.Catalog` with headers prepared at load time; measurements in
``docs/pbs-protocol.md`` show that a framework router would cost more than the decision itself.
The few other routes (``/metrics``, ``/openapi.json``, ``/healthz`` and the upload
``PUT /admin/books/{BOOK}/releases/{VERSION}``) are rare and handled by small functions below.

A background task polls the data folder (every ``poll_interval`` seconds): new releases become
visible without a restart, and the hit counters are flushed for ``opencm pbs stats``. Polling
rather than inotify because it also works on the NFS/SMB shares replicas may serve from.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from opencm.errors import InputError, OpencmError, RefusedError
from opencm.pbs import rsgi
from opencm.pbs.catalog import Catalog, Headers, Payload
from opencm.pbs.openapi import openapi_document
from opencm.pbs.query import PbsQuery, QueryError, is_endpoint, parse_query
from opencm.pbs.stats import (
    DELTA,
    ERROR,
    FULL,
    NONE,
    UNKNOWN,
    Counters,
    StatsFiles,
    add_totals,
)
from opencm.pbs.stats import prometheus_text as _prometheus_text
from opencm.phonebook import store

log = logging.getLogger("opencm.pbs")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DATA_ENV = "OPENCM_PBS_DATA"
POLL_ENV = "OPENCM_PBS_POLL"
MAX_UPLOAD_ENV = "OPENCM_PBS_MAX_UPLOAD"
#: Default bound on a release upload (a 65,000-POP phone book compresses to a few MB).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_KIND_INDEX = {"full": FULL, "delta": DELTA, "none": NONE}
_ADMIN_PREFIX = "/admin/books/"


def _text_headers(body: bytes, content_type: bytes = _TEXT) -> Headers:
    return [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]


async def _respond(
    send: Send, status: int, body: bytes, headers: Headers | None = None, *, head: bool = False
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _text(send: Send, status: int, text: str, *extra: tuple[bytes, bytes]) -> None:
    body = text.encode()
    await _respond(send, status, body, [*_text_headers(body), *extra])


def _etag_matches(header: bytes, etag: bytes) -> bool:
    if header.strip() == b"*":
        return True
    for candidate in header.split(b","):
        tag = candidate.strip()
        if tag.startswith(b"W/"):
            tag = tag[2:]  # If-None-Match uses the weak comparison (RFC 9110 13.1.2)
        if tag == etag:
            return True
    return False


class PbsApp:
    """One server process's view of a data folder (the publish store)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        poll_interval: float = 1.0,
        max_upload: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.data_dir = data_dir
        self.poll_interval = poll_interval
        self.max_upload = max_upload
        self.catalog = Catalog(data_dir)
        self.counters = Counters()
        self.stats_files = StatsFiles(data_dir)
        self._watcher: asyncio.Task[None] | None = None
        self._openapi = json.dumps(openapi_document()).encode()
        for change in self.catalog.refresh():
            log.info("pbs: serving %s", change)
        try:
            self.stats_files.compact()
        except OSError as error:
            log.warning("pbs: cannot tidy the statistics files: %s", error)

    # ---- ASGI entry --------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if is_endpoint(scope["path"]):
                await self._pbserver(scope, send)
            else:
                await self._other(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    # ---- granian's RSGI (same behaviour, see opencm.pbs.rsgi) ----------------------------
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        await rsgi.handle(self, scope, proto)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watcher = loop.create_task(self._watch())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self._flush()

    # ---- the hot path ------------------------------------------------------------------
    async def _pbserver(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        head = method == "HEAD"
        if method != "GET" and not head:
            await _text(send, 405, "Method Not Allowed: use GET\n", (b"allow", b"GET, HEAD"))
            return
        query = parse_query(scope["query_string"])
        if isinstance(query, QueryError):
            await self._error(send, query.status, query.body, UNKNOWN, head)
            return
        table = self.catalog.tables.get(query.book)
        if table is None:
            body = f"Not Found: no phone book named {query.book} on this server\n".encode()
            await self._error(send, 404, body, UNKNOWN, head)
            return
        payload = table.decide(query.pbver)
        await self._deliver(scope, send, payload, query, head)

    async def _deliver(
        self, scope: Scope, send: Send, payload: Payload, query: PbsQuery, head: bool
    ) -> None:
        for name, value in scope["headers"]:
            if name == b"if-none-match" and _etag_matches(value, payload.etag):
                await _respond(send, 304, b"", payload.not_modified_headers)
                if not head:
                    self.counters.hit(payload.book, NONE)
                return
        await send(
            {"type": "http.response.start", "status": payload.status, "headers": payload.headers}
        )
        await send({"type": "http.response.body", "body": b"" if head else payload.body})
        if not head:
            self.counters.hit(payload.book, _KIND_INDEX[payload.kind])

    async def _error(self, send: Send, status: int, body: bytes, book: str, head: bool) -> None:
        await _respond(send, status, body, _text_headers(body), head=head)
        self.counters.hit(book, ERROR)

    # ---- everything else -----------------------------------------------------------------
    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith(_ADMIN_PREFIX):
            await self._admin(scope, receive, send)
            return
        routes: dict[str, Callable[[], tuple[bytes, bytes]]] = {
            "/metrics": self._metrics,
            "/openapi.json": lambda: (self._openapi, _JSON),
            "/healthz": self._health,
        }
        route = routes.get(path)
        if route is None:
            await _text(send, 404, f"Not Found: {path[:100]!r} is not a PBS path\n")
        elif method not in ("GET", "HEAD"):
            await _text(send, 405, "Method Not Allowed: use GET\n", (b"allow", b"GET, HEAD"))
        else:
            body, content_type = route()
            await _respond(
                send, 200, body, _text_headers(body, content_type), head=method == "HEAD"
            )

    def _metrics(self) -> tuple[bytes, bytes]:
        totals = add_totals([self.stats_files.read_all(exclude_own=True), self.counters.totals()])
        versions = {name: table.version for name, table in self.catalog.tables.items()}
        return _prometheus_text(totals, versions), b"text/plain; version=0.0.4; charset=utf-8"

    def _health(self) -> tuple[bytes, bytes]:
        books = {name: table.version for name, table in sorted(self.catalog.tables.items())}
        body = {"status": "ok", "books": books, "problems": dict(self.catalog.problems)}
        return json.dumps(body).encode(), _JSON

    # ---- upload --------------------------------------------------------------------------
    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"][len(_ADMIN_PREFIX) :].split("/")
        if len(parts) != 3 or parts[1] != "releases":
            await _text(send, 404, "Not Found: use /admin/books/{BOOK}/releases/{VERSION}\n")
            return
        if scope["method"] != "PUT":
            await _text(send, 405, "Method Not Allowed: use PUT\n", (b"allow", b"PUT"))
            return
        # Imported here: the upload needs minisign (and its crypto library), requests do not.
        from opencm.pbs import tokens

        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, presented = auth.partition(" ")
        if (
            scheme.lower() != "bearer"
            or tokens.check_token(self.data_dir, presented.strip()) is None
        ):
            await _text(
                send,
                401,
                "Unauthorized: send Authorization: Bearer <token> (opencm pbs token add)\n",
                (b"www-authenticate", b'Bearer realm="opencm-pbs"'),
            )
            return
        if scope.get("scheme") != "https" and not _is_loopback(scope):
            await _text(send, 403, "Forbidden: uploads need HTTPS (or a loopback client)\n")
            return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type != b"application/x-tar":
            await _json(send, 400, {"error": "Content-Type must be application/x-tar"})
            return
        body = await _read_body(receive, self.max_upload)
        if body is None:
            await _json(send, 400, {"error": f"the upload is over {self.max_upload} bytes"})
            return
        book, version_text = parts[0], parts[2]
        try:
            release = await asyncio.to_thread(self._publish, book, version_text, body)
        except RefusedError as error:
            await _json(send, 409, {"error": str(error)})
            return
        except OpencmError as error:
            await _json(send, 400, {"error": str(error)})
            return
        log.info("pbs: published %s version %d", release.book, release.version)
        location = f"/admin/books/{release.book}/releases/{release.version}".encode()
        await _json(send, 201, {"book": release.book, "version": release.version}, location)

    def _publish(self, book: str, version_text: str, body: bytes) -> store.Release:
        from opencm.pbs import upload

        store.check_book_name(book)
        if not version_text.isdigit() or not version_text.isascii() or len(version_text) > 9:
            raise InputError(f"version {version_text[:20]!r} is not a number", field="version")
        version = int(version_text)
        for existing in store.list_books(self.data_dir):
            if existing.upper() == book.upper() and existing != book:
                raise InputError(f"the store spells this book {existing!r}", field="book")
        files = upload.unpack_release(body)
        upload.check_signed_for(files, book, version)
        store.build_manifest(book, version, files)  # refuse before any folder is made
        release = store.publish_release(self.data_dir, book, version, files)
        self.catalog.refresh()
        return release

    # ---- lifespan and the watcher ----------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._watcher = asyncio.create_task(self._watch())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._watcher is not None:
                    self._watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._watcher
                self._flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                changes = await asyncio.to_thread(self.catalog.refresh)
                for change in changes:
                    log.info("pbs: serving %s", change)
                if self.counters.changed:
                    self._flush()
            except Exception:  # the watcher must outlive a bad moment on the disk
                log.exception("pbs: refreshing the catalog failed; retrying")

    def _flush(self) -> None:
        try:
            self.stats_files.write(self.counters)
        except OSError as error:
            log.warning("pbs: cannot write statistics: %s", error)


def _is_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


async def _json(send: Send, status: int, data: object, location: bytes | None = None) -> None:
    body = (json.dumps(data) + "\n").encode()
    headers = _text_headers(body, _JSON)
    if location:
        headers.append((b"location", location))
    await _respond(send, status, body, headers)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def app_from_env() -> PbsApp:
    """The factory ``opencm pbs serve`` hands to uvicorn/granian (one app per worker)."""
    data = os.environ.get(DATA_ENV)
    if not data:
        raise SystemExit(f"{DATA_ENV} is not set")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return PbsApp(
        Path(data),
        poll_interval=float(os.environ.get(POLL_ENV, "1.0")),
        max_upload=int(os.environ.get(MAX_UPLOAD_ENV, str(MAX_UPLOAD_BYTES))),
    )
