"""The tray icon of a connected session and the "Stay online?" dialog, against a real daemon;
the dialog's 30-second countdown runs on a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from opencm.gui.prompt import StayOnlineDialog
from opencm.gui.tray import TrayController, connected_for
from opencm.session.logon import logon_facts
from opencm.session.protocol import Client
from opencm.testing import FakeClock
from tests.gui.conftest import branded_profile
from tests.session.conftest import recorded
from tests.session.daemons import DaemonProcess

WAIT = 30_000
MONITORED = {"monitored": [r"0=CONTOSO\record.py monitored", "0&Flags=16"]}


def test_the_countdown_reads_its_clock_and_enter_is_disconnect_now(qtbot: QtBot) -> None:
    clock = FakeClock()
    dialog = StayOnlineDialog("Contoso VPN", clock)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.countdown.text() == "Disconnecting in 30 seconds."
    clock.now += 12.5
    dialog.tick()
    assert dialog.countdown.text() == "Disconnecting in 18 seconds."
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.disconnect_button)
    with qtbot.waitSignal(dialog.answered) as answered:
        qtbot.keyClick(dialog, Qt.Key.Key_Return)
    assert answered.args == ["disconnect-now"]


def test_esc_stays_online_and_silence_times_out(qtbot: QtBot) -> None:
    clock = FakeClock()
    staying = StayOnlineDialog("Contoso VPN", clock)
    qtbot.addWidget(staying)
    staying.show()
    with qtbot.waitSignal(staying.answered) as answered:
        qtbot.keyClick(staying, Qt.Key.Key_Escape)
    assert answered.args == ["stay-online"]
    waiting = StayOnlineDialog("Contoso VPN", clock)
    qtbot.addWidget(waiting)
    waiting.show()
    clock.now += 30
    with qtbot.waitSignal(waiting.answered) as answered:
        waiting.tick()
    assert answered.args == ["timed-out"]
    assert not waiting.isVisible()


def test_tab_moves_between_the_two_answers(qtbot: QtBot) -> None:
    dialog = StayOnlineDialog("Contoso VPN", FakeClock())
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.activateWindow()
    dialog.stay_button.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.stay_button)
    qtbot.keyClick(dialog.stay_button, Qt.Key.Key_Tab)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.disconnect_button)
    qtbot.keyClick(dialog.disconnect_button, Qt.Key.Key_Backtab)
    assert QApplication.focusWidget() is dialog.stay_button
    with qtbot.waitSignal(dialog.answered) as answered:
        qtbot.keyClick(dialog.stay_button, Qt.Key.Key_Space)  # Space presses the focused one
    assert answered.args == ["stay-online"]


def connect(daemon: DaemonProcess, profile_dir: Path) -> dict[str, Any]:
    with Client(daemon.socket, timeout=None) as client:
        status: dict[str, Any] = client.request(
            {"op": "connect", "profile": str(profile_dir), "unattended": False}
        )["session"]
    return status


def asked(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess, clock: FakeClock
) -> tuple[TrayController, StayOnlineDialog, Path]:
    """A connected session's tray, once its monitored program (record.py, which exits at
    once) has gone and the question is asked."""
    profile, record = branded_profile(tmp_path / "profile", extra_actions=MONITORED)
    status = connect(daemon, tmp_path / "profile")
    tray = TrayController(logon_facts(profile), status, clock, socket_path=daemon.socket)
    qtbot.waitUntil(lambda: tray.dialog is not None, timeout=WAIT)
    assert tray.dialog is not None
    return tray, tray.dialog, record


def test_the_tray_shows_time_and_addresses_then_asks_and_disconnects(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    tray, dialog, record = asked(qtbot, tmp_path, daemon, FakeClock())
    # The watch replayed the session's events: "connected" set the connected time.
    assert tray.connected_since is not None
    assert tray.status["state"] == "prompting"
    assert dialog.isVisible() and dialog.windowTitle() == "Contoso VPN"
    assert not tray.icon.isNull()
    lines = tray.menu_lines()
    assert lines[0] == "Contoso VPN"
    assert lines[2:] == ["Address 10.9.0.2 (server 10.9.0.1)", "&Disconnect"]
    with qtbot.waitSignal(tray.ended, timeout=WAIT) as ended:
        qtbot.keyClick(dialog, Qt.Key.Key_Return)  # Disconnect now
    assert ended.args[0]["outcome"] == "disconnected"
    assert ended.args[0]["disconnect_reason"] == "monitored-apps-exited"
    assert [r["DisconnectReason"] for r in recorded(record) if r["point"] == "disconnect"] == [
        "monitored-apps-exited"
    ]
    assert tray.menu_lines()[1] == (
        "Contoso VPN is disconnected: the last program using the connection closed."
    )
    assert not tray.disconnect_action.isEnabled()
    tray.close()


def test_the_tray_counts_connected_time_and_disconnects(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    profile, record = branded_profile(tmp_path / "profile")
    status = connect(daemon, tmp_path / "profile")
    clock = FakeClock()
    tray = TrayController(logon_facts(profile), status, clock, socket_path=daemon.socket)
    qtbot.waitUntil(lambda: tray.connected_since is not None, timeout=WAIT)
    tray.connected_since = clock.wall()
    clock.now += 3725
    tray.refresh()
    assert tray.menu_lines()[1] == "Connected for 1:02:05"
    assert "Connected for 1:02:05" in tray.tray.toolTip()
    with qtbot.waitSignal(tray.ended, timeout=WAIT) as ended:
        tray.disconnect_action.trigger()
    assert (ended.args[0]["outcome"], ended.args[0]["disconnect_reason"]) == (
        "disconnected",
        "user-disconnect",
    )
    assert [r["point"] for r in recorded(record)][-1] == "disconnect"
    tray.close()


def test_the_countdown_running_out_disconnects_as_the_session_timer_would(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    clock = FakeClock()
    tray, dialog, record = asked(qtbot, tmp_path, daemon, clock)
    clock.now += 30
    with qtbot.waitSignal(tray.ended, timeout=WAIT) as ended:
        dialog.tick()
    assert ended.args[0]["disconnect_reason"] == "prompt-timeout"
    assert [r["DisconnectReason"] for r in recorded(record) if r["point"] == "disconnect"] == [
        "prompt-timeout"
    ]
    tray.close()


def test_connected_time_reads_as_hours_minutes_seconds() -> None:
    assert connected_for(0) == "0:00:00"
    assert connected_for(59.9) == "0:00:59"
    assert connected_for(3600 * 27 + 61) == "27:01:01"
