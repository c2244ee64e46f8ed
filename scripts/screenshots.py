"""Screenshots of the desktop client for docs/screenshots/ (run by scripts/screenshots.sh).

Runs the real windows against a real daemon process: the suite's harness daemon
(tests/session/daemon_harness.py), whose links are stand-in processes, so no root and no VPN
server are needed. Each picture is taken from the X server's screen (Xvfb), not rendered
off-screen: what a person would see. Usage: python scripts/screenshots.py OUT_DIR (with
$DISPLAY set to an X server; scripts/screenshots.sh starts Xvfb).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QFont, QImage, QLinearGradient, QPainter
from PySide6.QtWidgets import QApplication, QWidget

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.session.conftest import build_profile  # noqa: E402
from tests.session.daemons import DaemonProcess  # noqa: E402

from opencm.gui.connections import ConnectionsWindow, InstalledConnection  # noqa: E402
from opencm.gui.logon import LogonDialog  # noqa: E402
from opencm.gui.tray import TrayController  # noqa: E402
from opencm.profile.model import load_profile  # noqa: E402
from opencm.testing import FakeClock  # noqa: E402


def banner(path: Path, text: str, top: str, bottom: str) -> Path:
    image = QImage(420, 72, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    gradient = QLinearGradient(0, 0, 420, 72)
    gradient.setColorAt(0, QColor(top))
    gradient.setColorAt(1, QColor(bottom))
    painter.fillRect(image.rect(), gradient)
    painter.setPen(QColor("white"))
    font = QFont("DejaVu Sans", 20)
    font.setBold(True)
    painter.setFont(font)
    painter.drawText(image.rect().adjusted(18, 0, 0, 0), Qt.AlignmentFlag.AlignVCenter, text)
    painter.end()
    image.save(str(path))
    return path


def icon(path: Path, color: str, letter: str, size: int = 48) -> Path:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(color))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawRoundedRect(2, 2, size - 4, size - 4, size / 5, size / 5)
    painter.setPen(QColor("white"))
    font = QFont("DejaVu Sans", int(size / 2.2))
    font.setBold(True)
    painter.setFont(font)
    painter.drawText(image.rect(), Qt.AlignmentFlag.AlignCenter, letter)
    painter.end()
    image.save(str(path))
    return path


def profile(root: Path, monitored: bool) -> Path:
    service = root / "CONTOSO"
    service.mkdir(parents=True)
    banner(service / "logo.png", "Contoso VPN", "#0b3d6e", "#2a7ab8")
    icon(service / "icon.png", "#2a7ab8", "C")
    icon(service / "tray.png", "#2a7ab8", "C", 22)
    (service / "help.html").write_text("<h1>Contoso VPN</h1>\n")
    # A slow pre-tunnel action, so that the status pane is caught while it runs.
    slow = service / "checkcert.py"
    slow.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(2.5)\n")
    slow.chmod(0o755)
    extra = {
        "pre-init": [r"0=CONTOSO\record.py", "0&Flags=16", "0&Description=check for updates"],
        "pre-connect": [r"0=CONTOSO\record.py", "0&Flags=16", "0&Description=set up the proxy"],
        "pre-tunnel": [r"0=CONTOSO\checkcert.py", "0&Flags=16", "0&Description=check the server"],
        "post-connect": [r"0=CONTOSO\record.py", "0&Flags=16", "0&Description=map the drives"],
    }
    if monitored:
        extra["monitored"] = [r"0=CONTOSO\record.py monitored", "0&Flags=16"]
    build_profile(
        root,
        points=["disconnect"],
        extra_actions=extra,
        cm=[
            r"Logo=CONTOSO\logo.png",
            r"Icon=CONTOSO\icon.png",
            r"TrayIcon=CONTOSO\tray.png",
            r"HelpFile=CONTOSO\help.html",
            "UserNameSuffix=@contoso.example",
            "HideDomain=1",
        ],
        opencm=["Credentials=password"],
        servers=("Seattle", "Dublin"),
    )
    cmp = root / "CONTOSO.cmp"
    cmp.write_bytes(cmp.read_bytes() + b"UserName=jo\r\n")
    return cmp


class Shooter:
    def __init__(self, app: QApplication, out: Path) -> None:
        self.app = app
        self.out = out

    def wait(self, condition: Callable[[], bool], limit: float = 30) -> None:
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the window did not get there")
            self.app.processEvents()
            time.sleep(0.02)

    def settle(self, seconds: float = 0.4) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.app.processEvents()
            time.sleep(0.02)

    def shoot(self, widget: QWidget, name: str, margin: int = 0) -> None:
        self.settle()
        screen = self.app.primaryScreen()
        frame = widget.frameGeometry().adjusted(-margin, -margin, margin, margin)
        picture = screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
        path = self.out / f"{name}.png"
        picture.save(str(path))
        print(f"screenshots: {path} ({frame.width()}x{frame.height()})", flush=True)


def place(widget: QWidget, x: int = 40, y: int = 40) -> None:
    widget.move(x, y)
    widget.show()
    widget.raise_()
    widget.activateWindow()


def main() -> int:
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication(sys.argv[:1])
    app.setFont(QFont("DejaVu Sans", 10))
    shooter = Shooter(app, out)
    with tempfile.TemporaryDirectory(prefix="opencm-shots-") as folder:
        base = Path(folder)
        os.environ["XDG_CONFIG_HOME"] = str(base / "config")
        cmp = profile(base / "profile", monitored=True)
        fabrikam = icon(base / "fabrikam.png", "#b8462a", "F")
        northwind = icon(base / "northwind.png", "#3a8a3a", "N")
        daemon = DaemonProcess(base)
        daemon.start()
        try:
            window = ConnectionsWindow(
                [
                    InstalledConnection(
                        "Contoso VPN", cmp, base / "profile/CONTOSO/icon.png", "user"
                    ),
                    InstalledConnection("Fabrikam Dial-up", base / "F.cmp", fabrikam, "all users"),
                    InstalledConnection("Northwind Branch", base / "N.cmp", northwind, "user"),
                ]
            )
            window.resize(520, 260)
            place(window)
            shooter.shoot(window, "connections")
            window.close()

            dialog = LogonDialog(load_profile(cmp), socket_path=daemon.socket)
            dialog.resize(460, 520)
            place(dialog)
            dialog.open_session()
            shooter.wait(lambda: dialog.phase == "ready")
            dialog.password.setText("correct horse")
            dialog.password.setFocus()
            shooter.shoot(dialog, "logon")

            connected: list[dict[str, object]] = []
            dialog.connected.connect(connected.append)
            dialog.start_connect()
            shooter.wait(lambda: "Running Custom Action check the server" in dialog.status.lines())
            shooter.shoot(dialog, "progress")
            shooter.wait(lambda: bool(connected))

            clock = FakeClock()
            clock.now = 0.0
            tray = TrayController(
                dialog.facts, dict(connected[0]), clock, socket_path=daemon.socket
            )
            prompted: list[object] = []
            tray.prompted.connect(prompted.append)
            shooter.wait(lambda: bool(prompted))  # the monitored program exits at once
            tray.connected_since = clock.wall() - 754  # connected 12 min 34 s ago
            prompt = tray.dialog
            assert prompt is not None
            prompt.hide()
            tray.status["state"] = "connected"
            tray.refresh()
            tray.menu.popup(QPoint(60, 60))
            shooter.wait(tray.menu.isVisible)
            shooter.shoot(tray.menu, "tray-menu")
            tray.menu.hide()

            clock.now += 12  # the countdown has run for 12 seconds
            prompt.tick()
            place(prompt, 60, 60)
            shooter.shoot(prompt, "prompt")
            ended: list[object] = []
            tray.ended.connect(ended.append)
            prompt.disconnect_now()
            shooter.wait(lambda: bool(ended))
            tray.close()
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
