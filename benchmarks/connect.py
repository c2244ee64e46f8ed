"""Benchmark: start of a connection → first packet through the tunnel, opencm vs bare OpenVPN.

Run as root from the checkout: ``.venv/bin/python -m benchmarks.connect [--repetitions 15]
[--json]``.

Ways to bring up the same tunnel (same client config, same OpenVPN 2.6 server, same pair of
network namespaces), in one run, interleaved (each repetition rotates the order) so that load
drifts on the shared machine hit all of them alike:

- **bare** (the anchor): ``ip netns exec NS openvpn --config client.ovpn`` as a plain process;
- **nm** (the second anchor): NetworkManager + nm-openvpn, what a Linux desktop does today:
  ``nmcli connection up`` of the same ``.ovpn`` imported into a real NetworkManager, already
  running (``opencm_lab.nm``: its own system bus, in a namespace pair of its own with an OpenVPN
  server of the same configuration, because NetworkManager gives its client namespace a default
  route; the probe pings through the tunnel device). Only where NetworkManager and nm-openvpn
  are installed (``scripts/bootstrap.sh``), else left out with a note;
- **dialer**: the ``openvpn`` dialer's ``dial()`` alone (management socket, hold release, state
  tracking);
- **session**: a service profile loaded and its :class:`~opencm.session.runner.Session` run
  in-process over the real dialer (pre-init … pre-tunnel points, journal, log), as the daemon
  runs it;
- **cli**: ``opencm connect PROFILE --unattended`` as a new process talking to a running
  ``opencm daemon``: Python start-up, the client's imports and the daemon's work included (the
  lean entry point: no click on this path, ``opencm.cli.lean``);
- **user**: the same command run by an unprivileged user (``nobody``) against the root daemon:
  the daemon then copies and checks the profile (opencm.session.snapshot) before it connects,
  as for every user of the all-users profiles (the benchmark's profile folder is the daemon's
  ``--profile-root``);
- **gui**: the desktop client, already running (Qt, offscreen): its logon dialog has opened the
  session (pre-init ran, untimed); the clock starts at Connect (``start_connect``) and the
  daemon's ``connect`` of the waiting session, as a user's click does. Only when PySide6 (the
  ``gui`` extra) is installed.

Each clock starts when its process or coroutine is started and stops at the first ICMP echo reply
from the server's tunnel address, probed the same way for all of them: ``ping -c1 -W0.2`` in a tight
loop, in a thread of its own, that starts together with the connection (the probes compete for
the CPU with the start-up, so every variant pays that alike). Targets (issue 5): median ratio
≤ 1.1 and median added time ≤ 150 ms against the anchor. Every variant's ratio and added time are
printed against both anchors measured in the run.

Before timing, the opencm package is byte-compiled (``compileall``), as ``pip install`` does for an
installed package: the ``opencm`` command then loads ``.pyc`` files instead of compiling its
modules from source on every start, which is what a development checkout does when
``PYTHONDONTWRITEBYTECODE`` is set. ``--no-compile`` skips that step.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import opencm
from opencm.links.api import Credentials, DialEntry, LinkDown
from opencm.links.openvpn import OpenVPNDialer
from opencm.process import end_async_child
from opencm.session.factory import open_session
from opencm.session.journal import Journal
from opencm.session.options import ConnectOptions, SessionDeps
from opencm_lab.lab import Lab, LabError, OpenVPNServer, missing_tools, start_openvpn_server
from opencm_lab.nm import RealNM, start_networkmanager
from opencm_lab.nm import missing as nm_missing

TARGET_RATIO = 1.1
TARGET_ADDED_MS = 150.0
ROOT = Path(__file__).parents[1]
#: The ``user`` variant's client runs as nobody (setpriv, util-linux: one exec more than the
#: ``cli`` variant, a millisecond or two).
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NM_CONNECTION = "opencm-bench"
#: The device nm-openvpn's openvpn makes in NetworkManager's own namespace (the first TUN there).
NM_DEVICE = "tun0"
VARIANTS = {
    "bare": "bare openvpn (anchor)",
    "nm": "NetworkManager+nm-openvpn",
    "dialer": "opencm openvpn dialer",
    "session": "opencm session in-process",
    "cli": "opencm connect via daemon",
    "user": "same, as a user (snapshot)",
    "gui": "desktop client Connect",
    "click": "opencm connect, click path",
}


def first_reply(
    netns: str, address: str, started: float, limit: float = 20.0, device: str | None = None
) -> float:
    """Seconds from ``started`` to the first echo reply from ``address`` (through ``device``
    when given: fails until that device exists).

    Runs in a thread of its own (blocking ``subprocess.run``): probing from the event loop that
    runs the dialer or the session would slow them down, which a real daemon never suffers.
    """
    through = ["-I", device] if device else []
    argv = ["ip", "netns", "exec", netns, "ping", "-c1", "-W0.2", "-n", "-q", *through, address]
    while True:
        if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
            return time.monotonic() - started
        if time.monotonic() - started > limit:
            raise RuntimeError(f"no reply from {address} within {limit} s")
        time.sleep(0.002)


async def probe(netns: str, address: str, started: float, device: str | None = None) -> float:
    return await anyio.to_thread.run_sync(first_reply, netns, address, started, 20.0, device)


async def bare_once(server: OpenVPNServer, netns: str) -> float:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, "openvpn", "--config", str(server.client_config_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return await probe(netns, server.tunnel_ip, started)
    finally:
        await end_async_child(process, grace=2.0)


async def nm_once(nm: RealNM, address: str) -> float:
    """``nmcli connection up`` to the first reply through the tunnel, then down (nmcli waits
    until NetworkManager has deactivated it, so the next round starts clean)."""
    started = time.monotonic()
    up = await asyncio.create_subprocess_exec(
        "nmcli", "connection", "up", NM_CONNECTION, env=nm.env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return await probe(nm.netns, address, started, NM_DEVICE)
    finally:
        if await up.wait() != 0:
            raise RuntimeError("nmcli connection up failed")
        down = await asyncio.create_subprocess_exec(
            "nmcli", "connection", "down", NM_CONNECTION, env=nm.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await down.wait()
        # nm-openvpn's openvpn may still be closing its device: the next round's must be tun0.
        await anyio.to_thread.run_sync(no_tun_left, nm.netns)


def no_tun_left(netns: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    argv = ["ip", "-n", netns, "-o", "link", "show", "type", "tun"]
    while subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"a TUN device stayed in {netns} after nmcli connection down")
        time.sleep(0.05)


def nm_anchor(lab: Lab, stack: contextlib.ExitStack) -> tuple[RealNM, str] | None:
    """A running NetworkManager with the bench connection imported, and its server's tunnel
    address; None (and a note why) where it cannot run."""
    absent = nm_missing()
    if absent:
        print(f"connect.py: no NetworkManager anchor: needs {', '.join(absent)}", file=sys.stderr)
        return None
    try:
        pair = lab.netns_pair()
        server = start_openvpn_server(lab, pair, lab.pki("nm-pki"), client_ping_restart=10)
        nm = stack.enter_context(start_networkmanager(lab, pair.client_ns))
        nm.base_connection(pair)
        ovpn = lab.workdir / f"{NM_CONNECTION}.ovpn"
        ovpn.write_text(server.client_config_text)
        nm.import_openvpn(ovpn, NM_CONNECTION)
    except LabError as error:
        print(f"connect.py: no NetworkManager anchor: {error}", file=sys.stderr)
        return None
    return nm, server.tunnel_ip


async def dialer_once(server: OpenVPNServer, netns: str) -> float:
    dialer = OpenVPNDialer()
    entry = DialEntry(
        "bench", "openvpn", {"config": str(server.client_config_path), "netns": netns}
    )
    drops: list[LinkDown] = []
    started = time.monotonic()
    dialling = asyncio.create_task(dialer.dial(entry, Credentials(), drops.append))
    try:
        return await probe(netns, server.tunnel_ip, started)
    finally:
        await dialer.hang_up(await dialling)


async def session_once(profile: Path, server: OpenVPNServer, netns: str, state: Path) -> float:
    started = time.monotonic()
    session, engine = open_session(
        profile, ConnectOptions(interactive=False), SessionDeps(journal=Journal(state))
    )
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(session.run)
            elapsed = await probe(netns, server.tunnel_ip, started)
            with anyio.fail_after(30):  # the session reaches connected (post-connect) after that
                while session.state.value != "connected":
                    await session.changed.wait()
            session.disconnect()
    finally:
        engine.close()
    return elapsed


def qt_app() -> object | None:
    """The offscreen QApplication the gui variant runs in, or None without PySide6."""
    try:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from PySide6.QtWidgets import QApplication
    except ImportError:
        return None
    return QApplication.instance() or QApplication([sys.argv[0]])


def gui_once(profile: Path, server: OpenVPNServer, netns: str, socket: Path) -> float:
    """Blocks the event loop on purpose: Qt runs on this (the main) thread, nothing else runs."""
    from PySide6.QtWidgets import QApplication

    from opencm.gui.logon import LogonDialog
    from opencm.profile.model import load_profile
    from opencm.session.protocol import Client

    def pump(until: Callable[[], bool], limit: float = 30.0) -> None:
        deadline = time.monotonic() + limit
        while not until():
            if time.monotonic() > deadline:
                raise RuntimeError("the desktop client did not get there")
            QApplication.processEvents()
            time.sleep(0.0005)

    dialog = LogonDialog(load_profile(profile), socket_path=socket)
    try:
        dialog.open_session()
        pump(lambda: dialog.phase == "ready")
        replies: list[float] = []
        started = time.monotonic()
        dialog.start_connect()
        probe_thread = threading.Thread(
            target=lambda: replies.append(first_reply(netns, server.tunnel_ip, started))
        )
        probe_thread.start()
        pump(lambda: not probe_thread.is_alive())
        pump(lambda: dialog.phase in ("connected", "ended"))
        if dialog.phase != "connected" or not replies:
            raise RuntimeError("the desktop client did not connect")
        with Client(socket, timeout=30) as client:
            client.request({"op": "disconnect", "session": dialog.session_id})
        return replies[0]
    finally:
        dialog.deleteLater()
        QApplication.processEvents()


def opencm_command() -> list[str]:
    """The installed ``opencm`` script next to this Python (what a user types), else ``-m``."""
    script = Path(sys.executable).parent / "opencm"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "opencm"]


#: ``--compare-click``: the same command through the click entry point (what ``opencm connect``
#: ran before the lean path), to show what the lean path saves in the same run.
CLICK_COMMAND = [sys.executable, "-c", "from opencm.cli.main import main; main()"]


async def cli_once(
    profile: Path,
    server: OpenVPNServer,
    netns: str,
    socket: Path,
    command: list[str] | None = None,
    as_user: bool = False,
) -> float:
    opencm_argv = command or opencm_command()
    user: dict[str, Any] = {}
    if as_user:  # nobody, no supplementary groups, a home without saved credentials
        opencm_argv = [*AS_NOBODY, *opencm_argv]
        user = {"env": {**os.environ, "HOME": "/nonexistent"}}
    started = time.monotonic()
    client = await asyncio.create_subprocess_exec(
        *opencm_argv, "connect", str(profile), "--unattended", "--socket", str(socket),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT, **user,
    )  # fmt: skip
    try:
        return await probe(netns, server.tunnel_ip, started)
    finally:
        if await client.wait() != 0:
            raise RuntimeError("opencm connect failed")
        done = await asyncio.create_subprocess_exec(
            *opencm_argv, "disconnect", "--socket", str(socket),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT, **user,
        )  # fmt: skip
        await done.wait()


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


def start_daemon(socket: Path, state: Path, profile_root: Path) -> subprocess.Popen[bytes]:
    daemon = subprocess.Popen(
        [
            *opencm_command(),
            *("daemon", "--socket", str(socket), "--state-dir", str(state)),
            *("--profile-root", str(profile_root)),
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


def summarise(samples: dict[str, list[float]]) -> dict[str, dict[str, object]]:
    anchor = 1000 * statistics.median(samples["bare"])
    nm_anchor_ms = 1000 * statistics.median(samples["nm"]) if "nm" in samples else None
    result: dict[str, dict[str, object]] = {}
    for which, values in samples.items():
        median = 1000 * statistics.median(values)
        quartiles = statistics.quantiles([1000 * v for v in values], n=4)
        row: dict[str, object] = {
            "label": VARIANTS[which],
            "median_ms": round(median, 1),
            "q1_ms": round(quartiles[0], 1),
            "q3_ms": round(quartiles[2], 1),
            "samples_ms": [round(1000 * v, 1) for v in values],
        }
        if which != "bare":
            ratio, added = median / anchor, median - anchor
            row.update(
                ratio=round(ratio, 3),
                added_ms=round(added, 1),
                ratio_met=ratio <= TARGET_RATIO,
                added_met=added <= TARGET_ADDED_MS,
            )
        if nm_anchor_ms is not None and which != "nm":
            row.update(
                ratio_nm=round(median / nm_anchor_ms, 3),
                added_nm_ms=round(median - nm_anchor_ms, 1),
            )
        result[which] = row
    return result


async def run(
    repetitions: int, compare_click: bool = False, with_nm: bool = True
) -> dict[str, dict[str, object]]:
    scratch = Path(tempfile.mkdtemp(prefix="opencm-bench-"))
    os.chmod(scratch, 0o755)  # the user variant's client reaches the profile and the socket
    with Lab() as lab, contextlib.ExitStack() as stack:
        pair = lab.netns_pair()
        netns = pair.client_ns
        server = start_openvpn_server(lab, pair, lab.pki(), client_ping_restart=10)
        profile = write_profile(scratch / "profile", server, netns)
        socket = scratch / "opencm.sock"
        daemon = start_daemon(socket, scratch / "daemon-state", profile.parent)
        try:
            runners: dict[str, Callable[[], Awaitable[float]]] = {
                "bare": lambda: bare_once(server, netns),
                "dialer": lambda: dialer_once(server, netns),
                "session": lambda: session_once(profile, server, netns, scratch / "journal"),
                "cli": lambda: cli_once(profile, server, netns, socket),
                "user": lambda: cli_once(profile, server, netns, socket, as_user=True),
            }
            networkmanager = nm_anchor(lab, stack) if with_nm else None
            if networkmanager is not None:
                nm, nm_address = networkmanager
                runners = {"bare": runners["bare"], "nm": lambda: nm_once(nm, nm_address)} | {
                    which: runner for which, runner in runners.items() if which != "bare"
                }
            if qt_app() is not None:

                async def gui() -> float:
                    return gui_once(profile, server, netns, socket)

                runners["gui"] = gui
            if compare_click:
                runners["click"] = lambda: cli_once(profile, server, netns, socket, CLICK_COMMAND)
            samples: dict[str, list[float]] = {which: [] for which in runners}
            for which in runners:  # one untimed round each: page cache, first TLS session, ARP
                await runners[which]()
            names = list(runners)
            for index in range(repetitions):
                shift = index % len(names)
                for which in names[shift:] + names[:shift]:
                    samples[which].append(await runners[which]())
                    print(f"  {which:<8} {1000 * samples[which][-1]:7.1f} ms",
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            shutil.rmtree(scratch, ignore_errors=True)
    return summarise(samples)


def report(result: dict[str, dict[str, object]]) -> None:
    nm = "nm" in result
    header = f"{'':<27} {'median':>8} {'(q1–q3)':>15} {'vs bare':>8} {'added':>9}"
    print(header + (f" {'vs NM':>7} {'added':>9}" if nm else ""))
    for which, row in result.items():
        spread = f"({row['q1_ms']:.0f}–{row['q3_ms']:.0f})"
        line = f"{row['label']!s:<27} {row['median_ms']:6.1f} ms {spread:>15}"
        line += f" {row['ratio']:8.3f} {row['added_ms']:+7.1f} ms" if which != "bare" else " " * 21
        if nm:
            line += (
                f" {row['ratio_nm']:7.3f} {row['added_nm_ms']:+7.1f} ms"
                if which != "nm"
                else " " * 20
            )
        if which not in ("bare", "nm"):
            line += (
                f"  ratio {'met' if row['ratio_met'] else 'NOT met'}, "
                f"added {'met' if row['added_met'] else 'NOT met'}"
            )
        print(line.rstrip())
    print(f"targets: ratio ≤ {TARGET_RATIO}, added ≤ {TARGET_ADDED_MS:.0f} ms (issue 5)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--no-compile", action="store_true", help="do not byte-compile opencm before timing"
    )
    parser.add_argument(
        "--compare-click",
        action="store_true",
        help="also time opencm connect through the click entry point (before the lean path)",
    )
    parser.add_argument(
        "--no-nm", action="store_true", help="leave out the NetworkManager + nm-openvpn anchor"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("connect.py: needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    missing = missing_tools("openvpn", "openssl", "ip", "ping")
    if missing:
        print(f"connect.py: needs {', '.join(missing)}", file=sys.stderr)
        return 2
    if not args.no_compile:
        compileall.compile_dir(Path(opencm.__file__).parent, quiet=1)
    command = shlex.join(sys.orig_argv)
    started = time.time()
    result = anyio.run(run, args.repetitions, args.compare_click, not args.no_nm)
    context = {
        "command": command,
        "opencm_command": shlex.join(opencm_command()),
        "bytecode_compiled": not args.no_compile,
        "repetitions": args.repetitions,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
    }
    if args.json:
        print(json.dumps({**context, "variants": result}, indent=2))
        return 0
    print(f"command: {command}  ({args.repetitions} repetitions, {context['seconds']} s)")
    print(
        f"opencm connect is: {context['opencm_command']} connect …; bytecode "
        f"{'compiled first' if context['bytecode_compiled'] else 'not compiled'}; "
        f"load average {context['load_average']}"
    )
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
