"""Releases going live: the watcher, 64 clients during a publish, two replicas on one store."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from opencm.fsutil import atomic_write
from opencm.pbs.stats import read_totals
from opencm.phonebook.store import publish_release
from tests.pbs.conftest import (
    SERVERS,
    Keys,
    Server,
    granian_available,
    publish,
    release_files,
    sha,
    wait_until,
)
from tests.pbs.test_upload import Admin, cli_token, tar_of, with_key

Expected = dict[tuple[int, str, int | None], tuple[str, bytes]]
PBVERS = [0, 3, 7, 9, 10, 11, 12, 13]


def expected_of(version: int, files: dict[str, bytes]) -> Expected:
    table: Expected = {}
    for name, data in files.items():
        if name.endswith(".cab"):
            base = None if name == "full.cab" else int(name[len("delta-") : -len(".cab")])
            kind = "full" if base is None else "delta"
            table[(version, kind, base)] = (sha(data), files[name + ".minisig"])
    return table


def check_answer(pbver: int, response: httpx2.Response, expected: Expected) -> str | None:
    """Why ``response`` is not a whole, consistent answer to ``pbver`` (None if it is)."""
    try:
        version = int(response.headers["x-opencm-pbs-version"])
        kind = response.headers["x-opencm-pbs-kind"]
    except (KeyError, ValueError):
        return f"status {response.status_code} without PBS headers: {response.text[:80]!r}"
    if kind == "none":
        return None if response.status_code == 204 and pbver >= version else f"bad none {pbver}"
    base = int(response.headers["x-opencm-pbs-base"]) if kind == "delta" else None
    if kind == "delta" and (base != pbver or not 0 < version - pbver <= 4):
        return f"delta {base}->{version} for pbver {pbver}"
    if kind == "full" and (0 < version - pbver <= 4 and pbver > version - 4):
        return f"full for pbver {pbver} at {version}"
    want = expected.get((version, kind, base))
    if want is None:
        return f"unexpected {(version, kind, base)}"
    signature = base64.b64decode(response.headers["x-opencm-pbs-signature"])
    if sha(response.content) != want[0] or signature != want[1]:
        return f"torn answer {(version, kind, base)}"
    return None


async def hammer(url: str, stop: asyncio.Event, expected: Expected, seen: set[int]) -> list[str]:
    problems: list[str] = []
    limits = httpx2.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx2.AsyncClient(timeout=10, limits=limits) as client:

        async def one_client(index: int) -> None:
            turn = index
            while not stop.is_set():
                pbver = PBVERS[turn % len(PBVERS)]
                turn += 1
                try:
                    response = await client.get(f"{url}?pb=WORLD&pbver={pbver}&osarch=0")
                except httpx2.HTTPError as error:
                    problems.append(f"{type(error).__name__}: {error}")
                    continue
                seen.add(int(response.headers.get("x-opencm-pbs-version", "0")))
                problem = check_answer(pbver, response, expected)
                if problem:
                    problems.append(problem)

        await asyncio.gather(*(one_client(i) for i in range(64)))
    return problems


@pytest.mark.parametrize("server_name", SERVERS)
def test_publishing_under_load_gives_no_error_and_no_torn_answer(
    keys: Keys, tmp_path: Path, server_factory: Callable[..., Server], server_name: str
) -> None:
    data = tmp_path / "store"
    expected = expected_of(10, publish(keys, data, "WORLD", 10))
    releases = {v: release_files(keys, "WORLD", v, list(range(v - 4, v))) for v in (11, 12)}
    for version, files in releases.items():
        expected.update(expected_of(version, files))
    server = server_factory(data, server=server_name, workers=2, poll=0.05)

    async def scenario() -> tuple[list[str], set[int]]:
        stop = asyncio.Event()
        seen: set[int] = set()
        load = asyncio.create_task(hammer(server.endpoint, stop, expected, seen))
        for version, files in releases.items():
            await asyncio.sleep(0.7)
            await asyncio.to_thread(publish_release, data, "WORLD", version, files)
        await asyncio.sleep(1.0)
        stop.set()
        return await load, seen

    problems, seen = asyncio.run(scenario())
    assert problems == []
    assert seen == {10, 11, 12}
    final = httpx2.get(server.endpoint + "?pb=WORLD&pbver=11", timeout=5)
    assert final.content == releases[12]["delta-11.cab"]


def test_a_broken_release_leaves_the_old_one_serving(
    keys: Keys, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    data = tmp_path / "store"
    files = publish(keys, data, "WORLD", 10)
    server = server_factory(data)
    staging = tmp_path / "staging"
    publish_release(staging, "WORLD", 11, release_files(keys, "WORLD", 11, [10]))
    shutil.copytree(staging / "WORLD" / "11", data / "WORLD" / "11")
    (data / "WORLD" / "11" / "full.cab").write_bytes(b"corrupted")
    atomic_write(data / "WORLD" / "CURRENT", b"11\n")

    def reported() -> bool:
        health = httpx2.get(server.url + "/healthz", timeout=5).json()
        return "WORLD" in health["problems"]

    wait_until(reported)
    answer = httpx2.get(server.endpoint + "?pb=WORLD&pbver=1", timeout=5)
    assert answer.headers["x-opencm-pbs-version"] == "10"
    assert answer.content == files["full.cab"]
    # Withdrawing a book (no CURRENT) takes it off the air.
    (data / "WORLD" / "CURRENT").unlink()
    wait_until(
        lambda: httpx2.get(server.endpoint + "?pb=WORLD&pbver=1", timeout=5).status_code == 404
    )


def test_two_replicas_on_one_store_agree(
    keys: Keys, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 10)
    token = cli_token(data, "pba")
    first = server_factory(data)
    second = server_factory(data, server="granian" if granian_available() else "uvicorn")
    # Posted to the second replica (granian's RSGI path when it is installed).
    response = Admin(second, data, token).put(
        "WORLD", 11, tar_of(with_key(keys, release_files(keys, "WORLD", 11, [7, 8, 9, 10])))
    )
    assert response.status_code == 201

    def version_of(server: Server) -> int:
        return int(httpx2.get(server.url + "/healthz", timeout=5).json()["books"]["WORLD"])

    wait_until(lambda: version_of(first) == 11)
    compared = ("etag", "x-opencm-pbs-kind", "x-opencm-pbs-version", "x-opencm-pbs-base",
                "x-opencm-pbs-signature", "content-type", "cache-control")  # fmt: skip
    for pbver in range(13):
        a = httpx2.get(f"{first.endpoint}?pb=WORLD&pbver={pbver}", timeout=5)
        b = httpx2.get(f"{second.endpoint}?pb=world&pbver={pbver}", timeout=5)
        assert (a.status_code, a.content) == (b.status_code, b.content)
        assert [a.headers.get(h) for h in compared] == [b.headers.get(h) for h in compared]
    # An ETag from one replica is good at the other (a client may be balanced to either).
    etag = httpx2.get(f"{first.endpoint}?pb=WORLD&pbver=8", timeout=5).headers["etag"]
    again = httpx2.get(
        f"{second.endpoint}?pb=WORLD&pbver=8", headers={"If-None-Match": etag}, timeout=5
    )
    assert again.status_code == 304
    # The statistics add up over both replicas: pbver 0-6 full, 7-10 delta, 11-12 none, twice,
    # plus one delta and one 304 (counted as none).
    totals = {"full": 14, "delta": 9, "none": 5, "error": 0}
    wait_until(lambda: read_totals(data).get("WORLD") == totals)
