"""The desktop client end to end: the real daemon over real OpenVPN between network namespaces.

Root only (namespaces, TUN). As a user: open the profile (pre-init, then the logon dialog) →
type the password, Enter → the status pane shows the actions in order → the tray shows the
connection → the monitored program exits → "Stay online?" → "Disconnect now" (or nobody
answers for 30 seconds of the dialog's fake clock) → the disconnect actions ran.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from opencm.gui.app import DesktopClient
from opencm.gui.prompt import StayOnlineDialog
from opencm.gui.tray import TrayController
from opencm.testing import FakeClock
from opencm_lab.lab import Lab, OpenVPNServer
from tests.gui.conftest import branded_profile
from tests.openvpn_lab import OPENVPN_LAB, start_openvpn_lab
from tests.session.conftest import SECTIONS, recorded
from tests.session.daemons import REAL, DaemonProcess

pytestmark = OPENVPN_LAB

WAIT = 60_000
#: A monitored program: runs until the test creates its stop file (the user closes it).
MONITOR = """#!{python}
import os, time
while not os.path.exists({stop!r}):
    time.sleep(0.05)
"""


@dataclass
class Setup:
    lab: Lab
    server: OpenVPNServer
    client_ns: str
    cmp: Path
    record: Path
    stop_file: Path
    daemon: DaemonProcess


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with Lab() as lab:
        pair, server = start_openvpn_lab(lab)
        root = tmp_path / "profile"
        stop_file = tmp_path / "stop"
        monitor = root / "CONTOSO" / "monitor.py"
        monitor.parent.mkdir(parents=True)
        monitor.write_text(MONITOR.format(python=sys.executable, stop=str(stop_file)))
        monitor.chmod(0o755)
        _profile, record = branded_profile(
            root,
            opencm=("Credentials=password", f"Netns={pair.client_ns}"),
            points=list(SECTIONS),
            extra_actions={"monitored": [r"0=CONTOSO\monitor.py", "0&Flags=16"]},
            servers=("Main",),
            modem=False,
        )
        (root / "CONTOSO" / "main.ovpn").write_text(server.client_config_text)
        daemon = DaemonProcess(tmp_path, REAL)
        daemon.start()
        try:
            yield Setup(
                lab, server, pair.client_ns, root / "CONTOSO.cmp", record, stop_file, daemon
            )
        finally:
            stop_file.touch()
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.stop()


def logon_and_connect(qtbot: QtBot, setup: Setup, client: DesktopClient) -> TrayController:
    dialog = client.open_profile(setup.cmp)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.phase == "ready", timeout=WAIT)
    assert [row["point"] for row in recorded(setup.record)] == ["pre-init"]
    qtbot.keyClicks(dialog.password, "s3cret")
    with qtbot.waitSignal(dialog.connected, timeout=WAIT):
        qtbot.keyClick(dialog.password, Qt.Key.Key_Return)
    lines = dialog.status.lines()
    running = [line.removeprefix("Running Custom Action ") for line in lines if "Running" in line]
    # pre-init, pre-connect, pre-tunnel, post-connect, each before the next step.
    assert running == ["record.py"] * 4
    assert lines.index("Preparing the VPN connection…") < lines.index(
        "Connecting the VPN tunnel to Main (openvpn)"
    )
    assert lines[-1] == "Connected."
    (tray,) = client.trays
    assert tray.status["state"] == "connected"
    client_ip = str(tray.status["client_ip"])
    assert client_ip.startswith(setup.server.tunnel_prefix + ".")
    assert tray.menu_lines()[2].startswith(f"Address {client_ip}")
    qtbot.waitUntil(lambda: tray.menu_lines()[1].startswith("Connected for"), timeout=WAIT)
    setup.lab.ping(setup.client_ns, setup.server.tunnel_ip)  # and traffic flows
    return tray


def disconnect_rows(setup: Setup) -> list[str]:
    return [r["DisconnectReason"] for r in recorded(setup.record) if r["point"] == "disconnect"]


def test_logon_connect_tray_then_stay_online_question_and_disconnect_now(
    qtbot: QtBot, setup: Setup
) -> None:
    client = DesktopClient(socket_path=setup.daemon.socket)
    tray = logon_and_connect(qtbot, setup, client)
    with qtbot.waitSignal(tray.prompted, timeout=WAIT) as prompted:
        setup.stop_file.touch()  # the user closes the monitored program
    dialog: StayOnlineDialog = prompted.args[0]
    assert dialog.isVisible()
    with qtbot.waitSignal(tray.ended, timeout=WAIT) as ended:
        qtbot.mouseClick(dialog.disconnect_button, Qt.MouseButton.LeftButton)
    assert ended.args[0]["outcome"] == "disconnected"
    assert disconnect_rows(setup) == ["monitored-apps-exited"]
    assert not client.trays
    tray.close()


def test_nobody_answering_for_30_seconds_disconnects(qtbot: QtBot, setup: Setup) -> None:
    clock = FakeClock()
    client = DesktopClient(socket_path=setup.daemon.socket, clock=clock)
    tray = logon_and_connect(qtbot, setup, client)
    with qtbot.waitSignal(tray.prompted, timeout=WAIT) as prompted:
        setup.stop_file.touch()
    dialog: StayOnlineDialog = prompted.args[0]
    clock.now += 29
    dialog.tick()
    assert dialog.countdown.text() == "Disconnecting in 1 second."
    clock.now += 1
    with qtbot.waitSignal(tray.ended, timeout=WAIT) as ended:
        dialog.tick()
    assert ended.args[0]["disconnect_reason"] == "prompt-timeout"
    assert disconnect_rows(setup) == ["prompt-timeout"]
    tray.close()
