"""The tray icon of a connected session: the profile's ``TrayIcon``, how long it has been
connected, its addresses, Disconnect, and the "Stay online?" question when it is asked.

Qt shows a :class:`QSystemTrayIcon` through the desktop's StatusNotifierItem host (or the older
XEmbed tray). The controller follows the session's events from the daemon (``watch`` of the
session): a ``prompt`` event opens :class:`~opencm.gui.prompt.StayOnlineDialog`; the
``outcome`` event ends it, in words.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from opencm.gui.daemon_link import Conversation
from opencm.gui.prompt import StayOnlineDialog
from opencm.gui.words import outcome_words, state_words
from opencm.session.logon import LogonFacts


class TrayClock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


def connected_for(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 3600:d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class TrayController(QObject):
    #: The session ended: its final status.
    ended = Signal(dict)
    #: A "Stay online?" dialog opened (tests and screenshots use it).
    prompted = Signal(object)

    def __init__(
        self,
        facts: LogonFacts,
        status: dict[str, Any],
        clock: TrayClock,
        *,
        socket_path: Path | None = None,
        conversation: Callable[[Path | None], Conversation] = Conversation,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.facts = facts
        self.status = dict(status)
        self.clock = clock
        self.socket_path = socket_path
        self._conversation = conversation
        self.connected_since: float | None = (
            clock.wall() if status["state"] == "connected" else None
        )
        self.dialog: StayOnlineDialog | None = None
        self._retired: list[StayOnlineDialog] = []
        self.final: dict[str, Any] | None = None
        icon_path = facts.tray_icon or facts.icon
        self.icon = QIcon(str(icon_path)) if icon_path is not None else QIcon()
        self.tray = QSystemTrayIcon(self.icon, self)
        self.menu = QMenu()
        self.title_action = QAction(facts.service_name, self.menu)
        self.title_action.setEnabled(False)
        title_font = self.title_action.font()
        title_font.setBold(True)
        self.title_action.setFont(title_font)
        self.time_action = QAction("", self.menu)
        self.time_action.setEnabled(False)
        self.address_action = QAction("", self.menu)
        self.address_action.setEnabled(False)
        self.disconnect_action = QAction("&Disconnect", self.menu)
        self.disconnect_action.triggered.connect(self.request_disconnect)
        for action in (self.title_action, self.time_action, self.address_action):
            self.menu.addAction(action)
        self.menu.addSeparator()
        self.menu.addAction(self.disconnect_action)
        self.tray.setContextMenu(self.menu)
        self.tray.show()
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._watch = conversation(socket_path)
        self._watch.setParent(self)
        self._watch.line.connect(self._on_line)
        self._watch.failed.connect(self._on_failed)
        self._watch.send({"op": "watch", "session": status["session"]})
        self.refresh()

    # -- what the menu says -----------------------------------------------------------------

    def refresh(self) -> None:
        status = self.final or self.status
        state = str(status["state"])
        if self.final is not None:
            self.time_action.setText(outcome_words(self.final).split("\n")[0])
        elif state == "connected" and self.connected_since is not None:
            elapsed = connected_for(self.clock.wall() - self.connected_since)
            self.time_action.setText(f"Connected for {elapsed}")
        else:
            self.time_action.setText(state_words(state))
        address = status.get("client_ip")
        server = status.get("server_ip")
        self.address_action.setText(
            f"Address {address}" + (f" (server {server})" if server else "")
            if address
            else "No address"
        )
        self.disconnect_action.setEnabled(self.final is None)
        self.tray.setToolTip(
            "\n".join(a.text() for a in (self.title_action, self.time_action, self.address_action))
        )

    def menu_lines(self) -> list[str]:
        return [action.text() for action in self.menu.actions() if not action.isSeparator()]

    # -- the session's events ---------------------------------------------------------------

    def _on_line(self, line: dict[str, Any]) -> None:
        kind = line.get("event")
        if kind is None:  # the watch's answer: the session has ended
            self._finish(line["session"])
            return
        if kind == "state":
            self.status["state"] = line["state"]
            if line["state"] == "connected":
                self.connected_since = float(line.get("time") or self.clock.wall())
            if line["state"] != "prompting" and self.dialog is not None:
                self.dialog.close_unanswered()
                self._drop_dialog()
        elif kind == "link" and line.get("phase") == "up":
            self.status["client_ip"] = line.get("client_ip")
            self.status["server_ip"] = line.get("server_ip")
        elif kind == "prompt":
            self.ask(float(line.get("seconds") or 30))
        self.refresh()

    def ask(self, seconds: float) -> StayOnlineDialog:
        if self.dialog is not None:
            return self.dialog
        self.dialog = StayOnlineDialog(
            self.facts.service_name, self.clock, seconds=seconds, icon=self.icon
        )
        self.dialog.answered.connect(self.answer)
        self.dialog.show()
        self.dialog.raise_()
        self.prompted.emit(self.dialog)
        return self.dialog

    def answer(self, choice: str) -> None:
        self._request({"op": "answer", "session": self.status["session"], "choice": choice})
        self._drop_dialog()

    def _drop_dialog(self) -> None:
        """Let Qt delete the dialog once its own signal has returned (this may run inside it)."""
        if self.dialog is not None:
            self.dialog.deleteLater()
            self._retired.append(self.dialog)
            self.dialog = None

    def request_disconnect(self) -> None:
        self._request({"op": "disconnect", "session": self.status["session"], "wait": False})

    def _request(self, request: dict[str, Any]) -> None:
        talk = self._conversation(self.socket_path)
        talk.setParent(self)  # kept alive while its thread may still signal
        talk.line.connect(lambda _line: talk.close())
        talk.failed.connect(lambda message, _code: self.tray.showMessage("opencm", message))
        talk.send(request)

    def _finish(self, status: dict[str, Any]) -> None:
        self.final = status
        if self.dialog is not None:
            self.dialog.close_unanswered()
            self._drop_dialog()
        self.timer.stop()
        self.refresh()
        self.tray.showMessage(self.facts.service_name, outcome_words(status))
        self._watch.close()
        self.ended.emit(status)

    def _on_failed(self, message: str, code: int) -> None:
        self.time_action.setText(message)

    def close(self) -> None:
        self._watch.close()
        self.timer.stop()
        self.tray.hide()
        self._drop_dialog()
        self.menu.deleteLater()
        self.deleteLater()


__all__ = ["TrayController", "connected_for"]
