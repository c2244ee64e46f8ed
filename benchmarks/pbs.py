"""Benchmark of the Phone Book Service against nginx serving the same decision, in one run.

Run: ``.venv/bin/python benchmarks/pbs.py [--duration 10] [--workers 2]``
(``--servers uvicorn,granian`` by default)
(needs ``wrk`` and ``nginx``, Debian packages ``wrk`` and ``nginx-light``).

1. Builds a publish store of ``--books`` (100) phone books at version 10, each with a ~60 KB
   full cab and ~5 KB deltas from 6, 7, 8 and 9, all signed, plus the same decision as an nginx
   lookup table on disk (``from/<pbver>``: empty file = no update, symlink = the delta; anything
   else falls back to the full cab).
2. Starts nginx (own temp config, 127.0.0.1, 2 workers) and ``opencm pbs serve`` for each
   server in ``--servers``, and checks they give the same bytes for every book and pbver 0..10.
3. For each server: ``wrk -t2 -c64 -d<duration>s --latency -s pbs_mix.lua`` with keep-alive,
   then the same with ``Connection: close`` (a new connection per request, as CM clients do);
   60/30/10 none/delta/full. Prints requests/s, p99 and the ratio to nginx measured in this run.
4. Prints the RSS of each opencm server (all its processes) with the books loaded.

Targets (issue 7): >= 0.6x nginx keep-alive, >= 0.5x with new connections, p99 <= 5 ms,
RSS <= 150 MB. The load generator shares the CPU with the servers: read the ratios, not req/s.
Every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from opencm.phonebook.store import publish_release
from opencm.signing import generate_keypair, load_secret_key, sign

HERE = Path(__file__).resolve().parent
MIX = HERE / "pbs_mix.lua"
CURRENT = 10
BASES = (6, 7, 8, 9)
QUERY = "/pbserver/pbserver.dll?osarch=0&ostype=0&osver=1&cmver=1&lcid=1033&pbver={v}&pb={b}"
NGINX_CONF = """\
worker_processes 2;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    open_file_cache max=4000 inactive=60s;
    open_file_cache_valid 60s;
    types {{ }}
    default_type application/vnd.ms-cab-compressed;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    map $arg_pb    $pb_ok  {{ "~^[A-Za-z0-9_]{{1,8}}$" $arg_pb;    default ""; }}
    map $arg_pbver $ver_ok {{ "~^[0-9]{{1,9}}$"        $arg_pbver; default "x"; }}
    server {{
        listen 127.0.0.1:{port};
        root {table};
        location = /pbserver/pbserver.dll {{
            if ($pb_ok = "") {{ return 400; }}
            try_files /$pb_ok/from/$ver_ok /$pb_ok/full.cab =404;
        }}
    }}
}}
"""


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    port: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_data(root: Path, books: int) -> tuple[Path, Path]:
    """The publish store and nginx's lookup table for the same releases."""
    store, table = root / "store", root / "nginx"
    secret = load_secret_key(generate_keypair()[0])
    rng = random.Random(20261202)
    for index in range(books):
        book = f"PB{index:03d}"
        files: dict[str, bytes] = {"full.cab": rng.randbytes(60_000 + rng.randint(-6000, 6000))}
        for base in BASES:
            files[f"delta-{base}.cab"] = rng.randbytes(5_000 + rng.randint(-500, 500))
        for name in list(files):
            kind = {"kind": "full"} if name == "full.cab" else {"kind": "delta", "base": name[6:-4]}
            fields: dict[str, str | int] = {"book": book, "version": CURRENT, **kind}
            files[name + ".minisig"] = sign(files[name], secret, "opencm-phonebook", fields)
        publish_release(store, book, CURRENT, files)
        lookup = table / book / "from"
        lookup.mkdir(parents=True)
        (table / book / "full.cab").write_bytes(files["full.cab"])
        (lookup / str(CURRENT)).write_bytes(b"")
        for base in BASES:
            (table / book / f"delta-{base}.cab").write_bytes(files[f"delta-{base}.cab"])
            (lookup / str(base)).symlink_to(table / book / f"delta-{base}.cab")
    return store, table


