"""End to end over real OpenVPN between network namespaces, through the real daemon and CLI.

Root only (namespaces, TUN devices). The lab (``opencm_lab.lab``) makes two namespaces with
unique names joined by a veth, a throw-away PKI and an OpenVPN 2.6 server; the profile's
``[opencm] Netns`` runs the client inside the client namespace, so nothing touches the host's
interfaces or routes and every address is a 10.x inside those namespaces.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opencm.process import ProcessMark
from opencm_lab.lab import (
    Lab,
    LabError,
    NetnsPair,
    OpenVPNServer,
    start_modem_emulator,
    start_openvpn_server,
)
from tests.openvpn_lab import OPENVPN_LAB, start_openvpn_lab
from tests.session.conftest import SECTIONS, build_profile, recorded
from tests.session.daemons import REAL, ROOT, DaemonProcess

pytestmark = OPENVPN_LAB

#: A monitored application: records itself, then runs until the test creates the stop file.
MONITOR = """#!{python}
import json, os, sys, time
with open({out!r}, "a") as out:
    out.write(json.dumps(["monitored", *sys.argv[1:]]) + "\\n")
while not os.path.exists({stop!r}):
    time.sleep(0.05)
"""


@dataclass
class Setup:
    lab: Lab
    server: OpenVPNServer
    client_ns: str
    profile_dir: Path
    record: Path
    stop_file: Path
    daemon: DaemonProcess

    def connect(self) -> dict[str, object]:
        result = self.daemon.cli("connect", str(self.profile_dir), "--unattended", "--json")
        assert result.returncode == 0, result.stderr
        status: dict[str, object] = json.loads(result.stdout)
        return status

    def sessions(self) -> list[dict[str, object]]:
        result = self.daemon.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        sessions: list[dict[str, object]] = json.loads(result.stdout)["sessions"]
        return sessions

    def wait_no_sessions(self, limit: float = 20.0) -> None:
        """Until every session has ended (ended ones stay listed with their outcome)."""
        deadline = time.monotonic() + limit
        while [s for s in self.sessions() if not s["ended"]]:
            assert time.monotonic() < deadline, "the session did not end"
            time.sleep(0.1)

    def openvpn_pid(self) -> int:
        (journal,) = (self.daemon.state / "journal").glob("*.json")
        return int(json.loads(journal.read_text())["links"][0]["handle"]["pid"])


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with Lab() as lab:
        pair, server = start_openvpn_lab(lab)
        profile_dir = tmp_path / "profile"
        stop_file = tmp_path / "stop"
        record = profile_dir / "record.jsonl"
        profile_dir.mkdir()
        monitor = profile_dir / "CONTOSO" / "monitor.py"
        monitor.parent.mkdir()
        monitor.write_text(
            MONITOR.format(python=sys.executable, out=str(record), stop=str(stop_file))
        )
        monitor.chmod(0o755)
        build_profile(
            profile_dir,
            points=list(SECTIONS),
            extra_actions={"monitored": [r"0=CONTOSO\monitor.py %ClientIPAddress%", "0&Flags=16"]},
            opencm=[f"Netns={pair.client_ns}"],
            servers=("Main",),
            modem=False,
        )
        (profile_dir / "CONTOSO" / "main.ovpn").write_text(server.client_config_text)
        daemon = DaemonProcess(tmp_path, REAL)
        daemon.start()
        try:
            yield Setup(lab, server, pair.client_ns, profile_dir, record, stop_file, daemon)
        finally:
            # CM leaves monitored applications running after a drop or a crash (they are
            # the user's programs); the test ends its own by letting it see its stop file.
            stop_file.touch()
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.stop()


def test_connect_runs_the_points_in_order_with_real_macros_and_status_shows_the_tunnel(
    setup: Setup,
) -> None:
    status = setup.connect()
    assert status["state"] == "connected"
    client_ip = str(status["client_ip"])
    assert client_ip.startswith(setup.server.tunnel_prefix + ".")
    # Traffic flows through the tunnel, inside the client namespace.
    setup.lab.ping(setup.client_ns, setup.server.tunnel_ip)
    (shown,) = setup.sessions()
    assert (shown["state"], shown["client_ip"]) == ("connected", client_ip)
    assert shown["server_ip"] == setup.server.tunnel_ip

    setup.stop_file.touch()  # the last monitored app exits: unattended → disconnect
    setup.wait_no_sessions()
    rows = recorded(setup.record)
    assert [row["point"] for row in rows] == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "post-connect",
        "monitored",
        "disconnect",
    ]
    post = rows[3]
    assert post["ConnectionType"] == "1"
    assert post["TunnelRasEntry"] == "Main"
    assert post["TunnelServerAddress"] == setup.server.address
    assert (post["ClientIPAddress"], post["ServerIPAddress"]) == (client_ip, setup.server.tunnel_ip)
    assert post["ServiceName"] == "Contoso VPN"
    assert rows[2]["ClientIPAddress"] == "NULL"  # pre-tunnel: no tunnel yet
    assert rows[4]["ConnectionType"] == client_ip  # the monitor's first argument
    assert rows[5]["DisconnectReason"] == "monitored-apps-exited"


def test_killing_the_server_is_detected_and_disconnect_actions_get_the_reason(
    setup: Setup,
) -> None:
    setup.connect()
    openvpn = ProcessMark.of(setup.openvpn_pid())
    assert openvpn is not None and "openvpn" in openvpn.cmdline
    setup.lab.kill(setup.server.process)
    setup.wait_no_sessions(limit=30)
    disconnects = [row for row in recorded(setup.record) if row["point"] == "disconnect"]
    assert [row["DisconnectReason"] for row in disconnects] == ["peer-gone"]
    assert not openvpn.still_ours()
    log = [
        json.loads(line) for line in (setup.daemon.logs / "CONTOSO.log").read_text().splitlines()
    ]
    (down,) = [line for line in log if line["kind"] == "link-down"]
    assert down["reason"] == "peer-gone" and down["detail"]


def test_kill_9_of_the_daemon_over_real_openvpn_then_restart_cleans_up_exactly_once(
    setup: Setup,
) -> None:
    setup.connect()
    openvpn = ProcessMark.of(setup.openvpn_pid())
    assert openvpn is not None
    setup.daemon.kill9()
    assert openvpn.still_ours(), "openvpn outlives the daemon"
    setup.lab.ping(setup.client_ns, setup.server.tunnel_ip)  # and the tunnel is still up

    setup.daemon.start()
    assert not openvpn.still_ours()
    disconnects = [row for row in recorded(setup.record) if row["point"] == "disconnect"]
    assert [row["DisconnectReason"] for row in disconnects] == ["opencm-restarted"]
    assert disconnects[0]["TunnelServerAddress"] == setup.server.address
    assert setup.sessions() == []
    assert setup.daemon.stop() == 0
    setup.daemon.start()
    assert setup.daemon.stop() == 0
    assert [row["point"] for row in recorded(setup.record)].count("disconnect") == 1


def test_foreground_connect_over_real_openvpn_and_ctrl_c_disconnects_in_order(
    setup: Setup,
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opencm",
            "connect",
            str(setup.profile_dir),
            "--foreground",
            "--unattended",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stderr is not None
        seen: list[str] = []
        while "opencm: connected" not in seen:
            line = process.stderr.readline()
            assert line, f"the session ended early: {seen}"
            seen.append(line.strip())
        setup.lab.ping(setup.client_ns, setup.server.tunnel_ip)
        # The monitored app starts asynchronously: let it record itself before Ctrl-C.
        deadline = time.monotonic() + 10
        while "monitored" not in [row["point"] for row in recorded(setup.record)]:
            assert time.monotonic() < deadline, "the monitored app never started"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        # The monitored app still runs (CM leaves it) and holds the pipes: end it, then read.
        setup.stop_file.touch()
        out, _ = process.communicate(timeout=30)
    finally:
        setup.stop_file.touch()  # the monitored app
        if process.poll() is None:
            process.kill()
            process.communicate()
    status = json.loads(out)
    assert (status["outcome"], status["disconnect_reason"]) == ("disconnected", "user-disconnect")
    assert [row["point"] for row in recorded(setup.record)][-1] == "disconnect"


def test_double_dial_modem_then_openvpn_over_the_line(tmp_path: Path) -> None:
    """Dial-up on the project's pty modem emulator (BUSY, then CONNECT on the next number), IP
    over the line, then OpenVPN over it, all driven by the session through the real daemon."""
    with Lab() as lab:
        server_ns, client_ns = lab.netns("s"), lab.netns("c")
        try:
            modem = start_modem_emulator(
                lab, {"5551000": "BUSY", "5553000": "CONNECT 28800"}, far_ns=server_ns
            )
            # The server waits on every address of its namespace: the line's end appears only
            # once the call is up.
            pair = NetnsPair(server_ns, client_ns, modem.far_ip, modem.near_ip, "", "")
            server = start_openvpn_server(lab, pair, lab.pki(), listen_ip="0.0.0.0")
        except LabError as error:
            pytest.skip(f"the modem/OpenVPN lab cannot run here: {error}")
        profile_dir = tmp_path / "profile"
        _, record = build_profile(
            profile_dir,
            points=[p for p in SECTIONS if p != "monitored"],
            opencm=[
                f"Netns={client_ns}",
                f"ModemLocalIP={modem.near_ip}",
                f"ModemPeerIP={modem.far_ip}",
            ],
            servers=("Main",),
        )
        text = server.client_config_text.replace("remote 0.0.0.0 ", f"remote {modem.far_ip} ")
        (profile_dir / "CONTOSO" / "main.ovpn").write_text(text)
        cms = profile_dir / "CONTOSO" / "CONTOSO.cms"
        cms.write_bytes(
            cms.read_bytes()
            .replace(b"ModemDevice=/dev/ttyS9", f"ModemDevice={modem.device}".encode())
            .replace(b"DialNumbers=5550100;5550101", b"DialNumbers=5551000;5553000")
        )
        daemon = DaemonProcess(tmp_path, REAL)
        daemon.start()
        try:
            result = daemon.cli(
                "connect", str(profile_dir), "--type", "double", "--unattended", "--json"
            )
            assert result.returncode == 0, result.stderr
            status = json.loads(result.stdout)
            assert [link["stage"] for link in status["links"]] == ["dial", "tunnel"]
            lab.ping(client_ns, server.tunnel_ip)
            assert daemon.cli("disconnect").returncode == 0
        finally:
            daemon.stop()
        events = modem.events()
    rows = recorded(record)
    assert [row["point"] for row in rows] == [
        "pre-init",
        "pre-connect",
        "pre-dial",
        "pre-tunnel",
        "post-connect",
        "disconnect",
    ]
    pre_tunnel, post = rows[3], rows[4]
    assert (pre_tunnel["ConnectionType"], pre_tunnel["DialRasEntry"]) == ("2", "Contoso Dial")
    assert pre_tunnel["ClientIPAddress"] == modem.near_ip
    assert post["TunnelServerAddress"] == modem.far_ip
    assert post["ServerIPAddress"] == server.tunnel_ip
    # The first number was busy; the modem dialer went on to the next one.
    assert events.index("5551000") < events.index("BUSY") < events.index("5553000"), events


def test_cancel_while_openvpn_is_connecting_runs_on_cancel_and_nothing_after_it(
    setup: Setup,
) -> None:
    setup.lab.kill(setup.server.process)  # nobody answers: the client keeps trying
    connecting = setup.daemon.popen_cli("connect", str(setup.profile_dir), "--unattended", "--json")
    try:
        deadline = time.monotonic() + 20
        while not [s for s in setup.sessions() if s["state"] == "tunnelling"]:
            assert time.monotonic() < deadline, "never reached tunnelling"
            time.sleep(0.05)
        time.sleep(0.5)  # openvpn is up and retrying
        assert subprocess.run(
            ["ip", "netns", "pids", setup.client_ns], capture_output=True, text=True, check=True
        ).stdout.split(), "openvpn runs in the client namespace"
        cancelled = setup.daemon.cli("cancel")
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = connecting.communicate(timeout=30)
    finally:
        if connecting.poll() is None:
            connecting.kill()
            connecting.communicate()
    assert connecting.returncode == 4, err
    assert json.loads(out)["outcome"] == "cancelled"
    assert [row["point"] for row in recorded(setup.record)] == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "on-cancel",
    ]
    leftover = subprocess.run(
        ["ip", "netns", "pids", setup.client_ns], capture_output=True, text=True, check=True
    ).stdout.split()
    assert leftover == [], "the cancelled openvpn was ended"


def test_kill_9_while_openvpn_is_still_connecting_then_restart_ends_that_openvpn(
    setup: Setup,
) -> None:
    setup.lab.kill(setup.server.process)  # nobody answers: the client keeps trying
    connecting = setup.daemon.popen_cli("connect", str(setup.profile_dir), "--unattended")

    def namespace_pids() -> list[str]:
        return subprocess.run(
            ["ip", "netns", "pids", setup.client_ns], capture_output=True, text=True, check=True
        ).stdout.split()

    try:
        deadline = time.monotonic() + 30
        while not namespace_pids() or not [
            s for s in setup.sessions() if s["state"] == "tunnelling"
        ]:
            assert time.monotonic() < deadline, "openvpn never started"
            time.sleep(0.05)
        (pid,) = namespace_pids()
        openvpn = ProcessMark.of(int(pid))
        assert openvpn is not None and "openvpn" in openvpn.cmdline[0]
        setup.daemon.kill9()
        connecting.communicate(timeout=30)
    finally:
        if connecting.poll() is None:
            connecting.kill()
            connecting.communicate()
    assert openvpn.still_ours(), "openvpn outlives the daemon, still connecting"
    setup.daemon.start()  # recovery runs before the socket listens
    assert not openvpn.still_ours(), "the restarted daemon ended the openvpn it had started"
    assert namespace_pids() == []
    # It never connected: no disconnect actions were owed.
    assert "disconnect" not in [row["point"] for row in recorded(setup.record)]
    assert setup.sessions() == []
