"""The protocol's request matrix, and a raw HTTP/1.1 client to compare servers byte for byte."""

from __future__ import annotations

import socket
from dataclasses import dataclass

#: Headers whose values must be identical between servers (the rest — Date, Server, Connection,
#: nginx's Last-Modified — say nothing about the answer; see docs/pbs-deploy.md).
COMPARED = (
    "content-type",
    "content-length",
    "content-disposition",
    "etag",
    "cache-control",
    "allow",
    "x-opencm-pbs-kind",
    "x-opencm-pbs-book",
    "x-opencm-pbs-version",
    "x-opencm-pbs-base",
    "x-opencm-pbs-signature",
)
SEED = "osarch=0&ostype=0&osver=1&cmver=1&lcid=1033&pbver={v}&pb={b}"
ENDPOINT = "/pbserver/pbserver.dll"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def key(self) -> tuple[int, dict[str, str], bytes]:
        """What must be equal between two servers for the same request."""
        wanted = {k: v for k, v in self.headers.items() if k in COMPARED}
        if self.status in (204, 304):
            # No body: a Content-Type/-Length on these describes nothing (nginx adds them to 304).
            wanted.pop("content-type", None)
            wanted.pop("content-length", None)
        return self.status, wanted, self.body


def request(
    port: int, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> Reply:
    """One request on its own connection, sent exactly as given (no normalisation)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.setdefault(name.strip().lower(), value.strip())
    return Reply(int(status_line.split(" ")[1]), parsed, body)


def matrix(etags: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """(method, target, headers) for every case the protocol defines; ``etags`` by answer."""
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("GET", f"{ENDPOINT}?{SEED.format(v=version, b=book)}", {})
        for book, versions in (
            ("WORLD", (0, 1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 100, 999999999)),
            ("other", (0, 1, 2, 3, 4, 10)),
        )
        for version in versions
    ]
    spellings = [
        "/pbserver/pbserver.dll?OSArch=0&OSType=2&LCID=1033&PBVer=7&PB=world",
        "/PBServer/PBServer.dll?pbver=7&pb=World",
        "/pbserver/pbserver.dll?PBVER=0007&Pb=WORLD",
        "/pbserver/pbserver.dll?pb=WORLD&&pbver=7&",
        "/pbserver/pbserver.dll?pb=wOrLd&pbver=7&unknown=1",
    ]
    bad = [
        "/pbserver/pbserver.dll",
        "/pbserver/pbserver.dll?",
        "/pbserver/pbserver.dll?osarch=0",
        "/pbserver/pbserver.dll?pb=WORLD",
        "/pbserver/pbserver.dll?pb=WORLD&pbver=",
        "/pbserver/pbserver.dll?pbver=3",
        "/pbserver/pbserver.dll?pb=&pbver=3",
        "/pbserver/pbserver.dll?pb&pbver=3",
        "/pbserver/pbserver.dll?pb=WORLD&pbver=abc",
        "/pbserver/pbserver.dll?pb=WORLD&pbver=-1",
        "/pbserver/pbserver.dll?pb=WORLD&pbver=1.5",
        "/pbserver/pbserver.dll?pb=WORLD&pbver=123456789012345",
        "/pbserver/pbserver.dll?pb=WORLD&pbver=1&pbver=2",
        "/pbserver/pbserver.dll?lcid=1&pb=WORLD&lcid=2&pbver=1",
        "/pbserver/pbserver.dll?pb=..%2F..%2Fetc%2Fpasswd&pbver=1",
        "/pbserver/pbserver.dll?pb=WORLD%2F..&pbver=1",
        "/pbserver/pbserver.dll?pb=W%4FRLD&pbver=1",
        "/pbserver/pbserver.dll?pb=TOOLONGNAME&pbver=1",
        "/pbserver/pbserver.dll?pb=12345&pbver=1",
        "/pbserver/pbserver.dll?pb=NOSUCH&pbver=1",
        "/pbserver/pbserver.dll?pb=nosuch&pbver=1",
        "/pbserver/pbserver.dll?pb=WORLD&pbver=1&osver=" + "9" * 33,
        "/pbserver/pbserver.dll?pb=WORLD&pbver=1&pad=" + "x" * 3000,
        "/pbserver/pbserver.dll?pb=WORLD&pbver=1&pad=" + "y" * 70_000,
        "/nothing",
        "/pbserver/pbserver.dll/x",
    ]
    cases += [("GET", target, {}) for target in spellings + bad]
    seven = f"{ENDPOINT}?{SEED.format(v=7, b='WORLD')}"
    ten = f"{ENDPOINT}?{SEED.format(v=10, b='WORLD')}"
    cases += [
        ("HEAD", seven, {}),
        ("HEAD", ten, {}),
        ("HEAD", f"{ENDPOINT}?pb=WORLD", {}),
        ("POST", seven, {"Content-Length": "0"}),
        ("DELETE", seven, {}),
        ("GET", seven, {"If-None-Match": etags["delta-7"]}),
        ("GET", seven, {"If-None-Match": f'"other", W/{etags["delta-7"]}'}),
        ("GET", seven, {"If-None-Match": "*"}),
        ("GET", seven, {"If-None-Match": '"something-else"'}),
        ("GET", f"{ENDPOINT}?{SEED.format(v=3, b='WORLD')}", {"If-None-Match": etags["delta-7"]}),
        ("GET", ten, {"If-None-Match": etags["none"]}),
        ("GET", ten, {"If-None-Match": f"  {etags['none']} ,x"}),
        ("GET", seven, {"Range": "bytes=0-9"}),
        ("GET", seven, {"If-Modified-Since": "Sun, 06 Dec 2099 00:00:00 GMT"}),
    ]
    return cases
