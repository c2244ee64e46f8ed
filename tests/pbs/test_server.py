"""The endpoint over real HTTP: the documented version table, names, bad requests, ETag/304, HEAD.

The version table is the one "How Connection Manager Works" gives for the Phone Book Service.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.pbs.conftest import SERVERS, Keys, Server, publish, start_server

QUERY = "osarch=0&ostype=0&osver=1&cmver=1&lcid=1033&pbver={v}&pb={b}"


@dataclass
class Served:
    server: Server
    files: dict[str, bytes]


@pytest.fixture(scope="module", params=SERVERS)
def served(
    request: pytest.FixtureRequest, keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("store")
    files = publish(keys, data, "WORLD", 10)
    publish(keys, data, "Other", 3)
    server = start_server(data, tmp_path_factory.mktemp("log"), server=request.param)
    yield Served(server, files)
    server.stop()


def ask(served: Served, version: int | str, book: str = "WORLD", **kw: object) -> httpx2.Response:
    url = served.server.endpoint + "?" + QUERY.format(v=version, b=book)
    return httpx2.get(url, timeout=5, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pbver", "kind", "cab"),
    [
        (10, "none", None),
        (11, "none", None),
        (9, "delta", "delta-9.cab"),
        (7, "delta", "delta-7.cab"),
        (6, "delta", "delta-6.cab"),
        (5, "delta", "delta-5.cab"),  # exactly five behind: the PBA's delta (docs/pbs-protocol.md)
        (4, "full", "full.cab"),
        (3, "full", "full.cab"),
        (0, "full", "full.cab"),
    ],
)
def test_the_documented_version_table(
    served: Served, pbver: int, kind: str, cab: str | None
) -> None:
    response = ask(served, pbver)
    assert response.headers["x-opencm-pbs-kind"] == kind
    assert response.headers["x-opencm-pbs-version"] == "10"
    assert response.headers["x-opencm-pbs-book"] == "WORLD"
    assert response.headers["cache-control"] == "public, no-cache"
    assert response.headers["etag"].startswith('"')
    if cab is None:
        assert response.status_code == 204
        assert response.content == b""
        return
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.ms-cab-compressed"
    assert response.content == served.files[cab]
    signature = base64.b64decode(response.headers["x-opencm-pbs-signature"])
    assert signature == served.files[cab + ".minisig"]
    if kind == "delta":
        assert response.headers["x-opencm-pbs-base"] == str(pbver)
    else:
        assert "x-opencm-pbs-base" not in response.headers


@pytest.mark.parametrize(
    "url",
    [
        "/pbserver/pbserver.dll?OSArch=0&OSType=2&LCID=1033&PBVer=7&PB=world",
        "/PBServer/PBServer.dll?pbver=7&pb=World",
        "/pbserver/pbserver.dll?PBVER=7&Pb=WORLD",
    ],
)
def test_names_and_path_ignore_case(served: Served, url: str) -> None:
    response = httpx2.get(served.server.url + url, timeout=5)
    assert response.status_code == 200
    assert response.content == served.files["delta-7.cab"]


def test_a_book_stored_in_mixed_case_is_found(served: Served) -> None:
    response = ask(served, 1, book="OTHER")
    assert response.status_code == 200
    assert response.headers["x-opencm-pbs-book"] == "OTHER"
    assert response.headers["x-opencm-pbs-kind"] == "delta"


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/pbserver/pbserver.dll", 400, "Bad Request"),
        ("/pbserver/pbserver.dll?", 400, "Bad Request"),
        ("/pbserver/pbserver.dll?pb=WORLD", 400, "pbver"),
        ("/pbserver/pbserver.dll?pbver=3", 400, "pb (the phone book name)"),
        ("/pbserver/pbserver.dll?pb=WORLD&pbver=abc", 400, "whole number"),
        ("/pbserver/pbserver.dll?pb=WORLD&pbver=123456789012345", 400, "at most"),
        ("/pbserver/pbserver.dll?pb=..%2F..%2Fetc%2Fpasswd&pbver=1", 400, "letters, digits"),
        ("/pbserver/pbserver.dll?pb=WORLD%2F..&pbver=1", 400, "letters, digits"),
        ("/pbserver/pbserver.dll?pb=NOSUCH&pbver=1", 404, "no phone book named NOSUCH"),
        ("/pbserver/pbserver.dll?pb=WORLD&pbver=1&pad=" + "x" * 3000, 414, "longer than"),
        ("/pbserver/../etc/passwd", 404, "Not Found"),
        ("/nothing", 404, "Not Found"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_clear_body(
    served: Served, path: str, status: int, words: str
) -> None:
    # Sent raw so the client does not normalise the path.
    response = httpx2.get(httpx2.URL(served.server.url + path), timeout=5)
    assert response.status_code == status
    assert words in response.text
    assert "Traceback" not in response.text


def test_a_huge_request_line_is_refused_without_a_server_error(served: Served) -> None:
    # Too long for an HTTP client library to send: written on a raw socket.
    port = int(served.server.url.rsplit(":", 1)[1])
    target = "/pbserver/pbserver.dll?pb=WORLD&pbver=1&pad=" + "y" * 70_000
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500


def test_other_methods_are_refused(served: Served) -> None:
    response = httpx2.post(served.server.endpoint + "?pb=WORLD&pbver=1", timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_etag_and_if_none_match(served: Served) -> None:
    first = ask(served, 7)
    etag = first.headers["etag"]
    again = ask(served, 7, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert ask(served, 7, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert ask(served, 7, headers={"If-None-Match": "*"}).status_code == 304
    other = ask(served, 7, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    assert other.content == first.content
    # A different answer has a different ETag, so the delta's tag does not match the full book.
    assert ask(served, 3, headers={"If-None-Match": etag}).status_code == 200
    none = ask(served, 10)
    assert ask(served, 10, headers={"If-None-Match": none.headers["etag"]}).status_code == 304


def test_head_sends_the_headers_only(served: Served) -> None:
    url = served.server.endpoint + "?" + QUERY.format(v=7, b="WORLD")
    response = httpx2.head(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(served.files["delta-7.cab"]))
    assert response.content == b""


def test_openapi_and_health(served: Served) -> None:
    document = httpx2.get(served.server.url + "/openapi.json", timeout=5).json()
    assert "/pbserver/pbserver.dll" in document["paths"]
    health = httpx2.get(served.server.url + "/healthz", timeout=5).json()
    assert health["books"] == {"OTHER": 3, "WORLD": 10}


def test_a_store_path_outside_the_data_folder_is_not_served(served: Served, tmp_path: Path) -> None:
    # A symlinked book folder pointing elsewhere is still only reachable by its own name.
    response = httpx2.get(served.server.url + "/WORLD/10/full.cab", timeout=5)
    assert response.status_code == 404
