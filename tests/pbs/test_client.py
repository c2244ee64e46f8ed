"""The client side against a real server: updates applied, bad ones refused, outages survived."""

from __future__ import annotations

import http.server
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opencm.pbs.autoupdate import auto_update, pbupdate_action
from opencm.pbs.client import fetch_update, request_url
from opencm.phonebook.pbk import Pop, format_pbk
from opencm.phonebook.pbr import format_pbr
from opencm.phonebook.release import Snapshot, build_release, full_cab
from opencm.phonebook.store import publish_release
from opencm.phonebook.update import apply_update, installed_version
from opencm.signing import generate_keypair, load_secret_key
from tests.pbs.conftest import Keys, Server, free_port, start_server, wait_until


def snapshot(book: str, version: int) -> Snapshot:
    """The real phone book ``book`` at ``version``: POPs come and go and numbers change."""
    pops = [
        Pop(index, 1, 1 + index % 2, f"City {index}", "20", f"555{version:03d}{index:02d}")
        for index in range(1, 4 + version % 3)
    ]
    return Snapshot(version, format_pbk(pops), format_pbr(["North", "South"]), len(pops))


def real_release(keys: Keys, book: str, version: int) -> dict[str, bytes]:
    """A release as ``opencm phonebook post`` makes it (the phone-book engineer's code)."""
    previous = {v: snapshot(book, v) for v in range(1, version)}
    return build_release(book, snapshot(book, version), previous, keys.secret)


def install(service: Path, book: str, version: int) -> None:
    snap = snapshot(book, version)
    apply_update(service, book, full_cab(book, snap), kind="full", base=None, version=version)


def write_profile(
    root: Path, url: str, key_line: str, installed: int | None, book: str = "WORLD"
) -> Path:
    """An installed profile: Cm/CONTOSO.cmp, Cm/CONTOSO/CONTOSO.cms and its phone book."""
    service = root / "CONTOSO"
    service.mkdir(parents=True)
    (root / "CONTOSO.cmp").write_text(
        "[Connection Manager]\r\nCMSFile=CONTOSO\\CONTOSO.cms\r\n", encoding="ascii"
    )
    (service / "CONTOSO.cms").write_text(
        "[Connection Manager]\r\nServiceName=Contoso\r\n"
        f"[ISP]\r\nPBFile=CONTOSO\\{book}.pbk\r\nRegionFile=CONTOSO\\{book}.pbr\r\n"
        f"[opencm]\r\nPhoneBookURL={url}\r\nPhoneBookKey={key_line}\r\n",
        encoding="ascii",
    )
    if installed is not None:
        install(service, book, installed)
    return root / "CONTOSO.cmp"


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@dataclass
class World:
    """A book of its own, at version 10, on the module's server."""

    server: Server
    data: Path
    book: str


@pytest.fixture(scope="module")
def pbs_server(
    keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Path]]:
    data = tmp_path_factory.mktemp("store")
    server = start_server(data, tmp_path_factory.mktemp("log"), poll=0.05)
    yield server, data
    server.stop()


_books = itertools.count(1)


@pytest.fixture
def world(keys: Keys, pbs_server: tuple[Server, Path]) -> World:
    server, data = pbs_server
    book = f"BOOK{next(_books)}"
    publish_release(data, book, 10, real_release(keys, book, 10))
    wait_until(lambda: fetch_update(server.url, book, 10, keys.public).status == "none")
    return World(server, data, book)


@pytest.mark.parametrize(("installed", "kind"), [(7, "delta"), (9, "delta"), (3, "full")])
def test_an_update_is_verified_and_applied(
    keys: Keys, tmp_path: Path, world: World, installed: int, kind: str
) -> None:
    book = world.book
    profile = write_profile(
        tmp_path / "Cm", world.server.endpoint, keys.public_line, installed, book
    )
    result = auto_update(profile)
    assert result.result == "applied", result.message
    assert (result.book, result.installed, result.version) == (book, installed, 10)
    assert result.outcome is not None
    assert result.outcome.status == kind
    service = tmp_path / "Cm" / "CONTOSO"
    assert installed_version(service, book) == 10
    assert (service / f"{book}.pbk").read_bytes() == snapshot(book, 10).pbk
    assert (service / f"{book}.pbr").read_bytes() == snapshot(book, 10).pbr
    # Asked again, the book is current.
    assert auto_update(profile).result == "current"


def test_no_installed_book_gets_the_full_book(keys: Keys, tmp_path: Path, world: World) -> None:
    profile = write_profile(tmp_path / "Cm", world.server.url, keys.public_line, None, world.book)
    result = auto_update(profile)
    assert (result.result, result.installed, result.version) == ("applied", 0, 10)
    assert installed_version(tmp_path / "Cm" / "CONTOSO", world.book) == 10


