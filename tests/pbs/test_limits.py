"""Slow and hostile clients against opencm's own server: header and idle timeouts, the connection
cap, 414 for an over-long request line, no desynchronised requests."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pbs.conftest import Keys, Server, publish, start_server, wait_until
from tests.pbs.matrix import request

PARTIAL = b"GET /pbserver/pbserver.dll?pb=WORLD&pbver=7 HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture
def limited(keys: Keys, tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 10)
    extra = ("--header-timeout", "1", "--idle-timeout", "2", "--max-connections", "20")
    server = start_server(data, tmp_path, extra=extra)
    yield server
    server.stop()


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(server)), timeout=30)


def _closed_by_server(conn: socket.socket) -> bool:
    """Reads until the server closes (True) — the recv timeout (30 s) would raise instead."""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return True


def test_a_half_sent_request_is_dropped_and_others_are_served(limited: Server) -> None:
    with _connect(limited) as slow:
        slow.sendall(PARTIAL)
        assert request(_port(limited), "/pbserver/pbserver.dll?pb=WORLD&pbver=7").status == 200
        assert _closed_by_server(slow)


def test_a_request_trickled_byte_by_byte_is_dropped(limited: Server) -> None:
    with _connect(limited) as slow:
        dropped = False
        for byte in PARTIAL * 50:  # never finishes a head, but never pauses long either
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                dropped = True
                break
            time.sleep(0.05)
        assert dropped or _closed_by_server(slow)


def test_an_idle_keep_alive_connection_is_closed(limited: Server) -> None:
    with _connect(limited) as conn:
        conn.sendall(PARTIAL + b"\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += conn.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200 OK")
        assert _closed_by_server(conn)


def test_connections_over_the_cap_get_503_and_the_rest_are_served(
    keys: Keys, tmp_path: Path
) -> None:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 10)
    extra = ("--header-timeout", "60", "--max-connections", "3")
    server = start_server(data, tmp_path, extra=extra)
    held = [_connect(server) for _ in range(3)]
    try:
        for conn in held:
            conn.sendall(b"G")  # started, not finished: each holds its place
        wait_until(lambda: request(_port(server), "/healthz").status == 503, timeout=30)
        reply = request(_port(server), "/pbserver/pbserver.dll?pb=WORLD&pbver=7")
        assert reply.status == 503
        assert b"too many connections" in reply.body
        held.pop().close()
        wait_until(lambda: request(_port(server), "/healthz").status == 200, timeout=30)
    finally:
        for conn in held:
            conn.close()
        server.stop()


@pytest.mark.parametrize("length", [3_000, 20_000, 70_000, 1_000_000])
def test_an_over_long_query_gets_the_documented_414(limited: Server, length: int) -> None:
    target = "/pbserver/pbserver.dll?pb=WORLD&pbver=1&pad=" + "y" * length
    reply = request(_port(limited), target)
    assert reply.status == 414
    assert reply.body == b"URI Too Long: the query is longer than 2048 bytes\n"


def test_too_many_header_bytes_get_431(limited: Server) -> None:
    headers = {f"X-Pad-{i}": "z" * 1000 for i in range(40)}
    reply = request(_port(limited), "/pbserver/pbserver.dll?pb=WORLD&pbver=1", headers=headers)
    assert reply.status == 431


def test_pipelined_requests_are_answered_in_order(limited: Server) -> None:
    with _connect(limited) as conn:
        conn.sendall(PARTIAL + b"\r\n" + PARTIAL.replace(b"pbver=7", b"pbver=10") + b"\r\n")
        reply = b""
        while reply.count(b"HTTP/1.1 ") < 2 or not reply.endswith(b"\r\n\r\n"):
            reply += conn.recv(65536)
        first, second = reply.split(b"HTTP/1.1 ")[1:3]
        assert first.startswith(b"200") and second.startswith(b"204")


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (b"Transfer-Encoding: chunked\r\n", 501),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"Content-Length: -1\r\n", 400),
    ],
)
def test_ambiguous_bodies_are_refused_and_the_connection_closed(
    limited: Server, extra: bytes, status: int
) -> None:
    with _connect(limited) as conn:
        conn.sendall(PARTIAL + extra + b"\r\n" + PARTIAL + b"\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 %d " % status)
    assert reply.count(b"HTTP/1.1 ") == 1  # nothing after it was taken as a request
