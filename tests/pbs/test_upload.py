"""The release upload (``PUT /admin/books/{BOOK}/releases/{VERSION}``) and its tokens."""

from __future__ import annotations

import gzip
import io
import json
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from opencm.signing import generate_keypair, load_public_key, load_secret_key
from tests.pbs.conftest import Keys, Server, publish, release_files, start_server

TAR = {"Content-Type": "application/x-tar"}


def with_key(keys: Keys, files: dict[str, bytes]) -> dict[str, bytes]:
    """The release files plus the PBA's public key, as a book's first upload carries them."""
    return {**files, "pba.pub": keys.public_line.encode()}


def tar_of(
    files: dict[str, bytes], *, extra: Callable[[tarfile.TarFile], None] | None = None
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if extra:
            extra(archive)
    return buffer.getvalue()


def cli_token(data: Path, name: str) -> str:
    result = CliRunner().invoke(cli, ["pbs", "token", "add", name, "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    token: str = json.loads(result.output)["token"]
    return token


@dataclass
class Admin:
    server: Server
    data: Path
    token: str

    def put(self, book: str, version: int | str, body: bytes, **headers: str) -> httpx2.Response:
        url = f"{self.server.url}/admin/books/{book}/releases/{version}"
        sent = {**TAR, "Authorization": f"Bearer {self.token}", **headers}
        return httpx2.put(url, content=body, headers=sent, timeout=10)


@pytest.fixture(scope="module")
def admin(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    data = tmp_path_factory.mktemp("store")
    publish(keys, data, "WORLD", 10)
    # WORLD was posted to this store before (as a folder): its first upload registers the key.
    first = release_files(keys, "WORLD", 11, [6, 7, 8, 9, 10])
    token = cli_token(data, "pba-host")
    extra = ("--max-upload", "200000")
    server = start_server(data, tmp_path_factory.mktemp("log"), extra=extra)
    admin = Admin(server, data, token)
    registered = admin.put("WORLD", 11, tar_of(with_key(keys, first)))
    assert registered.status_code == 201, registered.text
    yield admin
    server.stop()


def test_a_posted_release_is_served_at_once(keys: Keys, admin: Admin) -> None:
    assert (admin.data / "WORLD" / "pba.pub").read_text() == keys.public_line
    files = release_files(keys, "WORLD", 12, [8, 9, 10, 11])
    response = admin.put("WORLD", 12, tar_of(files))
    assert response.status_code == 201, response.text
    assert response.json() == {"book": "WORLD", "version": 12}
    assert (admin.data / "WORLD" / "CURRENT").read_text() == "12\n"
    answer = httpx2.get(admin.server.endpoint + "?pb=WORLD&pbver=11", timeout=5)
    assert answer.headers["x-opencm-pbs-version"] == "12"
    assert answer.content == files["delta-11.cab"]


def test_a_new_book_can_be_posted(keys: Keys, admin: Admin) -> None:
    files = release_files(keys, "FRESH", 1, [])
    with_key = {**files, "pba.pub": keys.public_line.encode()}
    assert (
        admin.put("FRESH", 1, tar_of({f"./{k}": v for k, v in with_key.items()})).status_code == 201
    )
    answer = httpx2.get(admin.server.endpoint + "?pb=fresh&pbver=0", timeout=5)
    assert answer.content == files["full.cab"]


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic dXNlcjpwYXNz", "Bearer"])
def test_missing_or_wrong_token_is_401(keys: Keys, admin: Admin, auth: str | None) -> None:
    url = f"{admin.server.url}/admin/books/WORLD/releases/50"
    headers = {**TAR, **({"Authorization": auth} if auth else {})}
    body = tar_of(release_files(keys, "WORLD", 50, []))
    response = httpx2.put(url, content=body, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert (admin.data / "WORLD" / "CURRENT").read_text() != "50\n"


def test_a_version_not_newer_is_409(keys: Keys, admin: Admin) -> None:
    response = admin.put("WORLD", 5, tar_of(release_files(keys, "WORLD", 5, [])))
    assert response.status_code == 409
    assert "refusing" in response.json()["error"]


def _symlink(archive: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("delta-9.cab")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    archive.addfile(info)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda f: {**f, "../evil.cab": b"x"}, "flat names"),
        (lambda f: {**f, "sub/full.cab": b"x"}, "flat names"),
        (lambda f: {**f, "run.sh": b"#!/bin/sh"}, "not a release file"),
        (lambda f: {k: v for k, v in f.items() if k != "full.cab.minisig"}, "no signature"),
        (lambda f: {k: v for k, v in f.items() if not k.startswith("full")}, "needs full.cab"),
    ],
)
def test_bad_archives_are_400(
    keys: Keys, admin: Admin, mutate: Callable[[dict[str, bytes]], dict[str, bytes]], words: str
) -> None:
    files = mutate(release_files(keys, "WORLD", 60, [59]))
    response = admin.put("WORLD", 60, tar_of(files))
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert not (admin.data / "WORLD" / "60").exists()


def test_an_unreadable_signature_is_refused(keys: Keys, admin: Admin) -> None:
    files = {**release_files(keys, "WORLD", 60, [59]), "full.cab.minisig": b"not a signature"}
    response = admin.put("WORLD", 60, tar_of(files))
    assert response.status_code == 409
    assert "signature" in response.json()["error"]
    assert not (admin.data / "WORLD" / "60").exists()


def test_other_bad_uploads_are_400(keys: Keys, admin: Admin) -> None:
    files = release_files(keys, "WORLD", 61, [60])
    cases = [
        (admin.put("WORLD", 61, tar_of(files, extra=_symlink)), "regular file"),
        (admin.put("WORLD", 61, gzip.compress(tar_of(files))), "uncompressed tar"),
        (admin.put("WORLD", 61, b"garbage"), "uncompressed tar"),
        (admin.put("WORLD", 61, tar_of(files), **{"Content-Type": "application/zip"}), "x-tar"),
        (admin.put("WORLD", 61, b"\0" * 300_000), "over 200000 bytes"),
        (admin.put("WORLD", 62, tar_of(files)), "version"),
        (admin.put("FRESH", 61, tar_of(files)), "FRESH"),
        (admin.put("WORLD", "x1", tar_of(files)), "not a number"),
        (admin.put("../..", 61, tar_of(files)), ""),
        (admin.put("world", 61, tar_of(files)), "spells this book 'WORLD'"),
    ]
    for response, words in cases:
        assert 400 <= response.status_code < 500, response.text
        assert words in response.text
    assert not (admin.data / "WORLD" / "61").exists()


def test_tokens_are_stored_hashed_and_can_be_revoked(keys: Keys, admin: Admin) -> None:
    token = cli_token(admin.data, "second")
    path = admin.data / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in path.read_text()
    listed = CliRunner().invoke(cli, ["pbs", "token", "list", "--data", str(admin.data), "--json"])
    names = [t["name"] for t in json.loads(listed.output)["tokens"]]
    assert names == ["pba-host", "second"]
    assert token not in listed.output
    other = Admin(admin.server, admin.data, token)
    files = release_files(keys, "WORLD", 70, [])
    revoked = CliRunner().invoke(
        cli, ["pbs", "token", "revoke", "second", "--data", str(admin.data)]
    )
    assert revoked.exit_code == 0
    assert other.put("WORLD", 70, tar_of(files)).status_code == 401
    duplicate = CliRunner().invoke(
        cli, ["pbs", "token", "add", "pba-host", "--data", str(admin.data)]
    )
    assert duplicate.exit_code != 0


@pytest.fixture(scope="module")
def intruder() -> Keys:
    secret, public = generate_keypair()
    line = next(ln for ln in public.decode().splitlines() if not ln.startswith("untrusted"))
    return Keys(load_secret_key(secret), load_public_key(public), line)


def test_a_release_signed_by_another_key_is_refused(
    keys: Keys, intruder: Keys, admin: Admin
) -> None:
    forged = release_files(intruder, "WORLD", 13, [12])
    for body in (tar_of(forged), tar_of({**forged, "pba.pub": intruder.public_line.encode()})):
        response = admin.put("WORLD", 13, body)
        assert response.status_code == 409, response.text
    assert not (admin.data / "WORLD" / "13").exists()
    assert (admin.data / "WORLD" / "pba.pub").read_text() == keys.public_line


def test_a_tampered_cab_is_refused(keys: Keys, admin: Admin) -> None:
    files = release_files(keys, "WORLD", 13, [12])
    files["full.cab"] = files["full.cab"][:-1] + bytes([files["full.cab"][-1] ^ 1])
    response = admin.put("WORLD", 13, tar_of(files))
    assert response.status_code == 409
    assert not (admin.data / "WORLD" / "13").exists()


def test_a_version_jump_the_release_does_not_explain_is_refused(keys: Keys, admin: Admin) -> None:
    current = int((admin.data / "WORLD" / "CURRENT").read_text())
    locked = release_files(keys, "WORLD", 999_999_999, [])
    response = admin.put("WORLD", 999_999_999, tar_of(locked))
    assert response.status_code == 409
    assert "skips releases" in response.json()["error"]
    # A jump its deltas explain (the PBA released twice, posted once) is fine.
    explained = release_files(keys, "WORLD", current + 2, [current, current + 1])
    assert admin.put("WORLD", current + 2, tar_of(explained)).status_code == 201


def test_a_new_book_without_a_key_is_refused(keys: Keys, admin: Admin) -> None:
    response = admin.put("KEYLESS", 1, tar_of(release_files(keys, "KEYLESS", 1, [])))
    assert response.status_code == 409
    assert "pba.pub" in response.json()["error"]
    assert not (admin.data / "KEYLESS" / "1").exists()


def test_a_refused_new_book_leaves_nothing_behind(keys: Keys, admin: Admin) -> None:
    files = release_files(keys, "NEWBOOK", 1, [])
    del files["full.cab.minisig"]
    response = admin.put("NEWBOOK", 1, tar_of(files))
    assert response.status_code == 400
    assert "no signature" in response.json()["error"]
    assert not (admin.data / "NEWBOOK").exists()
