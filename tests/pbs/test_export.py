"""`opencm pbs export` under real nginx: the same answers as `opencm pbs serve`, byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from tests.pbs.conftest import Keys, Server, free_port, publish, start_server, wait_until
from tests.pbs.matrix import ENDPOINT, SEED, matrix, request

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    prefix: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish requests, flush the log
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_nginx(prefix: Path, port: int) -> Nginx:
    errors = prefix / "logs" / "stderr.txt"
    with open(errors, "wb") as sink:
        process = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", "nginx.conf"], stdout=sink, stderr=sink
        )
    nginx = Nginx(process, port, prefix)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited: {errors.read_text(errors='replace')}")
        try:
            return request(port, "/healthz").status == 200
        except OSError:
            return False

    wait_until(up, timeout=20)
    return nginx


def run_export(data: Path, out: Path, port: int, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(
        cli,
        [
            "pbs",
            "export",
            "--data",
            str(data),
            "--out",
            str(out),
            "--json",
            *extra,
            "--listen",
            f"127.0.0.1:{port}",
        ],
    )
    assert result.exit_code == 0, result.output
    parsed: dict[str, object] = json.loads(result.output)
    return parsed


@dataclass
class Pair:
    live: Server
    nginx: Nginx
    data: Path
    out: Path
    files: dict[str, bytes]


@pytest.fixture
def world_readable() -> Iterator[Path]:
    # nginx's workers drop root to 'nobody': the tree must be readable by others, unlike
    # pytest's 0700 temporary folders.
    folder = Path(tempfile.mkdtemp(prefix="opencm-pbs-export-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pair(keys: Keys, world_readable: Path, tmp_path: Path) -> Iterator[Pair]:
    data = world_readable / "store"
    files = publish(keys, data, "WORLD", 10)
    publish(keys, data, "Other", 3)
    out = world_readable / "out"
    port = free_port()
    run_export(data, out, port)
    nginx = start_nginx(out / "nginx", port)
    live = start_server(data, tmp_path)
    yield Pair(live, nginx, data, out, files)
    live.stop()
    nginx.stop()


def _port(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _etags(port: int) -> dict[str, str]:
    seven = request(port, f"{ENDPOINT}?{SEED.format(v=7, b='WORLD')}")
    ten = request(port, f"{ENDPOINT}?{SEED.format(v=10, b='WORLD')}")
    return {"delta-7": seven.headers["etag"], "none": ten.headers["etag"]}


def test_every_request_of_the_matrix_is_answered_identically(pair: Pair) -> None:
    live = _port(pair.live)
    cases = matrix(_etags(live))
    differences = []
    for method, target, headers in cases:
        mine = request(live, target, method, headers)
        theirs = request(pair.nginx.port, target, method, headers)
        if mine.key() != theirs.key():
            differences.append((method, target[:80], headers, mine.key()[:2], theirs.key()[:2]))
    assert differences == []
    # The matrix really covers every kind of answer.
    statuses = {request(live, t, m, h).status for m, t, h in cases}
    assert statuses >= {200, 204, 304, 400, 404, 405, 414}


def test_the_cab_served_is_the_published_file(pair: Pair) -> None:
    reply = request(pair.nginx.port, f"{ENDPOINT}?{SEED.format(v=7, b='world')}")
    assert reply.body == pair.files["delta-7.cab"]
    assert reply.headers["x-opencm-pbs-base"] == "7"


def test_statistics_from_the_access_log_count_as_the_live_server(pair: Pair) -> None:
    cases = matrix(_etags(_port(pair.live)))
    for method, target, headers in cases:
        request(_port(pair.live), target, method, headers)
        request(pair.nginx.port, target, method, headers)
    pair.nginx.stop()  # flushes the access log
    runner = CliRunner()
    log = pair.out / "nginx" / "logs" / "access.log"
    from_log = runner.invoke(
        cli, ["pbs", "stats", "--data", str(pair.data), "--from-log", str(log), "--json"]
    )
    assert from_log.exit_code == 0, from_log.output
    counted = json.loads(from_log.output)["books"]
    assert counted["WORLD"]["delta"] > 0 and counted["WORLD"]["full"] > 0

    def live_equal() -> bool:
        live = runner.invoke(cli, ["pbs", "stats", "--data", str(pair.data), "--json"])
        # The etag probes above were asked of the live server only.
        books = json.loads(live.output)["books"]
        books["WORLD"]["delta"] -= 1
        books["WORLD"]["none"] -= 1
        return bool(books == counted)

    try:
        wait_until(live_equal, timeout=20)
    except AssertionError:
        live = runner.invoke(cli, ["pbs", "stats", "--data", str(pair.data), "--json"])
        raise AssertionError(f"live {live.output} log {counted}") from None


def test_a_release_published_while_clients_ask_appears_whole(
    pair: Pair, keys: Keys, world_readable: Path
) -> None:
    target = f"{ENDPOINT}?{SEED.format(v=7, b='WORLD')}"
    stop = threading.Event()
    seen: list[tuple[int, str, str, bytes]] = []
    errors: list[BaseException] = []

    def client() -> None:
        while not stop.is_set():
            try:
                reply = request(pair.nginx.port, target)
            except OSError as error:
                errors.append(error)
                continue
            h = reply.headers
            seen.append(
                (reply.status, h.get("x-opencm-pbs-version", ""), h.get("etag", ""), reply.body)
            )

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(seen) > 20, timeout=20)
        new_files = publish(keys, pair.data, "WORLD", 11)
        run_export(
            pair.data, pair.out, pair.nginx.port, "--reload", str(pair.out / "nginx" / "nginx.pid")
        )
        wait_until(lambda: any(v == "11" for _, v, _, _ in seen[-5:]), timeout=30)
        # While the old workers finish, both releases are served (each whole); then only the new.
        wait_until(lambda: {v for _, v, _, _ in seen[-30:]} == {"11"}, timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert errors == []
    expected = {
        "10": pair.files["delta-7.cab"],
        "11": new_files["delta-7.cab"],
    }
    for status, version, etag, body in seen:
        assert status == 200
        assert body == expected[version], "an answer mixed two releases"
        assert etag == f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    assert seen[0][1] == "10"
    # ...and the live server, following the same store, now agrees with nginx again.
    wait_until(
        lambda: request(_port(pair.live), target).body == new_files["delta-7.cab"], timeout=20
    )


def test_two_nginx_servers_on_one_tree_agree(pair: Pair) -> None:
    second_prefix = pair.out / "nginx-second"
    shutil.copytree(
        pair.out / "nginx", second_prefix, ignore=shutil.ignore_patterns("*.pid", "*.log")
    )
    port = free_port()
    snippet = second_prefix / "opencm-pbs.conf"
    text = snippet.read_text().replace(f"127.0.0.1:{pair.nginx.port}", f"127.0.0.1:{port}")
    snippet.write_text(text)
    second = start_nginx(second_prefix, port)
    try:
        for method, target, headers in matrix(_etags(pair.nginx.port)):
            one = request(pair.nginx.port, target, method, headers)
            two = request(second.port, target, method, headers)
            assert one.key() == two.key(), target
    finally:
        second.stop()


def _opencm(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "opencm", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--listen", "nowhere"], "HOST:PORT"),
        (["--listen", "127.0.0.1:80;evil"], "HOST:PORT"),
        (["--listen", "127.0.0.1:8080", "--reload", "/nonexistent/nginx.pid"], "nginx pid"),
    ],
)
def test_bad_export_options_are_refused_clearly(
    keys: Keys, tmp_path: Path, args: list[str], words: str
) -> None:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 2)
    result = _opencm("pbs", "export", "--data", str(data), "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_store_is_refused(tmp_path: Path) -> None:
    result = _opencm(
        "pbs", "export", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")
    )
    assert result.returncode == 2
    assert "no such folder" in result.stderr
