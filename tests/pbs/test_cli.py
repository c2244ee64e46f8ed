"""``opencm pbs`` options, TLS serving, and the upload's HTTPS policy."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx2
import pytest

from opencm.pbs.app import PbsApp
from tests.pbs.conftest import Keys, Server, free_port, publish, release_files, wait_until
from tests.pbs.test_upload import TAR, cli_token, tar_of, with_key


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opencm", "pbs", *args], capture_output=True, text=True, timeout=30
    )


def test_serve_refuses_a_missing_data_folder(tmp_path: Path) -> None:
    result = run_cli("serve", "--data", str(tmp_path / "nope"), "--port", str(free_port()))
    assert result.returncode == 2
    assert "nope: no such folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_tls_options_go_together(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    result = run_cli("serve", "--data", str(tmp_path), "--tls-cert", str(cert))
    assert result.returncode == 2
    assert "--tls-cert and --tls-key go together" in result.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_serving_over_tls(keys: Keys, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
         "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    data = tmp_path / "store"
    files = publish(keys, data, "WORLD", 10)
    token = cli_token(data, "pba")
    port = free_port()
    argv = [sys.executable, "-m", "opencm", "pbs", "serve", "--data", str(data), "--port",
            str(port), "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"https://127.0.0.1:{port}"
        context = ssl.create_default_context(cafile=str(cert))

        def up() -> bool:
            try:
                return httpx2.get(url + "/healthz", verify=context, timeout=1).status_code == 200
            except httpx2.TransportError:
                return False

        wait_until(up, timeout=20)
        answer = httpx2.get(url + "/pbserver/pbserver.dll?pb=WORLD&pbver=8", verify=context)
        assert answer.content == files["delta-8.cab"]
        body = tar_of(with_key(keys, release_files(keys, "WORLD", 11, [10])))
        headers = {**TAR, "Authorization": f"Bearer {token}"}
        put = httpx2.put(url + "/admin/books/WORLD/releases/11", content=body, headers=headers,
                         verify=context, timeout=10)  # fmt: skip
        assert put.status_code == 201
    finally:
        Server(process, "", data, tmp_path).stop()


def _call(app: PbsApp, scope: dict[str, Any], body: bytes = b"") -> tuple[int, bytes]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_plain_http_uploads_are_only_taken_from_loopback(keys: Keys, tmp_path: Path) -> None:
    # The policy on its own, driven in-process: a remote client over plain HTTP is refused.
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 10)
    token = cli_token(data, "pba")
    app = PbsApp(data)
    body = tar_of(with_key(keys, release_files(keys, "WORLD", 11, [])))
    scope = {
        "type": "http",
        "method": "PUT",
        "path": "/admin/books/WORLD/releases/11",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/x-tar"),
        ],
    }
    remote = {**scope, "scheme": "http", "client": ("192.0.2.10", 40000)}
    status, text = _call(app, remote, body)
    assert (status, text) == (403, b"Forbidden: uploads need HTTPS (or a loopback client)\n")
    assert _call(app, {**remote, "scheme": "https"}, body)[0] == 201
