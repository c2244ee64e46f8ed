"""``opencm-gui``: the desktop client (the optional extra ``opencm[gui]``; docs/gui.md).

``opencm-gui`` shows the Connections window; ``opencm-gui --profile NAME`` (what the menu entry
``opencm install`` writes runs) opens that profile's logon dialog straight away. After Connect
the logon dialog closes and the tray icon stays until the session ends. Everything goes through
the daemon (``opencm daemon``) as for ``opencm connect``: this is a front end, not an engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication, QMessageBox

from opencm.clock import Clock, RealClock
from opencm.errors import EXIT_BAD_INPUT, OpencmError
from opencm.gui.connections import ConnectionsWindow, installed_connections
from opencm.gui.logon import LogonDialog
from opencm.gui.tray import TrayController
from opencm.profile.model import load_profile


class DesktopClient(QObject):
    """The windows of one ``opencm-gui`` process: Connections, logon dialogs, tray icons."""

    def __init__(
        self,
        *,
        socket_path: Path | None = None,
        clock: Clock | None = None,
        quit_when_done: bool = False,
    ) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.clock: Clock = clock or RealClock()
        self.quit_when_done = quit_when_done
        self.dialogs: list[LogonDialog] = []
        self.trays: list[TrayController] = []
        self.window: ConnectionsWindow | None = None

    def show_connections(self) -> ConnectionsWindow:
        self.window = ConnectionsWindow(installed_connections())
        self.window.opened.connect(self.open_profile)
        self.window.show()
        return self.window

    def open_profile(self, path: Path) -> LogonDialog:
        dialog = LogonDialog(load_profile(path), socket_path=self.socket_path)
        self.dialogs.append(dialog)
        dialog.connected.connect(lambda status: self._connected(dialog, status))
        dialog.rejected.connect(lambda: self._closed(dialog))
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        dialog.open_session()
        return dialog

    def _connected(self, dialog: LogonDialog, status: dict[str, Any]) -> None:
        tray = TrayController(dialog.facts, status, self.clock, socket_path=self.socket_path)
        self.trays.append(tray)
        tray.ended.connect(lambda _status: self._tray_ended(tray))
        if dialog in self.dialogs:
            self.dialogs.remove(dialog)

    def _closed(self, dialog: LogonDialog) -> None:
        if dialog in self.dialogs:
            self.dialogs.remove(dialog)
        self._maybe_quit()

    def _tray_ended(self, tray: TrayController) -> None:
        if tray in self.trays:
            self.trays.remove(tray)
        self._maybe_quit()

    def _maybe_quit(self) -> None:
        if self.quit_when_done and not self.dialogs and not self.trays and self.window is None:
            QApplication.quit()


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="opencm-gui", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", help="Open this profile's logon dialog (path or short name).")
    parser.add_argument("--socket", type=Path, help="The daemon's socket.")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    app.setApplicationName("opencm")
    app.setQuitOnLastWindowClosed(False)  # the tray icon lives on without a window
    client = DesktopClient(socket_path=args.socket, quit_when_done=args.profile is not None)
    try:
        if args.profile:
            from opencm.session.locate import resolve_profile

            client.open_profile(resolve_profile(args.profile))
        else:
            window = client.show_connections()
            app.setQuitOnLastWindowClosed(True)
            window.destroyed.connect(app.quit)
    except OpencmError as error:
        QMessageBox.critical(None, "opencm", str(error))
        return error.exit_code if error.exit_code else EXIT_BAD_INPUT
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
