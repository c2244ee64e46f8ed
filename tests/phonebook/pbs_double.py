"""A Phone Book Service upload endpoint on 127.0.0.1, written to the upload contract.

``PUT /admin/books/{BOOK}/releases/{VERSION}``, ``Authorization: Bearer <token>``, body an
uncompressed tar of flat release file names. 201 ``{"book", "version"}``, 401 bad token,
409 version not newer, 400 bad archive. It publishes into a real store with
:func:`opencm.phonebook.store.publish_release`, so the whole path is real except the server code,
which the PBS engineer writes on another branch.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opencm.errors import OpencmError
from opencm.phonebook.store import current_version, publish_release

_PATH = re.compile(r"^/admin/books/([A-Za-z0-9_]{1,8})/releases/([0-9]{1,5})$")


def _handler(store: Path, token: str, seen: list[dict[str, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def answer(self, status: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            seen.append({"path": self.path, "content-type": self.headers.get("Content-Type", "")})
            if self.headers.get("Authorization") != f"Bearer {token}":
                self.answer(401, {"error": "bad token"})
                return
            match = _PATH.match(self.path)
            if match is None:
                self.answer(404, {"error": "no such endpoint"})
                return
            book, version = match.group(1), int(match.group(2))
            try:
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
                    files = {}
                    for member in tar.getmembers():
                        if not member.isfile() or "/" in member.name:
                            raise ValueError(f"bad member {member.name}")
                        extracted = tar.extractfile(member)
                        assert extracted is not None
                        files[member.name] = extracted.read()
            except (tarfile.TarError, ValueError) as error:
                self.answer(400, {"error": str(error)})
                return
            current = current_version(store, book)
            if current is not None and version <= current:
                self.answer(409, {"error": f"current is {current}"})
                return
            files.pop("pba.pub", None)  # the PBA's key: the real service registers and checks it
            try:
                publish_release(store, book, version, files)
            except OpencmError as error:
                self.answer(400, {"error": str(error)})
                return
            self.answer(201, {"book": book, "version": version})

    return Handler


@contextmanager
def serve(store: Path, token: str) -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(store, token, seen))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
