"""Benchmark of the Phone Book Service against nginx serving the same decision, in one run.

Run: ``.venv/bin/python -m benchmarks.pbs`` (short, < 3 min) or ``--full`` (every scenario of
issue 16: 10 and 1,000 books, 65,000-POP books, two replicas behind nginx, 2 rounds of 10 s).
Needs ``wrk``, ``nginx`` and ``h2load`` (Debian: wrk, nginx-light, nghttp2-client).

Each scenario builds a publish store of signed books at version 10 (a ~60 KB full cab, or a
~1 MB one for 65,000-POP books, and ~5 KB deltas from 6..9) and starts, all on 127.0.0.1:

* ``nginx``: the anchor, the decision as a lookup table on disk (``try_files``), no logging;
* ``nginx-export``: ``opencm pbs export`` run by nginx with the configuration it writes;
* ``opencm-1w``/``opencm-2w``: ``opencm pbs serve`` (opencm's own server), 1 and 2 processes;
* ``granian-1w``, ``uvicorn-1w``: the same app under granian (RSGI) and uvicorn (ASGI);
* ``socketify-1w``: the same answers on socketify (``pbs_socketify.py``), if it is installed;
* with ``--full``, ``lb-2x-opencm``: nginx balancing two opencm replicas reading one store.

It checks every server gives nginx's bytes, then per server ``wrk -t2 -c64`` with the 60/30/10
none/delta/full mix (``pbs_mix.lua``), keep-alive and with a new connection per request, and
prints req/s, the ratio to nginx in the same round, p99 and the server's CPU µs per request.
Then latency where it means something: ``h2load --h1 --rps`` at half of nginx's keep-alive
throughput (p99 from its per-request log), and one connection at a time (``wrk -c1``) p50/p99;
RSS of each opencm server with the books loaded and its idle CPU over 5 s. The load generator
shares the 2 CPUs with the servers and other people's work: read the ratios and the load average
printed with them. Every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
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

from opencm.pbs.export import export
from opencm.phonebook.store import publish_release
from opencm.signing import generate_keypair, load_secret_key, sign

HERE = Path(__file__).resolve().parent
MIX = HERE / "pbs_mix.lua"
CURRENT = 10
BASES = (6, 7, 8, 9)
QUERY = "/pbserver/pbserver.dll?osarch=0&ostype=0&osver=1&cmver=1&lcid=1033&pbver={v}&pb={b}"
#: The start of both nginx configurations here: 2 workers, foreground, everything under {run}.
NGINX_HEAD = """\
worker_processes 2;
daemon off;
pid {run}/{name}.pid;
error_log {run}/{name}-error.log warn;
events {{{{ worker_connections 4096; }}}}
http {{{{
    access_log off;
    client_body_temp_path {run}/{name}-body;
    proxy_temp_path {run}/{name}-proxy;
    fastcgi_temp_path {run}/{name}-fastcgi;
    uwsgi_temp_path {run}/{name}-uwsgi;
    scgi_temp_path {run}/{name}-scgi;
"""
NGINX_CONF = (
    NGINX_HEAD.format(run="{run}", name="nginx")
    + """\
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    open_file_cache max=4000 inactive=60s;
    open_file_cache_valid 60s;
    types {{ }}
    default_type application/vnd.ms-cab-compressed;
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
)


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    port: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_data(root: Path, books: int, full_size: int) -> tuple[Path, Path]:
    """The publish store and nginx's lookup table for the same releases."""
    store, table = root / "store", root / "nginx"
    secret = load_secret_key(generate_keypair()[0])
    rng = random.Random(20261202)
    spread = full_size // 10
    for index in range(books):
        book = f"PB{index:03d}"
        files: dict[str, bytes] = {
            "full.cab": rng.randbytes(full_size + rng.randint(-spread, spread))
        }
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
            "--port", str(port), "--workers", str(workers), "--server", server,
            "--max-connections", "20000"]  # fmt: skip
    if server == "socketify":
        argv = [sys.executable, "-m", "benchmarks.pbs_socketify", str(store), str(port)]
    with open(log_dir / f"{server}-{workers}.log", "wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    wait_ready(port, process, server)
    time.sleep(1.0)  # let every worker finish loading the books
    return Started(f"{server}-{workers}w", process, port)


def start_export(root: Path, store: Path) -> Started:
    """``opencm pbs export`` served by nginx with the configuration the export writes."""
    port = free_port()
    out = root / "export"
    export(store, out, listen=f"127.0.0.1:{port}")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = [nginx, "-p", str(out / "nginx"), "-c", "nginx.conf"]
    process = subprocess.Popen(argv, start_new_session=True)
    wait_ready(port, process, "nginx-export")
    return Started("nginx-export", process, port)


LB_CONF = (
    NGINX_HEAD.format(run="{run}", name="lb")
    + """\
    upstream opencm_pbs {{
        server 127.0.0.1:{one};
        server 127.0.0.1:{two};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://opencm_pbs;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }}
    }}
}}
"""
)


def start_balanced(root: Path, store: Path) -> tuple[Started, list[Started]]:
    """Two opencm replicas reading one store, behind one nginx load balancer."""
    replicas = [start_opencm(store, "opencm", 1, root) for _ in range(2)]
    run = root / "lb"
    run.mkdir(exist_ok=True)
    port = free_port()
    conf = run / "lb.conf"
    one, two = (r.port for r in replicas)
    conf.write_text(LB_CONF.format(run=run, port=port, one=one, two=two))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen([nginx, "-p", str(run), "-c", str(conf)], start_new_session=True)
    wait_ready(port, process, "lb")
    return Started("lb-2x-opencm", process, port), replicas


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


def latency_at_rate(port: int, rate: float, duration: int, books: int, root: Path) -> float:
    """p99 in ms at a fixed offered rate (h2load --rps per client), from its per-request log."""
    clients = 16
    urls = root / "urls.txt"
    if not urls.exists():
        rng = random.Random(7)
        versions = [10] * 6 + [6, 7, 8] + [0]  # the 60/30/10 mix
        lines = [
            QUERY.format(v=rng.choice(versions), b=f"PB{rng.randrange(books):03d}")
            for _ in range(1000)
        ]
        urls.write_text("".join(f"http://127.0.0.1:PORT{line}\n" for line in lines))
    per_port = root / f"urls-{port}.txt"
    per_port.write_text(urls.read_text().replace("PORT", str(port)))
    log = root / f"h2load-{port}.log"
    argv = ["h2load", "--h1", "-c", str(clients), "-D", str(duration), "--warm-up-time", "1",
            "--rps", f"{rate / clients:.1f}", "-i", str(per_port),
            "--log-file", str(log)]  # fmt: skip
    subprocess.run(argv, capture_output=True, text=True, check=False)
    times = sorted(int(line.split()[2]) for line in log.read_text().splitlines() if line.strip())
    if not times:
        return float("nan")
    return times[min(len(times) - 1, int(len(times) * 0.99))] / 1000


def single_connection(port: int, duration: int, books: int) -> tuple[float, float]:
    argv = ["wrk", "-t1", "-c1", f"-d{duration}s", "--latency", "-s", str(MIX),
            f"http://127.0.0.1:{port}", "--", str(books)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), "")
    if not line:
        return float("nan"), float("nan")
    result = json.loads(line[len("RESULT ") :])
    return float(result["p50_ms"]), float(result["p99_ms"])


def idle_cpu_percent(pid: int, seconds: float = 5.0) -> float:
    tree = process_tree(pid)
    before = cpu_seconds(tree)
    time.sleep(seconds)
    return (cpu_seconds(tree) - before) / seconds * 100


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(
    title: str,
    args: argparse.Namespace,
    runs: dict[tuple[str, str], list[Run]],
    everyone: list[Started],
) -> None:
    print()
    rounds = f"wrk -t2 -c64 -d{args.duration}s x {args.rounds} round(s)"
    print(f"== {title}: {rounds}, load {load_average()}")
    print(
        f"{'mode':<15} {'server':<14} {'req/s':>9} {'ratio':>6} {'p99 ms':>8} "
        f"{'CPU us/req':>10} {'errors':>7}"
    )
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
            print(
                f"{mode:<15} {target.name:<14} {rps:>9.0f} {ratio:>6.2f} {p99:>8.2f} "
                f"{cpu:>10.0f} {errors:>7}"
            )


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


def rss_mb(pid: int) -> tuple[float, float, int]:
    """RSS and PSS (shared pages split between the processes mapping them) of a process tree."""
    rss = pss = 0
    pids = process_tree(pid)
    for member in pids:
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024, len(pids)


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


@dataclass
class Scenario:
    title: str
    books: int
    full_size: int
    servers: list[tuple[str, int]]
    export: bool = True
    balanced: bool = False
    latency: bool = False


QUICK = [
    Scenario(
        "100 books",
        100,
        60_000,
        [("opencm", 1), ("opencm", 2), ("granian", 1), ("uvicorn", 1), ("socketify", 1)],
        latency=True,
    )
]
_EVERY = [
    ("opencm", 1),
    ("opencm", 2),
    ("granian", 1),
    ("granian", 2),
    ("uvicorn", 1),
    ("socketify", 1),
]
FULL = [
    Scenario("10 books", 10, 60_000, _EVERY, latency=True),
    Scenario("1,000 books", 1000, 60_000, [("opencm", 1), ("opencm", 2)], latency=True),
    Scenario("100 books of 65,000 POPs (~1 MB cab)", 100, 1_000_000, [("opencm", 1)]),
    Scenario("two replicas behind one nginx", 100, 60_000, [("opencm", 1)], balanced=True),
]


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="opencm-pbs-bench-"))
    root.chmod(0o755)  # nginx workers run as another user when started by root
    started: list[Started] = []
    try:
        print(f"\n{scenario.title}: building {scenario.books} books in {root} ...", flush=True)
        store, table = build_data(root, scenario.books, scenario.full_size)
        nginx = start_nginx(root, table)
        started.append(nginx)
        measured = [nginx]
        if scenario.export:
            measured.append(start_export(root, store))
            started.append(measured[-1])
        wanted = [
            (name, workers)
            for name, workers in scenario.servers
            if name != "socketify" or importlib.util.find_spec("socketify") is not None
        ]
        if len(wanted) < len(scenario.servers):
            print("socketify: not installed (pip install socketify), left out")
        opencm = [start_opencm(store, name, workers, root) for name, workers in wanted]
        started += opencm
        measured += opencm
        if scenario.balanced:
            balancer, replicas = start_balanced(root, store)
            started += [*replicas, balancer]
            measured.append(balancer)
            opencm = [*opencm, *replicas]
        for server in measured[1:]:
            wrong = check_same(nginx, server, min(scenario.books, 100))
            if wrong:
                print(f"check {server.name}: {wrong} answers differ from nginx")
        runs: dict[tuple[str, str], list[Run]] = {}
        for round_ in range(args.rounds):
            for close in (False, True):
                mode = "new connection" if close else "keep-alive"
                shift = round_ % len(measured)  # rotate the order each round
                for target in measured[shift:] + measured[:shift]:
                    run = measure(target, args.duration, close, scenario.books)
                    runs.setdefault((mode, target.name), []).append(run)
        report(scenario.title, args, runs, measured)
        for server in opencm:
            rss, pss, count = rss_mb(server.process.pid)
            idle = idle_cpu_percent(server.process.pid, 5.0)
            print(
                f"memory {server.name}: RSS {rss:.0f} MB, PSS {pss:.0f} MB in {count} process(es); "
                f"idle CPU {idle:.2f}% of a core over 5 s ({scenario.books} books)"
            )
        if scenario.latency:
            rate = statistics.median(r.result["rps"] for r in runs[("keep-alive", "nginx")]) / 2
            print(f"latency at a fixed {rate:.0f} req/s (half nginx's), h2load --h1 -c16 --rps:")
            for target in [nginx, *(s for s in measured if s.name == "opencm-1w")]:
                p99 = latency_at_rate(target.port, rate, args.duration, scenario.books, root)
                p50_1, p99_1 = single_connection(target.port, min(args.duration, 5), scenario.books)
                print(
                    f"  {target.name:<14} p99 {p99:.2f} ms at that rate; "
                    f"one connection p50 {p50_1:.3f} ms p99 {p99_1:.3f} ms"
                )
    finally:
        for server in reversed(started):
            killed = stop(server)
            if killed:
                print(f"{server.name}: SIGKILL by PID needed for {killed}")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="every scenario, 2 rounds of 10 s")
    parser.add_argument("--duration", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    args.duration = args.duration or (10 if args.full else 5)
    args.rounds = args.rounds or (2 if args.full else 1)
    for tool in ("wrk", "nginx", "h2load"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            raise SystemExit(
                f"{tool} is not installed (apt-get install wrk nginx-light nghttp2-client)"
            )
    print(f"load average at start: {load_average()} ({os.cpu_count()} CPUs)")
    for scenario in FULL if args.full else QUICK:
        run_scenario(scenario, args)
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
