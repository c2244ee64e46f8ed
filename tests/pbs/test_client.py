"""The client side against a real server: updates applied, bad ones refused, outages survived."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cabarchive import CabArchive

from opencm.fsutil import atomic_write
from opencm.pbs.autoupdate import auto_update, pbupdate_action
from opencm.pbs.client import fetch_update, request_url
from opencm.pbs.store import publish_release
from opencm.signing import generate_keypair, load_secret_key
from tests.pbs.conftest import (
    Keys,
    Server,
    book_texts,
    free_port,
    make_cab,
    publish,
    release_files,
    wait_until,
)


class CabInstaller:
    """A stand-in for opencm.phonebook.update (being written on another branch) that obeys the
    same contract: read ``<BOOK>.ver``; apply a verified cab by replacing the files it holds,
    each by temp + rename, refusing a delta whose base is not the installed version."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, int | None, int]] = []

    def installed_version(self, service_dir: Path, book: str) -> int | None:
        try:
            return int((service_dir / f"{book}.ver").read_text().strip())
        except FileNotFoundError:
            return None

    def apply_update(
        self, service_dir: Path, book: str, cab: bytes, *, kind: str, base: int | None, version: int
    ) -> object:
        if kind == "delta" and base != self.installed_version(service_dir, book):
            raise ValueError("delta base mismatch")
        archive = CabArchive(cab)
        for name in archive:
            atomic_write(service_dir / name, archive[name].buf)
        self.applied.append((kind, base, version))
        return None


def write_profile(root: Path, url: str, key_line: str, installed: int | None) -> Path:
    """An installed profile: Cm/CONTOSO.cmp, Cm/CONTOSO/CONTOSO.cms and the WORLD phone book."""
    service = root / "CONTOSO"
    service.mkdir(parents=True)
    (root / "CONTOSO.cmp").write_text(
        "[Connection Manager]\r\nCMSFile=CONTOSO\\CONTOSO.cms\r\n", encoding="ascii"
    )
    (service / "CONTOSO.cms").write_text(
        "[Connection Manager]\r\nServiceName=Contoso\r\n"
        "[ISP]\r\nPBFile=CONTOSO\\WORLD.pbk\r\nRegionFile=CONTOSO\\WORLD.pbr\r\n"
        f"[opencm]\r\nPhoneBookURL={url}\r\nPhoneBookKey={key_line}\r\n",
        encoding="ascii",
    )
    if installed is not None:
        for name, data in book_texts("WORLD", installed).items():
            (service / name).write_bytes(data)
    return root / "CONTOSO.cmp"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def world(
    keys: Keys, tmp_path: Path, server_factory: Callable[..., Server]
) -> Iterator[tuple[Server, Path]]:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 10)
    yield server_factory(data), data


@pytest.mark.parametrize(("installed", "kind"), [(7, "delta"), (9, "delta"), (3, "full")])
def test_an_update_is_verified_and_applied(
    keys: Keys, tmp_path: Path, world: tuple[Server, Path], installed: int, kind: str
) -> None:
    server, _ = world
    profile = write_profile(tmp_path / "Cm", server.endpoint, keys.public_line, installed)
    installer = CabInstaller()
    result = auto_update(profile, installer=installer)
    assert result.result == "applied", result.message
    assert (result.book, result.installed, result.version) == ("WORLD", installed, 10)
    assert installer.applied == [(kind, installed if kind == "delta" else None, 10)]
    service = tmp_path / "Cm" / "CONTOSO"
    assert (service / "WORLD.ver").read_text() == "10\n"
    assert (service / "WORLD.pbk").read_bytes() == book_texts("WORLD", 10)["WORLD.pbk"]
    # Asked again, the book is current.
    assert auto_update(profile, installer=installer).result == "current"


def test_no_installed_book_gets_the_full_book(
    keys: Keys, tmp_path: Path, world: tuple[Server, Path]
) -> None:
    server, _ = world
    profile = write_profile(tmp_path / "Cm", server.url, keys.public_line, None)
    result = auto_update(profile, installer=CabInstaller())
    assert (result.result, result.installed, result.version) == ("applied", 0, 10)


def _tampered(keys: Keys) -> dict[str, bytes]:
    files = release_files(keys, "WORLD", 11, [7, 8, 9, 10])
    cab = bytearray(files["full.cab"])
    cab[-3] ^= 0x55
    files["full.cab"] = bytes(cab)
    delta = bytearray(files["delta-7.cab"])
    delta[-3] ^= 0x55
    files["delta-7.cab"] = bytes(delta)
    return files


def _wrong_book(keys: Keys) -> dict[str, bytes]:
    return release_files(keys, "WORLD", 11, [7, 8, 9, 10], sign_book="OTHER")


def _other_key(keys: Keys) -> dict[str, bytes]:
    secret, _ = generate_keypair()
    other = Keys(load_secret_key(secret), keys.public, keys.public_line)
    return release_files(other, "WORLD", 11, [7, 8, 9, 10])


