"""Benchmark: ``opencm connect`` → first packet through the tunnel, against bare OpenVPN.

Run as root from the checkout:
``.venv/bin/python -m benchmarks.session_connect [--repetitions 15] [--json]``.

``benchmarks/connect.py`` measures the OpenVPN dialer alone; this one measures the whole
session on top of it, in the same run, interleaved with the anchor:

- **anchor**: ``ip netns exec NS openvpn --config client.ovpn`` started as a plain process;
- **session**: a service profile loaded and its :class:`~opencm.session.runner.Session` run
  in-process (pre-init … post-connect points, journal writes with fsync, log lines, the real
  dialer), as the daemon runs it;
- **cli**: ``opencm connect PROFILE --unattended`` as a new process talking to a running
  ``opencm daemon``: Python start-up and imports of the client included.

The clock stops at the first ICMP echo reply from the server's tunnel address, probed the same
way for all three. Targets (issue 5): median ratio ≤ 1.1 and median added time ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from benchmarks.connect import bare_once, first_reply
from opencm.links.lab import Lab, OpenVPNServer, missing_tools, start_openvpn_server
from opencm.session.factory import open_session
from opencm.session.journal import Journal

TARGET_RATIO = 1.1
TARGET_ADDED_MS = 150.0
ROOT = Path(__file__).parents[1]


def write_profile(folder: Path, server: OpenVPNServer, netns: str) -> Path:
    """A CMAK-shaped profile with one OpenVPN server and empty action sections."""
    service = folder / "BENCH"
    service.mkdir(parents=True)
    (service / "bench.ovpn").write_text(server.client_config_text)
    (folder / "BENCH.cmp").write_text(
        "[Profile Format]\r\nVersion=5\r\n\r\n[Connection Manager]\r\nCMSFile=BENCH\\BENCH.cms\r\n"
    )
    lines = [
        "[Connection Manager]",
        "ServiceName=Bench VPN",
        "Dialup=0",
        "Direct=1",
        "Tunnel=1",
        "RedialCount=0",
        "[opencm]",
        "VpnServer0=Main",
        "Link&Main=openvpn",
        "Config&Main=BENCH\\bench.ovpn",
        f"Netns={netns}",
        f"LogDir={folder / 'logs'}",
    ]
    (service / "BENCH.cms").write_text("\r\n".join(lines) + "\r\n")
    return folder / "BENCH.cmp"


async def session_once(profile: Path, server: OpenVPNServer, netns: str, state: Path) -> float:
    started = time.monotonic()
    session, engine = open_session(profile, interactive=False, journal=Journal(state))
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(session.run)
            elapsed = await anyio.to_thread.run_sync(first_reply, netns, server.tunnel_ip, started)
            while True:
                changed = session.changed
                if session.state.value == "connected":
                    break
                await changed.wait()
            session.disconnect()
    finally:
        engine.close()
    return elapsed


async def cli_once(profile: Path, server: OpenVPNServer, netns: str, socket: Path) -> float:
    opencm = [sys.executable, "-m", "opencm"]
    started = time.monotonic()
    client = await asyncio.create_subprocess_exec(
        *opencm, "connect", str(profile), "--unattended", "--socket", str(socket),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        return await asyncio.to_thread(first_reply, netns, server.tunnel_ip, started)
    finally:
        if await client.wait() != 0:
            raise RuntimeError("opencm connect failed")
        done = await asyncio.create_subprocess_exec(
            *opencm, "disconnect", "--socket", str(socket),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
        )  # fmt: skip
        await done.wait()


def start_daemon(socket: Path, state: Path) -> subprocess.Popen[bytes]:
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opencm",
            "daemon",
            "--socket",
            str(socket),
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not socket.exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise RuntimeError("the daemon did not start")
        time.sleep(0.02)
    return daemon


def _median_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


async def run(repetitions: int) -> dict[str, object]:
    scratch = Path(tempfile.mkdtemp(prefix="opencm-bench-"))
    with Lab() as lab:
        pair = lab.netns_pair()
        server = start_openvpn_server(lab, pair, lab.pki(), client_ping_restart=10)
        profile = write_profile(scratch / "profile", server, pair.client_ns)
        socket = scratch / "opencm.sock"
        daemon = start_daemon(socket, scratch / "daemon-state")
        try:
            samples: dict[str, list[float]] = {"bare": [], "session": [], "cli": []}

            async def once(which: str) -> float:
                if which == "bare":
                    return await bare_once(server, pair.client_ns)
                if which == "session":
                    return await session_once(profile, server, pair.client_ns, scratch / "journal")
                return await cli_once(profile, server, pair.client_ns, socket)

            for which in samples:  # one untimed round each (page cache, first TLS session)
                await once(which)
            orders = [("bare", "session", "cli"), ("cli", "session", "bare")]
            for index in range(repetitions):
                for which in orders[index % 2]:
                    samples[which].append(await once(which))
                    print(f"  {which:<8} {1000 * samples[which][-1]:7.1f} ms",
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
    bare = _median_ms(samples["bare"])
    result: dict[str, object] = {
        "repetitions": repetitions,
        "bare_median_ms": round(bare, 1),
        "target_ratio": TARGET_RATIO,
        "target_added_ms": TARGET_ADDED_MS,
    }
    for which in ("session", "cli"):
        ours = _median_ms(samples[which])
        result[which] = {
            "median_ms": round(ours, 1),
            "ratio": round(ours / bare, 3),
            "added_ms": round(ours - bare, 1),
            "meets_targets": ours / bare <= TARGET_RATIO and ours - bare <= TARGET_ADDED_MS,
            "samples_ms": [round(1000 * v, 1) for v in samples[which]],
        }
    result["bare_samples_ms"] = [round(1000 * v, 1) for v in samples["bare"]]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("session_connect.py: needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    missing = missing_tools("openvpn", "openssl", "ip", "ping")
    if missing:
        print(f"session_connect.py: needs {', '.join(missing)}", file=sys.stderr)
        return 2
    result = anyio.run(run, args.repetitions)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"bare openvpn        median {result['bare_median_ms']:7.1f} ms  (anchor)")
    for which, label in (("session", "opencm session"), ("cli", "opencm connect CLI")):
        data = result[which]
        assert isinstance(data, dict)
        print(
            f"{label:<19} median {data['median_ms']:7.1f} ms  ratio {data['ratio']:.3f} "
            f"(≤ {TARGET_RATIO}), added {data['added_ms']:+.1f} ms (≤ {TARGET_ADDED_MS:.0f}): "
            f"{'met' if data['meets_targets'] else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
