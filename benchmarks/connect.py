"""Benchmark: start of a connection → first packet through the tunnel, opencm vs bare OpenVPN.

Run as root: ``.venv/bin/python benchmarks/connect.py [--repetitions 30] [--json]``.

Both sides use the same client config against the same OpenVPN 2.6 server, in the same pair of
network namespaces, in the same run, interleaved (bare, opencm, opencm, bare, …) so that load
drifts hit both alike:

- **anchor**: ``ip netns exec NS openvpn --config client.ovpn`` started as a plain process;
- **opencm**: the ``openvpn`` dialer's ``dial()`` (management socket, hold release, state
  tracking), started from the same point.

The clock stops at the first ICMP echo reply from the server's tunnel address, probed the same
way for both: ``ping -c1 -W0.2`` in a tight loop, in a thread of its own, that starts together
with the connection (the probes compete for the cores with the tunnel's start-up, so both sides
must pay that alike).
Targets: median ratio ≤ 1.1 and median added time ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

from opencm.links.api import Credentials, DialEntry, LinkDown
from opencm.links.lab import Lab, OpenVPNServer, end_process, missing_tools, start_openvpn_server
from opencm.links.openvpn import OpenVPNDialer

TARGET_RATIO = 1.1
TARGET_ADDED_MS = 150.0


def first_reply(netns: str, address: str, started: float, limit: float = 20.0) -> float:
    """Seconds from ``started`` to the first echo reply from ``address``.

    Runs in its own thread (blocking ``subprocess.run``): probing from the dialer's event loop
    would slow the dialer down, which a real opencm daemon never has to suffer.
    """
    argv = ["ip", "netns", "exec", netns, "ping", "-c1", "-W0.2", "-n", "-q", address]
    while True:
        if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
            return time.monotonic() - started
        if time.monotonic() - started > limit:
            raise RuntimeError(f"no reply from {address} within {limit} s")
        time.sleep(0.002)


async def bare_once(server: OpenVPNServer, netns: str) -> float:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, "openvpn", "--config", str(server.client_config_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return await asyncio.to_thread(first_reply, netns, server.tunnel_ip, started)
    finally:
        end_process(process.pid)
        await process.wait()


async def opencm_once(server: OpenVPNServer, netns: str, dialer: OpenVPNDialer) -> float:
    entry = DialEntry(
        "bench", "openvpn", {"config": str(server.client_config_path), "netns": netns}
    )
    drops: list[LinkDown] = []
    started = time.monotonic()
    # Probe from the start, exactly as for the anchor: the probes compete for the CPU with the
    # tunnel's start-up in both cases, and the clock stops at the same event.
    dialling = asyncio.create_task(dialer.dial(entry, Credentials(), drops.append))
    try:
        return await asyncio.to_thread(first_reply, netns, server.tunnel_ip, started)
    finally:
        await dialer.hang_up(await dialling)


async def run(repetitions: int) -> dict[str, object]:
    with Lab() as lab:
        pair = lab.netns_pair()
        server = start_openvpn_server(lab, pair, lab.pki(), client_ping_restart=10)
        dialer = OpenVPNDialer()
        # One untimed round each: page cache, first TLS session, ARP on the veth.
        await bare_once(server, pair.client_ns)
        await opencm_once(server, pair.client_ns, dialer)
        bare: list[float] = []
        ours: list[float] = []
        for index in range(repetitions):
            order = ("bare", "opencm") if index % 2 == 0 else ("opencm", "bare")
            for which in order:
                if which == "bare":
                    bare.append(await bare_once(server, pair.client_ns))
                else:
                    ours.append(await opencm_once(server, pair.client_ns, dialer))
                print(f"  {which:<6} {1000 * (bare if which == 'bare' else ours)[-1]:7.1f} ms",
                      file=sys.stderr, flush=True)  # fmt: skip
    bare_ms, ours_ms = 1000 * statistics.median(bare), 1000 * statistics.median(ours)
    quartiles = {
        name: [round(1000 * value, 1) for value in statistics.quantiles(values, n=4)[::2]]
        for name, values in (("bare", bare), ("opencm", ours))
    }
    return {
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "quartiles_ms": quartiles,
        "repetitions": repetitions,
        "bare_openvpn_ms": [round(1000 * value, 1) for value in bare],
        "opencm_ms": [round(1000 * value, 1) for value in ours],
        "bare_median_ms": round(bare_ms, 1),
        "opencm_median_ms": round(ours_ms, 1),
        "ratio": round(ours_ms / bare_ms, 3),
        "added_ms": round(ours_ms - bare_ms, 1),
        "target_ratio": TARGET_RATIO,
        "target_added_ms": TARGET_ADDED_MS,
        "meets_targets": ours_ms / bare_ms <= TARGET_RATIO and ours_ms - bare_ms <= TARGET_ADDED_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("connect.py: needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    missing = missing_tools("openvpn", "openssl", "ip", "ping")
    if missing:
        print(f"connect.py: needs {', '.join(missing)}", file=sys.stderr)
        return 2
    result = asyncio.run(run(args.repetitions))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        quartiles: dict[str, list[float]] = result["quartiles_ms"]  # type: ignore[assignment]
        print(f"load average {result['load_average']} (2 cores shared: expect noise)")
        print(
            f"bare openvpn  median {result['bare_median_ms']:7.1f} ms  (anchor)"
            f"  p25-p75 {quartiles['bare'][0]}-{quartiles['bare'][1]} ms"
        )
        low, high = quartiles["opencm"]
        print(f"opencm dialer median {result['opencm_median_ms']:7.1f} ms"
              f"           p25-p75 {low}-{high} ms")  # fmt: skip
        print(f"ratio {result['ratio']:.3f} (target ≤ {TARGET_RATIO}), "
              f"added {result['added_ms']:+.1f} ms (target ≤ {TARGET_ADDED_MS:.0f} ms): "
              f"{'met' if result['meets_targets'] else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
