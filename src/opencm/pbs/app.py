"""The Phone Book Service as a plain ASGI application (no framework on the hot path).

``GET /pbserver/pbserver.dll?…&pbver=V&pb=NAME`` is answered from the in-memory
:class:`~opencm.pbs.catalog.Catalog` with headers prepared at load time; measurements in
``docs/pbs-protocol.md`` show that a framework router would cost more than the decision itself.
The few other routes (``/metrics``, ``/openapi.json``, ``/healthz`` and the upload
``PUT /admin/books/{BOOK}/releases/{VERSION}``) are rare and handled by small functions below.

A background task follows the data folder (inotify, :mod:`opencm.pbs.watch`; polling every
``poll_interval`` seconds where inotify is missing or ``poll_only`` is set, e.g. a store on an
NFS/SMB share another machine writes): new releases become visible without a restart, and the
hit counters are flushed for ``opencm pbs stats``.
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
from opencm.pbs.answers import NOT_A_PBS_PATH, Answer, choose, upload_too_large
from opencm.pbs.catalog import Catalog
from opencm.pbs.openapi import openapi_document
from opencm.pbs.stats import Counters, StatsFiles, add_totals
from opencm.pbs.stats import prometheus_text as _prometheus_text
from opencm.pbs.watch import StoreWatch
from opencm.phonebook import store

log = logging.getLogger("opencm.pbs")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DATA_ENV = "OPENCM_PBS_DATA"
POLL_ENV = "OPENCM_PBS_POLL"
POLL_ONLY_ENV = "OPENCM_PBS_POLL_ONLY"
#: With inotify, the whole store is still looked at every this many ticks of the poll interval.
_SAFETY_TICKS = 60
MAX_UPLOAD_ENV = "OPENCM_PBS_MAX_UPLOAD"
#: Default bound on a release upload (a 65,000-POP phone book compresses to a few MB).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
_ADMIN_PREFIX = "/admin/books/"
_ROUTES = frozenset({"/metrics", "/openapi.json", "/healthz"})
Headers = list[tuple[bytes, bytes]]


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


class PbsApp:
    """One server process's view of a data folder (the publish store)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        poll_interval: float = 1.0,
        poll_only: bool = False,
        max_upload: int = MAX_UPLOAD_BYTES,
    ) -> None:
        self.data_dir = data_dir
        self.poll_interval = poll_interval
        self.max_upload = max_upload
        self.catalog = Catalog(data_dir)
        self.counters = Counters()
        self.stats_files = StatsFiles(data_dir)
        self.poll_only = poll_only
        self._watcher: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_again = False
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
            if self.is_admin_route(scope["path"]):
                await self._other(scope, receive, send)
            else:
                await self._pbserver(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    @staticmethod
    def is_admin_route(path: str) -> bool:
        """The few routes that are not the PBS endpoint (metrics, health, upload…)."""
        return path in _ROUTES or path.startswith(_ADMIN_PREFIX)

    def account(self, answer: Answer, head_request: bool) -> None:
        if answer.counted(head_request) and answer.kind is not None:
            self.counters.hit(answer.book, answer.kind)

    # ---- granian's RSGI (same behaviour, see opencm.pbs.rsgi) ----------------------------
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        await rsgi.handle(self, scope, proto)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watcher = loop.create_task(self._watch())  # the loop is not running yet

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self._flush()

    # ---- the hot path ------------------------------------------------------------------
    async def _pbserver(self, scope: Scope, send: Send) -> None:
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value
                break
        method = scope["method"]
        answer = choose(
            self.catalog.tables, method, scope["path"], scope["query_string"], if_none_match
        )
        head = method == "HEAD"
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": b"" if head else bytes(answer.body)})
        self.account(answer, head)

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
            answer = NOT_A_PBS_PATH
            await _respond(send, answer.status, bytes(answer.body), list(answer.headers))
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
            answer = upload_too_large(self.max_upload)
            await _respond(send, answer.status, bytes(answer.body), list(answer.headers))
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
        offered_key = files.pop(upload.KEY_FILE, None)
        store.build_manifest(book, version, files)  # refuse before any folder is made
        current = store.current_version(self.data_dir, book)
        new_key = upload.check_release(self.data_dir, book, version, files, current, offered_key)
        release = store.publish_release(self.data_dir, book, version, files)
        if new_key is not None:
            upload.register_key(self.data_dir, book, new_key)
        self.catalog.refresh()
        return release

    # ---- lifespan and the watcher ----------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_watching()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop_watching()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start_watching(self) -> None:
        """Follow the store (inotify, or polling) and flush the counters, on the running loop."""
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self._flush()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        notify: StoreWatch | None = None
        if not self.poll_only:
            try:
                notify = StoreWatch(self.data_dir)
                loop.add_reader(notify.fileno(), self._store_event, notify)
            except OSError as error:
                log.warning(
                    "pbs: no inotify (%s); checking the store every %ss", error, self.poll_interval
                )
                notify = None
        try:
            ticks = 0
            while True:
                await asyncio.sleep(self.poll_interval)
                ticks += 1
                # With inotify, a full look now and then still catches a change made in the
                # instant between a book folder appearing and its watch being added.
                if notify is None or ticks % _SAFETY_TICKS == 0:
                    self._refresh_soon()
                if self.counters.changed:
                    self._flush()
        finally:
            if notify is not None:
                loop.remove_reader(notify.fileno())
                notify.close()

    def _store_event(self, notify: StoreWatch) -> None:
        try:
            changed = notify.changed()
        except OSError as error:
            log.warning("pbs: reading store events failed: %s", error)
            changed = True
        if changed:
            self._refresh_soon()

    def _refresh_soon(self) -> None:
        """Reload changed books off the event loop; one refresh at a time, repeated if asked."""
        if self._refreshing is not None:
            self._refresh_again = True
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            while True:
                self._refresh_again = False
                try:
                    for change in await asyncio.to_thread(self.catalog.refresh):
                        log.info("pbs: serving %s", change)
                except Exception:  # the watcher must outlive a bad moment on the disk
                    log.exception("pbs: refreshing the catalog failed; retrying")
                if not self._refresh_again:
                    return
        finally:
            self._refreshing = None

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
        poll_only=os.environ.get(POLL_ONLY_ENV) == "1",
        max_upload=int(os.environ.get(MAX_UPLOAD_ENV, str(MAX_UPLOAD_BYTES))),
    )