def wait_ready(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not start")


def start_nginx(root: Path, table: Path) -> Started:
    run = root / "run"
    run.mkdir()
    port = free_port()
    conf = run / "nginx.conf"
    conf.write_text(NGINX_CONF.format(run=run, port=port, table=table))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen([nginx, "-p", str(run), "-c", str(conf)], start_new_session=True)
    wait_ready(port, process, "nginx")
    return Started("nginx", process, port)


def start_opencm(store: Path, server: str, workers: int, log_dir: Path) -> Started:
    port = free_port()
    argv = [sys.executable, "-m", "opencm", "pbs", "serve", "--data", str(store),
            "--port", str(port), "--workers", str(workers), "--server", server]  # fmt: skip
    with open(log_dir / f"{server}.log", "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    wait_ready(port, process, server)
    time.sleep(1.0)  # let every worker finish loading the books
    return Started(f"opencm-{server}", process, port)


def fetch(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def check_same(nginx: Started, other: Started, books: int) -> int:
    """Requests where ``other`` answers differently from nginx (no update: 200 empty vs 204)."""
    wrong = 0
    for index in range(books):
        for pbver in range(CURRENT + 1):
            path = QUERY.format(v=pbver, b=f"PB{index:03d}")
            a, b = fetch(nginx.port, path), fetch(other.port, path)
            if a[1] != b[1] or b[0] not in (200, 204):
                wrong += 1
    return wrong


def wrk(port: int, duration: int, close: bool, books: int) -> dict[str, float]:
    command = ["wrk", "-t2", "-c64", f"-d{duration}s", "--latency", "-s", str(MIX)]
    if close:
        command += ["-H", "Connection: close"]
    argv = [*command, f"http://127.0.0.1:{port}", "--", str(books)]
    out = subprocess.run(argv, capture_output=True, text=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no RESULT line:\n{out.stdout}\n{out.stderr}")
    result: dict[str, float] = json.loads(line[len("RESULT ") :])
    return result


@dataclass
class Run:
    result: dict[str, float]
    cpu_us_per_request: float
    steal_s: float


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


def measure(target: Started, duration: int, close: bool, books: int) -> Run:
    wrk(target.port, 2, close, books)  # warm-up
    tree = process_tree(target.process.pid)
    cpu, steal = cpu_seconds(tree), steal_seconds()
    result = wrk(target.port, duration, close, books)
    used = cpu_seconds(tree) - cpu
    return Run(result, used / (result["requests"] or 1) * 1e6, steal_seconds() - steal)


def report(
    args: argparse.Namespace,
    runs: dict[tuple[str, str], list[Run]],
    everyone: list[Started],
    rss: dict[str, tuple[float, int]],
) -> None:
    print()
    print(
        f"wrk -t2 -c64 -d{args.duration}s x {args.rounds} rounds (order rotated), 60/30/10 "
        f"none/delta/full over {args.books} books, opencm --workers {args.workers}; "
        "wrk and the servers share the CPUs"
    )
    print(
        f"{'mode':<15} {'server':<16} {'req/s':>9} {'p99 ms':>8} {'ratio':>6} "
        f"{'CPU us/req':>10} {'errors':>7} {'steal s':>7}"
    )
    verdicts = []
    for mode in ("keep-alive", "new connection"):
        base = runs[(mode, "nginx")]
        for target in everyone:
            mine = runs[(mode, target.name)]
            ratios = [m.result["rps"] / b.result["rps"] for m, b in zip(mine, base, strict=True)]
            ratio = statistics.median(ratios)
            rps = statistics.median(r.result["rps"] for r in mine)
            p99 = statistics.median(r.result["p99_ms"] for r in mine)
            cpu = statistics.median(r.cpu_us_per_request for r in mine)
            errors = sum(int(v) for r in mine for k, v in r.result.items() if k.startswith("err_"))
            steal = sum(r.steal_s for r in mine)
            print(
                f"{mode:<15} {target.name:<16} {rps:>9.0f} {p99:>8.2f} {ratio:>6.2f} "
                f"{cpu:>10.0f} {errors:>7} {steal:>7.1f}"
            )
            if target.name != "nginx":
                goal = 0.6 if mode == "keep-alive" else 0.5
                ok = ratio >= goal and p99 <= 5
                verdicts.append(
                    f"{target.name} {mode}: {'meets' if ok else 'misses'} target "
                    f"(ratio {ratio:.2f} vs >= {goal}, p99 {p99:.1f} ms vs <= 5 ms)"
                )
    print()
    for name, (megabytes, count) in rss.items():
        print(f"RSS {name}: {megabytes:.1f} MB in {count} processes ({args.books} books loaded)")
        verdicts.append(f"{name} RSS: {'meets' if megabytes <= 150 else 'misses'} (<= 150 MB)")
    print()
    print("\n".join(verdicts))


def process_tree(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        tree += children
        frontier += children
    return tree


def rss_mb(pid: int) -> tuple[float, int]:
    total = 0
    pids = process_tree(pid)
    for member in pids:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024, len(pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent reaps it


def stop(started: Started) -> list[int]:
    """Stop a server and every process under it, by PID; returns PIDs that needed SIGKILL."""
    tree = process_tree(started.process.pid)
    started.process.send_signal(signal.SIGQUIT if started.name == "nginx" else signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        started.process.wait(timeout=15)
    deadline = time.monotonic() + 5  # helpers (e.g. a resource tracker) exit just after
    killed = []
    for pid in tree:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    if started.process.poll() is None:
        started.process.wait(timeout=5)
    return killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--books", type=int, default=100)
    parser.add_argument("--servers", default="uvicorn,granian")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            raise SystemExit(f"{tool} is not installed (apt-get install wrk nginx-light)")
    root = Path(tempfile.mkdtemp(prefix="opencm-pbs-bench-"))
    root.chmod(0o755)  # nginx workers run as another user when started by root
    started: list[Started] = []
    try:
        print(f"building {args.books} phone books in {root} ...", flush=True)
        store, table = build_data(root, args.books)
        nginx = start_nginx(root, table)
        started.append(nginx)
        servers = [start_opencm(store, s, args.workers, root) for s in args.servers.split(",")]
        started += servers
        for server in servers:
            wrong = check_same(nginx, server, args.books)
            print(f"check {server.name}: {wrong} of {args.books * (CURRENT + 1)} answers differ")
        rss = {server.name: rss_mb(server.process.pid) for server in servers}
        everyone = [nginx, *servers]
        runs: dict[tuple[str, str], list[Run]] = {}
        for round_ in range(args.rounds):
            for close in (False, True):
                mode = "new connection" if close else "keep-alive"
                shift = round_ % len(everyone)  # rotate the order each round
                for target in everyone[shift:] + everyone[:shift]:
                    run = measure(target, args.duration, close, args.books)
                    runs.setdefault((mode, target.name), []).append(run)
        report(args, runs, everyone, rss)
    finally:
        for server in reversed(started):
            killed = stop(server)
            if killed:
                print(f"{server.name}: SIGKILL by PID needed for {killed}")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