def _rollback(keys: Keys) -> dict[str, bytes]:
    # The server says 11, but the cabs are properly signed releases of version 6 / base 5.
    old = release_files(keys, "WORLD", 6, [5])
    return {
        "full.cab": old["full.cab"],
        "full.cab.minisig": old["full.cab.minisig"],
        "delta-7.cab": old["delta-5.cab"],
        "delta-7.cab.minisig": old["delta-5.cab.minisig"],
    }


def _wrong_base(keys: Keys) -> dict[str, bytes]:
    files = release_files(keys, "WORLD", 11, [6])
    files["delta-7.cab"] = files.pop("delta-6.cab")
    files["delta-7.cab.minisig"] = files.pop("delta-6.cab.minisig")
    return files


@pytest.mark.parametrize(
    ("release", "installed", "words"),
    [
        (_tampered, 7, "signature check failed"),  # the delta
        (_tampered, 2, "signature check failed"),  # the full book
        (_wrong_book, 7, "signed for book 'OTHER'"),
        (_wrong_book, 2, "signed for book 'OTHER'"),
        (_other_key, 7, "signature check failed"),
        (_other_key, 2, "signature check failed"),
        (_rollback, 7, "version 6, not newer than the installed 7"),  # as a delta
        (_rollback, 8, "version 6, not newer than the installed 8"),  # as the full book
        (_wrong_base, 7, "delta applies to version 6, installed is 7"),
    ],
)
def test_bad_releases_are_refused_and_the_old_book_stays(
    keys: Keys,
    tmp_path: Path,
    world: tuple[Server, Path],
    release: Callable[[Keys], dict[str, bytes]],
    installed: int,
    words: str,
) -> None:
    server, data = world
    publish_release(data, "WORLD", 11, release(keys))
    profile = write_profile(tmp_path / "Cm", server.endpoint, keys.public_line, installed)
    before = snapshot(tmp_path / "Cm" / "CONTOSO")
    wait_until(lambda: fetch_update(server.url, "WORLD", 10, keys.public).status != "none")
    result = auto_update(profile, installer=CabInstaller())
    assert result.result == "refused", result.message
    assert words in result.message
    assert snapshot(tmp_path / "Cm" / "CONTOSO") == before


class _Unsigned(http.server.BaseHTTPRequestHandler):
    """A server that answers with a cab but no signature (a real HTTP server on 127.0.0.1)."""

    cab = make_cab(book_texts("WORLD", 11))

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.ms-cab-compressed")
        self.send_header("Content-Length", str(len(self.cab)))
        self.send_header("X-Opencm-Pbs-Kind", "full")
        self.send_header("X-Opencm-Pbs-Version", "11")
        self.end_headers()
        self.wfile.write(self.cab)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_unsigned_update_is_refused(keys: Keys, tmp_path: Path) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unsigned)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        profile = write_profile(tmp_path / "Cm", url, keys.public_line, 7)
        before = snapshot(tmp_path / "Cm" / "CONTOSO")
        result = auto_update(profile, installer=CabInstaller())
        assert result.result == "refused"
        assert "no signature" in result.message
        assert snapshot(tmp_path / "Cm" / "CONTOSO") == before
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_server_down_keeps_the_book_and_returns(keys: Keys, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/pbserver/pbserver.dll"  # nothing listens there
    profile = write_profile(tmp_path / "Cm", url, keys.public_line, 7)
    before = snapshot(tmp_path / "Cm" / "CONTOSO")
    result = auto_update(profile, installer=CabInstaller(), timeout=2)
    assert result.result == "failed"
    assert "cannot reach" in result.message
    assert snapshot(tmp_path / "Cm" / "CONTOSO") == before


def test_a_server_that_never_answers_does_not_hold_the_connection(
    keys: Keys, tmp_path: Path
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (the kernel does) but never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        profile = write_profile(tmp_path / "Cm", url, keys.public_line, 7)
        started = time.monotonic()
        result = auto_update(profile, installer=CabInstaller(), timeout=1.0)
        elapsed = time.monotonic() - started
    assert result.result == "failed"
    assert "within 1 s" in result.message
    assert elapsed < 3.0  # the bound (1 s) plus start-up slack, far below a stuck connect
    assert (tmp_path / "Cm" / "CONTOSO" / "WORLD.ver").read_text() == "7\n"


def test_server_errors_and_unknown_books_keep_the_book(
    keys: Keys, tmp_path: Path, world: tuple[Server, Path]
) -> None:
    server, _ = world
    outcome = fetch_update(server.url, "NOSUCH", 1, keys.public_line, timeout=3)
    assert outcome.status == "failed"
    assert "404" in outcome.reason


def test_profiles_without_a_phone_book_service_are_skipped(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "Cm", "", "", 7)
    assert auto_update(profile, installer=CabInstaller()).result == "skipped"
    assert pbupdate_action(None, None, "", 0) == -1


def test_request_url_accepts_a_server_or_the_endpoint() -> None:
    assert request_url("https://pbs.example", "WORLD", 7) == (
        "https://pbs.example/pbserver/pbserver.dll"
        "?osarch=0&ostype=0&osver=0&cmver=1&lcid=1033&pbver=7&pb=WORLD"
    )
    assert request_url("http://h:8080/x/PBServer.dll", "A", 0).startswith(
        "http://h:8080/x/PBServer.dll?"
    )
