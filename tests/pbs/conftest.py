"""Shared fixtures for the PBS tests: signed releases in a real store, a real server process."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import minisign
import pytest
from cabarchive import CabArchive, CabFile

from opencm.phonebook.store import publish_release
from opencm.signing import generate_keypair, load_public_key, load_secret_key, sign

PURPOSE = "opencm-phonebook"


@dataclass
class Keys:
    secret: minisign.SecretKey
    public: minisign.PublicKey
    public_line: str


@pytest.fixture(scope="session")
def keys() -> Keys:
    secret, public = generate_keypair()
    line = next(
        ln for ln in public.decode().splitlines() if ln and not ln.startswith("untrusted comment")
    )
    return Keys(load_secret_key(secret), load_public_key(public), line)


def book_texts(book: str, version: int) -> dict[str, bytes]:
    """The phone-book files of ``book`` at ``version`` (small, but different per version)."""
    return {
        f"{book}.pbk": f"; {book} version {version}\n1,{version},555{version:04d}\n".encode(),
        f"{book}.pbr": f"; regions of {book}\n1,Region {version}\n".encode(),
        f"{book}.ver": f"{version}\n".encode(),
    }


def make_cab(files: dict[str, bytes]) -> bytes:
    archive = CabArchive()
    for name, data in files.items():
        archive[name] = CabFile(data)
    return bytes(archive.save(compress=True))


def release_files(
    keys: Keys, book: str, version: int, bases: list[int], *, sign_book: str | None = None
) -> dict[str, bytes]:
    """full.cab and delta-<B>.cab for each base, each with its ``.minisig``."""
    signed_book = sign_book or book
    full = make_cab(book_texts(book, version))
    files = {
        "full.cab": full,
        "full.cab.minisig": sign(
            full, keys.secret, PURPOSE, {"book": signed_book, "version": version, "kind": "full"}
        ),
    }
    for base in bases:
        # A "delta" here carries the new .pbk whole plus a marker naming its base, which is
        # enough for the tests to tell which cab was applied.
        delta = make_cab({**book_texts(book, version), f"{book}.delta": f"{base}\n".encode()})
        files[f"delta-{base}.cab"] = delta
        files[f"delta-{base}.cab.minisig"] = sign(
            delta,
            keys.secret,
            PURPOSE,
            {"book": signed_book, "version": version, "kind": "delta", "base": base},
        )
    return files


def publish(keys: Keys, store: Path, book: str, version: int, window: int = 5) -> dict[str, bytes]:
    bases = [b for b in range(max(1, version - window), version)]
    files = release_files(keys, book, version, bases)
    publish_release(store, book, version, files)
    return files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A real ``opencm pbs serve`` process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    url: str
    data: Path
    log: Path
    extra: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.url + "/pbserver/pbserver.dll"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(
    data: Path,
    log_dir: Path,
    *,
    server: str = "opencm",
    workers: int = 1,
    poll: float = 0.1,
    extra: tuple[str, ...] = (),
) -> Server:
    port = free_port()
    log = log_dir / f"pbs-{server}-{port}.log"
    argv = [
        sys.executable, "-m", "opencm", "pbs", "serve", "--data", str(data),
        "--port", str(port), "--server", server, "--workers", str(workers),
        "--poll-interval", str(poll), *extra,
    ]  # fmt: skip
    with open(log, "wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    server_ = Server(process, f"http://127.0.0.1:{port}", data, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pbs serve exited: {log.read_text(errors='replace')}")
        try:
            if httpx2.get(server_.url + "/healthz", timeout=0.5).status_code == 200:
                return server_
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    server_.stop()
    raise RuntimeError(f"pbs serve did not come up: {log.read_text(errors='replace')}")


def granian_available() -> bool:
    try:
        import granian  # noqa: F401
    except ImportError:
        return False
    return True


SERVERS = ["opencm", "uvicorn", pytest.param("granian", marks=pytest.mark.skipif(
    not granian_available(), reason="granian is not installed (optional extra)"))]  # fmt: skip


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def factory(data: Path, **kwargs: object) -> Server:
        server = start_server(data, tmp_path, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
