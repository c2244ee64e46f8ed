"""granian's native RSGI interface for :class:`~opencm.pbs.app.PbsApp`.

The PBS endpoint is answered directly with ``proto.response_bytes`` (one call instead of two
ASGI messages) from the answers :func:`opencm.pbs.answers.choose` picks. The rare routes
(``/metrics``, the upload, …) are handed to the ASGI handlers through a small adapter, so their
logic exists once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from opencm.pbs.answers import choose

if TYPE_CHECKING:
    from opencm.pbs.app import Message, PbsApp


async def handle(app: PbsApp, scope: Any, proto: Any) -> None:
    """One RSGI request."""
    if scope.proto != "http":
        return
    path = scope.path
    if app.is_admin_route(path):
        await _via_asgi(app, scope, proto)
        return
    method = scope.method
    query = scope.query_string.encode("utf-8", "replace")
    if_none_match = scope.headers.get("if-none-match")
    wanted = None if if_none_match is None else if_none_match.encode("latin-1", "replace")
    answer = choose(app.catalog.tables, method, path, query, wanted)
    if answer.status in (204, 304):
        proto.response_empty(answer.status, answer.text_headers)
    else:
        # For HEAD the server drops the body but keeps Content-Length.
        proto.response_bytes(answer.status, answer.text_headers, bytes(answer.body))
    app.account(answer, method == "HEAD")


async def _via_asgi(app: PbsApp, scope: Any, proto: Any) -> None:
    client_host, _, client_port = (scope.client or "").rpartition(":")
    asgi_scope: dict[str, Any] = {
        "type": "http",
        "method": scope.method,
        "path": scope.path,
        "query_string": scope.query_string.encode("utf-8", "replace"),
        "scheme": scope.scheme,
        "client": (client_host.strip("[]"), int(client_port or 0)),
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1", "replace"))
            for k, v in scope.headers.items()
        ],
    }
    chunks = _chunks(proto)
    started: dict[str, Any] = {}

    async def receive() -> Message:
        chunk = await anext(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in started["headers"]]
            proto.response_bytes(started["status"], headers, message.get("body", b""))

    await app._other(asgi_scope, receive, send)


async def _chunks(proto: Any) -> AsyncIterator[bytes]:
    async for chunk in proto:
        yield bytes(chunk)
