"""Hit counters: /metrics and ``opencm pbs stats`` count what was delivered, over all workers."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from opencm.pbs.stats import StatsFiles, read_totals
from tests.pbs.conftest import SERVERS, Keys, Server, publish, wait_until


def metrics(server: Server) -> dict[tuple[str, str], int]:
    text = httpx2.get(server.url + "/metrics", timeout=5).text
    found = re.findall(r'^opencm_pbs_hits_total\{book="([^"]+)",kind="(\w+)"\} (\d+)$', text, re.M)
    return {(book, kind): int(value) for book, kind, value in found}


def cli_stats(data: Path) -> dict[str, dict[str, int]]:
    result = CliRunner().invoke(cli, ["pbs", "stats", "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    books: dict[str, dict[str, int]] = json.loads(result.output)["books"]
    return books


@pytest.mark.parametrize("server_name", SERVERS)
def test_counts_match_what_was_delivered(
    keys: Keys, tmp_path: Path, server_factory: Callable[..., Server], server_name: str
) -> None:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 10)
    server = server_factory(data, server=server_name)
    url = server.endpoint + "?osarch=0&pb=WORLD&pbver="
    with httpx2.Client(timeout=5) as client:
        for _ in range(3):
            assert client.get(url + "1").status_code == 200  # full
        for _ in range(2):
            assert client.get(url + "8").status_code == 200  # delta
        for _ in range(4):
            assert client.get(url + "10").status_code == 204  # none
        etag = client.get(url + "10").headers["etag"]  # none #5
        assert client.get(url + "10", headers={"If-None-Match": etag}).status_code == 304
        assert client.head(url + "1").status_code == 200  # HEAD: not a download
        assert client.get(server.endpoint).status_code == 400
        assert client.get(url + "x").status_code == 400
        assert client.get(server.endpoint + "?pb=NOPE&pbver=1").status_code == 404
    expected = {
        ("WORLD", "full"): 3,
        ("WORLD", "delta"): 2,
        ("WORLD", "none"): 6,
        ("WORLD", "error"): 0,
        ("(unknown)", "error"): 3,
        ("(unknown)", "full"): 0,
        ("(unknown)", "delta"): 0,
        ("(unknown)", "none"): 0,
    }
    assert metrics(server) == expected
    text = httpx2.get(server.url + "/metrics", timeout=5).text
    assert 'opencm_pbs_book_version{book="WORLD"} 10' in text
    assert "# TYPE opencm_pbs_hits_total counter" in text
    # The CLI reads what the workers flushed to disk, a moment after the answers went out.
    wait_until(
        lambda: (
            cli_stats(data).get("WORLD", {}).get("none") == 6
            and cli_stats(data).get("(unknown)", {}).get("error") == 3
        )
    )
    stats = cli_stats(data)
    assert stats["WORLD"] == {"version": 10, "full": 3, "delta": 2, "none": 6, "error": 0}
    assert stats["(unknown)"]["error"] == 3
    # The plain-text table names every book.
    table = CliRunner().invoke(cli, ["pbs", "stats", "--data", str(data)])
    assert table.exit_code == 0
    assert re.search(r"^WORLD\s+10\s+3\s+2\s+6\s+0$", table.output, re.M)


def test_counts_add_up_over_workers_and_restarts(
    keys: Keys, tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 10)
    server = server_factory(data, workers=2)
    for _ in range(40):
        # A new connection each time, so both workers get some of the requests.
        assert httpx2.get(server.endpoint + "?pb=WORLD&pbver=7", timeout=5).status_code == 200
    wait_until(lambda: metrics(server).get(("WORLD", "delta")) == 40)
    server.stop()
    assert cli_stats(data)["WORLD"]["delta"] == 40
    again = server_factory(data)
    assert httpx2.get(again.endpoint + "?pb=WORLD&pbver=1", timeout=5).status_code == 200
    assert metrics(again)[("WORLD", "delta")] == 40
    assert metrics(again)[("WORLD", "full")] == 1


def test_files_of_finished_processes_are_folded_into_an_archive(tmp_path: Path) -> None:
    host = socket.gethostname()
    stats_dir = tmp_path / ".stats"
    stats_dir.mkdir()

    def write(name: str, full: int) -> None:
        row = {"full": full, "delta": 1, "none": 2, "error": 0}
        (stats_dir / name).write_text(json.dumps({"books": {"WORLD": row}}))

    write(f"{host}-101-1.json", 5)  # finished
    write(f"{host}-102-1.json", 7)  # finished
    write(f"{host}-103-1.json", 11)  # still running
    write("otherhost-101-1.json", 13)  # another replica's: not ours to judge
    files = StatsFiles(tmp_path)
    before = read_totals(tmp_path)
    assert before["WORLD"]["full"] == 36
    assert files.compact(alive=lambda pid: pid == 103) == 2
    assert read_totals(tmp_path) == before
    assert sorted(p.name for p in stats_dir.glob("*.json")) == sorted(
        [f"{host}-103-1.json", "otherhost-101-1.json", f"{host}-archive.json"]
    )
    # A compaction interrupted after writing the archive never counts twice.
    write(f"{host}-104-1.json", 17)
    assert files.compact(alive=lambda pid: pid == 103) == 1
    write(f"{host}-104-1.json", 17)  # as if the delete had not happened
    assert read_totals(tmp_path)["WORLD"]["full"] == 36 + 17
    assert files.compact(alive=lambda pid: pid == 103) == 0
    assert not (stats_dir / f"{host}-104-1.json").exists()
    assert read_totals(tmp_path)["WORLD"]["full"] == 36 + 17