def _tampered(keys: Keys, book: str) -> dict[str, bytes]:
    files = real_release(keys, book, 11)
    for name in ("full.cab", "delta-7.cab"):
        cab = bytearray(files[name])
        cab[-3] ^= 0x55
        files[name] = bytes(cab)
    return files


def _wrong_book(keys: Keys, book: str) -> dict[str, bytes]:
    return real_release(keys, "OTHER", 11)


def _other_key(keys: Keys, book: str) -> dict[str, bytes]:
    secret, _ = generate_keypair()
    return real_release(Keys(load_secret_key(secret), keys.public, keys.public_line), book, 11)


def _rollback(keys: Keys, book: str) -> dict[str, bytes]:
    # The server says 11, but the cabs are properly signed releases of version 6 (bases 1-5).
    old = real_release(keys, book, 6)
    return {
        "full.cab": old["full.cab"],
        "full.cab.minisig": old["full.cab.minisig"],
        "delta-7.cab": old["delta-5.cab"],
        "delta-7.cab.minisig": old["delta-5.cab.minisig"],
    }


def _wrong_base(keys: Keys, book: str) -> dict[str, bytes]:
    files = {k: v for k, v in real_release(keys, book, 11).items() if "delta-7" not in k}
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
    world: World,
    release: Callable[[Keys, str], dict[str, bytes]],
    installed: int,
    words: str,
) -> None:
    server, book = world.server, world.book
    publish_release(world.data, book, 11, release(keys, book))
    profile = write_profile(tmp_path / "Cm", server.endpoint, keys.public_line, installed, book)
    before = files_of(tmp_path / "Cm" / "CONTOSO")
    wait_until(lambda: fetch_update(server.url, book, 10, keys.public).status != "none")
    result = auto_update(profile)
    assert result.result == "refused", result.message
    assert words in result.message
    assert files_of(tmp_path / "Cm" / "CONTOSO") == before
    assert installed_version(tmp_path / "Cm" / "CONTOSO", book) == installed


class _Unsigned(http.server.BaseHTTPRequestHandler):
    """A server that answers with a cab but no signature (a real HTTP server on 127.0.0.1)."""

    cab = full_cab("WORLD", snapshot("WORLD", 11))

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
        before = files_of(tmp_path / "Cm" / "CONTOSO")
        result = auto_update(profile)
        assert result.result == "refused"
        assert "no signature" in result.message
        assert files_of(tmp_path / "Cm" / "CONTOSO") == before
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_server_down_keeps_the_book_and_returns(keys: Keys, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/pbserver/pbserver.dll"  # nothing listens there
    profile = write_profile(tmp_path / "Cm", url, keys.public_line, 7)
    before = files_of(tmp_path / "Cm" / "CONTOSO")
    result = auto_update(profile, timeout=2)
    assert result.result == "failed"
    assert "cannot reach" in result.message
    assert files_of(tmp_path / "Cm" / "CONTOSO") == before


def test_a_server_that_never_answers_does_not_hold_the_connection(
    keys: Keys, tmp_path: Path
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections (the kernel does) but never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        profile = write_profile(tmp_path / "Cm", url, keys.public_line, 7)
        started = time.monotonic()
        result = auto_update(profile, timeout=1.0)
        elapsed = time.monotonic() - started
    assert result.result == "failed"
    assert "within 1 s" in result.message
    assert elapsed < 3.0  # the bound (1 s) plus start-up slack, far below a stuck connect
    assert installed_version(tmp_path / "Cm" / "CONTOSO", "WORLD") == 7


def test_server_errors_and_unknown_books_keep_the_book(
    keys: Keys, tmp_path: Path, pbs_server: tuple[Server, Path]
) -> None:
    server, _ = pbs_server
    outcome = fetch_update(server.url, "NOSUCH", 1, keys.public_line, timeout=3)
    assert outcome.status == "failed"
    assert "404" in outcome.reason


def test_profiles_without_a_phone_book_service_are_skipped(tmp_path: Path) -> None:
    profile = write_profile(tmp_path / "Cm", "", "", 7)
    assert auto_update(profile).result == "skipped"
    assert pbupdate_action(None, None, "", 0) == -1


def test_request_url_accepts_a_server_or_the_endpoint() -> None:
    assert request_url("https://pbs.example", "WORLD", 7) == (
        "https://pbs.example/pbserver/pbserver.dll"
        "?osarch=0&ostype=0&osver=0&cmver=1&lcid=1033&pbver=7&pb=WORLD"
    )
    assert request_url("http://h:8080/x/PBServer.dll", "A", 0).startswith(
        "http://h:8080/x/PBServer.dll?"
    )


def test_a_redirect_to_the_service_is_followed(keys: Keys, tmp_path: Path, world: World) -> None:
    target = world.server.url

    class Moved(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(301)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        profile = write_profile(tmp_path / "Cm", url, keys.public_line, 8, world.book)
        result = auto_update(profile)
        assert (result.result, result.version) == ("applied", 10), result.message
    finally:
        httpd.shutdown()
        httpd.server_close()
