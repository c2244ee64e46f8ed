"""opencm's own HTTP/1.1 server for the PBS: precomputed answers straight to the socket.

Every answer is prepared when a release loads (:mod:`opencm.pbs.answers`: status line, header
block and body as bytes), so a request costs finding the end of its header block, splitting the
request line, one lookup and one ``writelines``: no ASGI messages, no per-request objects. This
is what lets one Python process get close to nginx (``benchmarks/pbs.py``). The rare routes
(``/metrics``, ``/healthz``, ``/openapi.json``, the upload) go to the ASGI handlers of
:class:`~opencm.pbs.app.PbsApp`, so their logic exists once.

Protection against slow or hostile clients, each with a documented answer:

* a request head (line and headers) must arrive within ``header_timeout`` seconds of its first
  byte (a new connection counts from its opening), an upload body with no pause longer than that;
* an idle keep-alive connection is closed after ``idle_timeout`` seconds;
* at most ``max_connections`` connections at once: one more gets ``503`` and is closed;
* a request line longer than the head limit gets the PBS's own ``414`` (the query is too long),
  a head whose headers are too large ``431``; ``Transfer-Encoding`` is refused (``501``) and a
  body on anything but an upload closes the connection after the answer, so requests never
  desynchronise behind a proxy.

HTTP/1.1 keep-alive and pipelining are supported; a client that reads slowly pauses reading of
its connection (transport flow control), so memory per connection stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from opencm.pbs.answers import Answer, choose, revalidate, select, text_answer, upload_too_large
from opencm.pbs.stats import ERROR

if TYPE_CHECKING:
    from opencm.pbs.app import Message, PbsApp

log = logging.getLogger("opencm.pbs.server")

#: A request head (line + headers) larger than this is refused. A real PBS request is ~200
#: bytes; the query limit (2,048) and ordinary headers fit many times over.
MAX_HEAD_BYTES = 16 * 1024
_CRLF2 = b"\r\n\r\n"
_CACHED_TARGETS = 16384
_BUSY = text_answer(503, b"Service Unavailable: too many connections\n", kind=None)
_BAD = text_answer(400, b"Bad Request: malformed HTTP request\n", kind=None)
_HEADERS_TOO_LARGE = text_answer(431, b"Request Header Fields Too Large\n", kind=None)
_NO_CHUNKS = text_answer(501, b"Not Implemented: Transfer-Encoding\n", kind=None)
_BAD_VERSION = text_answer(505, b"HTTP Version Not Supported: use HTTP/1.1\n", kind=None)


@dataclass(frozen=True)
class Limits:
    header_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 4096
    max_upload: int = 64 * 1024 * 1024


class _Clock:
    """The ``Date`` header line, rebuilt at most once a second (no timer: on use)."""

    def __init__(self) -> None:
        self.second = 0
        self.line = b""

    def date_line(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.line = b"Date: %s\r\n" % email.utils.formatdate(now, usegmt=True).encode()
        return self.line


class PbsServer:
    """Shared state of one process's connections."""

    def __init__(self, app: PbsApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.connections = 0
        self.clock = _Clock()
        # Answers by request target (GET and HEAD), for the catalog they were chosen from.
        self._answers: dict[bytes, Answer] = {}
        self._answers_for: object = None

    def cached(self, target: bytes) -> Answer | None:
        tables = self.app.catalog.tables
        if self._answers_for is not tables:  # a release came or went: choose again
            self._answers.clear()
            self._answers_for = tables
            return None
        return self._answers.get(target)

    def remember(self, target: bytes, answer: Answer) -> None:
        if len(target) <= 512:
            if len(self._answers) >= _CACHED_TARGETS:
                self._answers.clear()  # bounded; the working set refills in microseconds
            self._answers[target] = answer

    def protocol(self) -> HttpConnection:
        return HttpConnection(self)


class HttpConnection(asyncio.Protocol):
    """One client connection."""

    def __init__(self, server: PbsServer) -> None:
        self.server = server
        self.app = server.app
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.upload: asyncio.Task[None] | None = None
        self.body_arrived = asyncio.Event()
        self.closing = False
        self.counted = False
        self.loop = asyncio.get_running_loop()

    # ---- connection life ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        server = self.server
        if server.connections >= server.limits.max_connections:
            self._send(_BUSY, head_request=False, close=True)
            return
        server.connections += 1
        self.counted = True
        self.deadline = self.loop.time() + server.limits.header_timeout
        self.timer = self.loop.call_at(self.deadline, self._check_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.server.connections -= 1
            self.counted = False
        if self.timer is not None:
            self.timer.cancel()
        if self.upload is not None:
            self.upload.cancel()
        self.transport = None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # a slow reader: stop taking its requests

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()

    def _check_deadline(self) -> None:
        transport = self.transport
        if transport is None:
            return
        now = self.loop.time()
        if now >= self.deadline and self.upload is None:
            transport.abort()  # a half-sent request, an idle keep-alive, a lingering close
            return
        self.timer = self.loop.call_at(max(self.deadline, now + 0.5), self._check_deadline)

    # ---- requests ----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.upload is not None:
            self.buffer += data  # the upload's body, or requests handled after it
            self.body_arrived.set()
            return
        continuing = bool(self.buffer)
        if continuing:
            data = self.buffer + data
            self.buffer = b""
        self._process(data, continuing)

    def _process(self, data: bytes, continuing: bool = False) -> None:
        while data and not self.closing and self.upload is None:
            end = data.find(_CRLF2)
            if end < 0:
                if len(data) > MAX_HEAD_BYTES:
                    self._overlong(data)
                    return
                if not continuing:  # a request's first bytes: its whole head must follow in time
                    self.deadline = self.loop.time() + self.server.limits.header_timeout
                self.buffer = data
                return
            if end > MAX_HEAD_BYTES:
                self._overlong(data[:end])
                return
            data = self._request(data, end)
            continuing = False
        if not self.closing and self.upload is None:
            self.deadline = self.loop.time() + self.server.limits.idle_timeout

    def _overlong(self, head: bytes) -> None:
        line_end = head.find(b"\r\n")
        if 0 <= line_end <= MAX_HEAD_BYTES:
            self._send(_HEADERS_TOO_LARGE, head_request=False, close=True)
            return
        # The request line alone is too long: answer as the PBS answers a too-long query.
        parts = head[:MAX_HEAD_BYTES].split(b" ", 2)
        if len(parts) < 2:
            self._send(_BAD, head_request=False, close=True)
            return
        method = parts[0].decode("latin-1")
        path, _, query = parts[1].partition(b"?")
        answer = choose(self.app.catalog.tables, method, _path(path), query, None)
        self._send(answer, head_request=method == "HEAD", close=True)
        self.app.account(answer, method == "HEAD")

    def _request(self, data: bytes, end: int) -> bytes:
        """Answer the request whose head ends at ``end``; returns the bytes after it."""
        head = data[:end]
        rest = data[end + 4 :]
        line_end = head.find(b"\r\n")
        line = head if line_end < 0 else head[:line_end]
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[1]:
            self._send(_BAD, head_request=False, close=True)
            return b""
        method_b, target, version = parts
        if version != b"HTTP/1.1" and version != b"HTTP/1.0":
            self._send(_BAD_VERSION if version.startswith(b"HTTP/") else _BAD, False, True)
            return b""
        close = version == b"HTTP/1.0"
        if_none_match = None
        has_body = False
        if line_end >= 0:
            lower = head.lower()
            if b"\r\nconnection:" in lower:
                value = _header(lower, b"\r\nconnection:")
                close = b"close" in value if not close else b"keep-alive" not in value
            if b"\r\nif-none-match:" in lower:
                if_none_match = _header(head, b"\r\nif-none-match:", lower)
            if b"\r\ntransfer-encoding:" in lower:
                self._send(_NO_CHUNKS, head_request=False, close=True)
                return b""
            if b"\r\ncontent-length:" in lower:
                length = _content_length(lower)
                if length is None:
                    self._send(_BAD, head_request=False, close=True)
                    return b""
                has_body = length > 0
        head_request = method_b == b"HEAD"
        cacheable = head_request or method_b == b"GET"
        answer = self.server.cached(target) if cacheable else None
        if answer is None:
            method = method_b.decode("latin-1")
            path_b, _, query = target.partition(b"?")
            path = _path(path_b)
            if self.app.is_admin_route(path):
                return self._admin(method, path, query, head, rest, close)
            answer = select(self.app.catalog.tables, method, path, query)
            if cacheable:
                self.server.remember(target, answer)
        if if_none_match is not None:
            answer = revalidate(answer, if_none_match)
        self._send(answer, head_request, close or has_body)
        if answer.kind is not None and (not head_request or answer.kind == ERROR):
            self.app.counters.hit(answer.book, answer.kind)
        return b"" if has_body else rest

    def _send(self, answer: Answer, head_request: bool, close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        tail = b"Connection: close\r\n\r\n" if close else b"\r\n"
        body = answer.body
        if head_request or not body:
            transport.write(answer.head + self.server.clock.date_line() + tail)
        else:
            transport.writelines((answer.head, self.server.clock.date_line(), tail, body))
        if close:
            self._linger(transport)

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close after the answer without losing it: stop sending, read and drop what the client
        still sends (closing with unread data would reset the connection, and the client would
        never see its answer), and close when it is done or the header timeout passes."""
        self.closing = True
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.deadline = self.loop.time() + min(self.server.limits.header_timeout, 5.0)
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._check_deadline)

    def eof_received(self) -> bool:
        return False  # the client is done sending: close once our answer is out

    # ---- the rare routes, through the ASGI handlers ------------------------------------------
    def _admin(
        self, method: str, path: str, query: bytes, head: bytes, rest: bytes, close: bool
    ) -> bytes:
        lower = head.lower()
        length = _content_length(lower) if b"\r\ncontent-length:" in lower else 0
        if length is None:
            self._send(_BAD, head_request=False, close=True)
            return b""
        if length > self.server.limits.max_upload:
            self._send(upload_too_large(self.server.limits.max_upload), False, close=True)
            return b""
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        ]
        peer = self.transport.get_extra_info("peername") if self.transport else None
        scope: dict[str, Any] = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query,
            "scheme": "http",
            "client": tuple(peer[:2]) if peer else None,
            "headers": headers,
        }
        self.buffer = rest
        self.upload = self.loop.create_task(self._run_admin(scope, length, close))
        return b""

    async def _run_admin(self, scope: dict[str, Any], length: int, close: bool) -> None:
        response: dict[str, Any] = {}
        try:
            while len(self.buffer) < length:
                if self.transport is None:
                    return
                self.body_arrived.clear()
                # No pause longer than the header timeout while a body arrives.
                async with asyncio.timeout(self.server.limits.header_timeout):
                    await self.body_arrived.wait()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
            sent = False

            async def receive() -> Message:
                nonlocal sent
                if sent:
                    return {"type": "http.disconnect"}
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    response.update(message)
                elif message["type"] == "http.response.body":
                    headers = tuple(response.get("headers", ()))
                    payload = message.get("body", b"")
                    answer = _custom_answer(response["status"], headers, payload)
                    self._send(answer, scope["method"] == "HEAD", close)

            await self.app._other(scope, receive, send)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()
            return
        finally:
            self.upload = None
        if self.transport is not None and not self.closing:
            pending, self.buffer = self.buffer, b""
            self.deadline = self.loop.time() + self.server.limits.idle_timeout
            if pending:
                self._process(pending)


def _custom_answer(status: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> Answer:
    names = {name.lower() for name, _ in headers}
    if b"content-length" not in names and status not in (204, 304):
        headers = (*headers, (b"content-length", b"%d" % len(body)))
    return Answer(status, headers, body, "", None)


def _path(raw: bytes) -> str:
    path = raw.decode("latin-1")
    if "%" in path:
        path = unquote(path, encoding="latin-1")
    if path.startswith(("http://", "https://")):  # absolute form (RFC 9112 3.2.2)
        path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else "/"
    return path


def _header(source: bytes, marker: bytes, lower: bytes | None = None) -> bytes:
    """The value of the first header named by ``marker`` (``b"\\r\\nname:"``)."""
    start = (lower if lower is not None else source).find(marker) + len(marker)
    stop = source.find(b"\r\n", start)
    return (source[start:] if stop < 0 else source[start:stop]).strip(b" \t")


def _content_length(lower: bytes) -> int | None:
    """Content-Length, or None when it is invalid or given twice (request smuggling)."""
    marker = b"\r\ncontent-length:"
    if lower.count(marker) != 1:
        return None
    value = _header(lower, marker)
    if not value.isdigit() or len(value) > 12:
        return None
    return int(value)


async def serve_forever(
    app: PbsApp,
    limits: Limits,
    sock: Any,
    *,
    ssl: Any = None,
) -> None:
    """Serve on an already bound, listening socket until cancelled."""
    loop = asyncio.get_running_loop()
    state = PbsServer(app, limits)
    app.start_watching()
    server = await loop.create_server(state.protocol, sock=sock, backlog=4096, ssl=ssl)
    try:
        await asyncio.Future()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
        await app.stop_watching()
