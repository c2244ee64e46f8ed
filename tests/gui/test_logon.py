"""The logon dialog against a real daemon: pre-init before the logon screen, keyboard-only use
(Tab order, Enter = Connect, Esc = Cancel), the status pane, Cancel during an attempt, errors
in words, the profile's branding and "Save password"."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from opencm.gui.logon import LogonDialog
from opencm.session import credentials as saved_store
from tests.gui.conftest import branded_profile
from tests.session.conftest import points_of, recorded
from tests.session.daemons import DaemonProcess

WAIT = 30_000  # ms: conditions, never timings


def dialog_for(qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess, **kw: Any) -> LogonDialog:
    profile, _record = branded_profile(tmp_path / "profile", **kw)
    opened: list[QUrl] = []

    def open_url(url: QUrl) -> bool:
        opened.append(url)
        return True

    dialog = LogonDialog(profile, socket_path=daemon.socket, open_url=open_url)
    dialog.opened_urls = opened  # type: ignore[attr-defined]
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.open_session()
    qtbot.waitUntil(lambda: dialog.phase == "ready", timeout=WAIT)
    return dialog


def sessions(daemon: DaemonProcess) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
    return found


def wait_ended(daemon: DaemonProcess) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        (session,) = sessions(daemon)
        if session["ended"]:
            return session
        assert time.monotonic() < deadline, session
        time.sleep(0.05)


def test_pre_init_runs_before_the_logon_screen_shows_its_fields(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    profile, record = branded_profile(tmp_path / "profile")
    dialog = LogonDialog(profile, socket_path=daemon.socket)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.user.isEnabled() and not dialog.connect_button.isEnabled()
    dialog.open_session()
    qtbot.waitUntil(lambda: dialog.phase == "ready", timeout=WAIT)
    assert points_of(record) == ["pre-init"]
    assert dialog.user.isEnabled() and dialog.connect_button.isEnabled()
    lines = dialog.status.lines()
    assert any(line.startswith("Running Custom Action") for line in lines)
    assert lines[-1] == "Ready to connect."


def test_keyboard_only_logon_connects_and_the_pane_shows_each_step_in_order(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    dialog = dialog_for(qtbot, tmp_path, daemon)
    # The .cmp's first-time user name is filled in; the cursor waits in the password field.
    assert dialog.user.text() == "jo"
    assert QApplication.focusWidget() is dialog.password
    qtbot.keyClicks(dialog.password, "s3cret")
    # Tab walks the fields in reading order, then the buttons.
    expected: list[QWidget] = [
        dialog.domain,
        dialog.save_password,
        dialog.connect_automatically,
        dialog.connect_button,
        dialog.cancel_button,
        dialog.properties_button,
        dialog.help_button,
    ]
    seen = []
    for _ in expected:
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        seen.append(QApplication.focusWidget())
    assert seen == expected
    qtbot.keyClick(dialog.help_button, Qt.Key.Key_Space)  # Help opens the profile's help file
    assert [url.toLocalFile() for url in dialog.opened_urls] == [  # type: ignore[attr-defined]
        str(tmp_path / "profile" / "CONTOSO" / "help.html")
    ]
    dialog.password.setFocus()
    with qtbot.waitSignal(dialog.connected, timeout=WAIT) as connected:
        qtbot.keyClick(dialog.password, Qt.Key.Key_Return)  # Enter = Connect
    status = connected.args[0]
    assert status["state"] == "connected"
    assert not dialog.isVisible()
    record = tmp_path / "profile" / "record.jsonl"
    # The realm suffix went to the server and the actions: "jo" became jo@contoso.test.
    assert {row["UserName"] for row in recorded(record)[1:]} == {"jo@contoso.test"}
    lines = dialog.status.lines()

    def after(text: str, start: int) -> int:
        return lines.index(text, start)

    # Each point's action runs and reports before the next step shows, in the order "How
    # Connection Manager Works" gives.
    order = [
        "Preparing to connect…",  # pre-connect
        "Running Custom Action record.py",
        "Preparing the VPN connection…",  # pre-tunnel
        "Running Custom Action record.py",
        "Connecting to the VPN server…",
        "Connecting the VPN tunnel to Main (openvpn)",
        "The VPN tunnel is up: address 10.9.0.2",
        "Finishing the connection…",  # post-connect
        "Running Custom Action record.py",
        "Connected.",
    ]
    position = 0
    for text in order:
        position = after(text, position) + 1
    running = [line for line in lines if line.startswith("Running Custom Action")]
    done = [line for line in lines if line.startswith("Custom Action") and line.endswith("done")]
    assert len(running) == len(done) == 4  # pre-init, pre-connect, pre-tunnel, post-connect
    assert "Connecting the VPN tunnel to Main (openvpn)" in lines
    assert daemon.cli("disconnect").returncode == 0


def test_esc_at_the_logon_screen_closes_without_on_cancel_actions(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    dialog = dialog_for(qtbot, tmp_path, daemon)
    with qtbot.waitSignal(dialog.rejected, timeout=WAIT):
        qtbot.keyClick(dialog.user, Qt.Key.Key_Escape)  # Esc = Cancel
    session = wait_ended(daemon)
    assert session["outcome"] == "closed"
    assert points_of(tmp_path / "profile" / "record.jsonl") == ["pre-init"]


def test_cancel_during_the_attempt_runs_the_on_cancel_actions(qtbot: QtBot, tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, env={"OPENCM_TEST_DIAL": "hang"})
    daemon.start()
    try:
        dialog = dialog_for(qtbot, tmp_path, daemon)
        dialog.password.setText("s3cret")
        qtbot.mouseClick(dialog.connect_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(
            lambda: "Connecting to the VPN server…" in dialog.status.lines(), timeout=WAIT
        )
        qtbot.keyClick(dialog.cancel_button, Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: dialog.phase == "ended", timeout=WAIT)
        assert dialog.isVisible()  # the logon screen stays, ready to connect again
        assert "Contoso VPN was cancelled." in dialog.status.lines()
        record = tmp_path / "profile" / "record.jsonl"
        assert points_of(record) == ["pre-init", "pre-connect", "pre-tunnel", "on-cancel"]
    finally:
        daemon.stop()


def test_a_failed_connection_is_explained_in_words_with_its_redials(
    qtbot: QtBot, tmp_path: Path
) -> None:
    daemon = DaemonProcess(tmp_path, env={"OPENCM_TEST_DIAL": "fail"})
    daemon.start()
    try:
        profile, _record = branded_profile(tmp_path / "profile")
        cms = tmp_path / "profile" / "CONTOSO" / "CONTOSO.cms"
        cms.write_bytes(cms.read_bytes().replace(b"RedialDelay=5", b"RedialDelay=0"))
        dialog = LogonDialog(profile, socket_path=daemon.socket)
        qtbot.addWidget(dialog)
        dialog.show()
        dialog.open_session()
        qtbot.waitUntil(lambda: dialog.phase == "ready", timeout=WAIT)
        dialog.password.setText("s3cret")
        dialog.start_connect()
        qtbot.waitUntil(lambda: dialog.phase == "ended", timeout=WAIT)
        lines = dialog.status.lines()
        assert "redial 1 of 2 in 0 s: Main did not answer (test)" in lines
        # What failed, what to try, and the number last.
        assert dialog.last_outcome == (
            "Contoso VPN could not connect.\n\nMain did not answer (test)\n\n"
            "The server did not answer. Check your Internet connection, or choose another "
            "server in Properties.\n\n(Error 678 from openvpn.)"
        )
        assert dialog.connect_button.isEnabled()  # Connect tries again
    finally:
        daemon.stop()


def test_save_password_keeps_it_for_next_time_where_the_profile_allows(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    dialog = dialog_for(qtbot, tmp_path, daemon)
    assert dialog.save_password.isVisible()
    dialog.password.setText("s3cret")
    dialog.save_password.setChecked(True)
    with qtbot.waitSignal(dialog.connected, timeout=WAIT):
        dialog.start_connect()
    saved = saved_store.load_saved(dialog.profile)
    assert saved is not None and (saved.username, saved.password) == ("jo", "s3cret")
    assert daemon.cli("disconnect").returncode == 0
    again = LogonDialog(dialog.profile, socket_path=daemon.socket)
    qtbot.addWidget(again)
    assert again.password.text() == "s3cret" and again.save_password.isChecked()


def test_the_profile_decides_the_fields_logo_and_icon(
    qtbot: QtBot, tmp_path: Path, daemon: DaemonProcess
) -> None:
    profile, _record = branded_profile(
        tmp_path / "profile", cm=("HideDomain=1", "HideRememberPassword=1")
    )
    dialog = LogonDialog(profile, socket_path=daemon.socket)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.domain.isVisible()
    assert not dialog.save_password.isVisible()
    assert dialog.user_label.text() == "&User name (…@contoso.test):"
    pixmap = dialog.logo.pixmap()
    assert not pixmap.isNull() and (pixmap.width(), pixmap.height()) == (320, 60)
    assert not dialog.windowIcon().isNull()
    assert dialog.windowTitle() == "Connect Contoso VPN"
    bare, _ = branded_profile(tmp_path / "bare", opencm=())
    plain = LogonDialog(bare, socket_path=daemon.socket)
    qtbot.addWidget(plain)
    plain.show()
    # A profile that asks for no credentials shows no credential fields at all.
    assert not plain.user.isVisible() and not plain.password.isVisible()
