"""The logon dialog: Connection Manager's logon screen, with its status pane.

"How Connection Manager Works" orders it: the user opens the profile, the pre-init actions run,
the logon screen appears, the user provides what the connection requires and clicks Connect.
So the dialog opens the session in the daemon first (``open``: pre-init runs, shown in the status
pane) and enables its fields once the session waits at the logon screen (``ready``); Connect
sends the credentials on the same connection (``connect`` of the session) and the pane shows
each step ("Running Custom Action …", each action's result, the link, redials with their
reason). Cancel during an attempt runs the on-cancel actions; before Connect it closes the
session without them ("Incorporating Custom Actions": on-cancel actions "do not run when users
click the Cancel button to close Connection Manager").

The profile decides the rest (:class:`opencm.session.logon.LogonFacts`): logo, icon, which
fields show, the realm prefix/suffix, whether "Save password" is offered, the help file.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from opencm.gui.daemon_link import Conversation
from opencm.gui.properties import ConnectChoices, PropertiesDialog
from opencm.gui.words import outcome_words, state_words
from opencm.links.api import Credentials
from opencm.profile.model import CM, ServiceProfile
from opencm.session import credentials as saved_store
from opencm.session.logon import LogonFacts, logon_facts

ConversationFactory = Callable[[Path | None], Conversation]


class StatusPane(QListWidget):
    """The status pane: one line per step, the newest at the bottom."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status")
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMinimumHeight(110)

    def add(self, text: str) -> None:
        self.addItem(text)
        self.scrollToBottom()

    def lines(self) -> list[str]:
        return [self.item(row).text() for row in range(self.count())]


def event_text(event: dict[str, Any]) -> str | None:
    """The pane's line for one daemon event (None: not shown)."""
    kind = event.get("event")
    if kind == "state":
        return state_words(str(event.get("state")))
    if kind == "missed":
        return None
    text = event.get("text")
    return str(text) if text else None


class LogonDialog(QDialog):
    #: The session is connected: its status (the tray takes over).
    connected = Signal(dict)

    def __init__(
        self,
        profile: ServiceProfile,
        *,
        socket_path: Path | None = None,
        conversation: ConversationFactory = Conversation,
        open_url: Callable[[QUrl], bool] = QDesktopServices.openUrl,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.profile = profile
        self.facts: LogonFacts = logon_facts(profile)
        self.socket_path = socket_path
        self._conversation_factory = conversation
        self._open_url = open_url
        self.choices = ConnectChoices.default(profile)
        self.session_id: str | None = None
        self.phase = "closed"  # opening → ready → connecting → connected | ended
        self._talk: Conversation | None = None
        self._connect_when_ready = False
        #: How the last attempt ended, in words (shown in the pane too).
        self.last_outcome = ""
        self._build()
        self._fill_first_time_values()

    # -- the window ------------------------------------------------------------------------

    def _build(self) -> None:
        facts = self.facts
        self.setWindowTitle(f"Connect {facts.service_name}")
        if facts.icon is not None:
            self.setWindowIcon(QIcon(str(facts.icon)))
        layout = QVBoxLayout(self)
        self.logo = QLabel()
        self.logo.setObjectName("logo")
        self.logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        pixmap = QPixmap(str(facts.logo)) if facts.logo is not None else QPixmap()
        if pixmap.isNull():
            self.logo.setText(f"<b>{facts.service_name}</b>")
        else:
            self.logo.setPixmap(pixmap)
        layout.addWidget(self.logo)

        form = QFormLayout()
        self.user = QLineEdit()
        self.user.setObjectName("user")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.domain = QLineEdit()
        self.domain.setObjectName("domain")
        realm = ""
        if facts.user_prefix or facts.user_suffix:
            realm = f" ({facts.user_prefix}…{facts.user_suffix})"
        self.user_label = QLabel(f"&User name{realm}:")
        self.user_label.setBuddy(self.user)
        password_label = QLabel("&Password:")
        password_label.setBuddy(self.password)
        domain_label = QLabel("&Domain:")
        domain_label.setBuddy(self.domain)
        form.addRow(self.user_label, self.user)
        form.addRow(password_label, self.password)
        form.addRow(domain_label, self.domain)
        for label, field in ((self.user_label, self.user), (password_label, self.password)):
            label.setVisible(facts.asks_credentials)
            field.setVisible(facts.asks_credentials)
        domain_label.setVisible(facts.asks_credentials and facts.shows_domain)
        self.domain.setVisible(facts.asks_credentials and facts.shows_domain)
        layout.addLayout(form)

        self.save_password = QCheckBox("&Save password")
        self.save_password.setObjectName("save_password")
        self.save_password.setVisible(facts.asks_credentials and facts.may_save_password)
        self.connect_automatically = QCheckBox("Connect &automatically")
        self.connect_automatically.setObjectName("connect_automatically")
        layout.addWidget(self.save_password)
        layout.addWidget(self.connect_automatically)

        buttons = QHBoxLayout()
        self.connect_button = QPushButton("&Connect")
        self.connect_button.setObjectName("connect")
        self.connect_button.setDefault(True)  # Enter = Connect
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel")
        self.properties_button = QPushButton("P&roperties")
        self.properties_button.setObjectName("properties")
        self.help_button = QPushButton("&Help")
        self.help_button.setObjectName("help")
        self.help_button.setEnabled(facts.help_file is not None)
        for button in (
            self.connect_button,
            self.cancel_button,
            self.properties_button,
            self.help_button,
        ):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.status = StatusPane()
        layout.addWidget(self.status)

        self.connect_button.clicked.connect(self.start_connect)
        self.cancel_button.clicked.connect(self.reject)
        self.properties_button.clicked.connect(self.show_properties)
        self.help_button.clicked.connect(self.show_help)
        #: What is enabled only at the logon screen (not while pre-init or an attempt runs).
        self._inputs: list[QWidget] = [
            self.user,
            self.password,
            self.domain,
            self.save_password,
            self.connect_automatically,
            self.connect_button,
        ]
        order = [*self._inputs, self.cancel_button, self.properties_button, self.help_button]
        for first, second in itertools.pairwise(order):
            QWidget.setTabOrder(first, second)
        self._set_fields_enabled(False)

    def _fill_first_time_values(self) -> None:
        facts = self.facts
        saved = saved_store.load_saved(self.profile) if facts.asks_credentials else None
        self.user.setText((saved.username if saved else None) or facts.first_user)
        self.domain.setText((saved.domain if saved else None) or facts.first_domain)
        if saved is not None and saved.password:
            self.password.setText(saved.password)
            self.save_password.setChecked(True)
        else:
            self.save_password.setChecked(facts.remember_password and facts.may_save_password)
        self.connect_automatically.setChecked(facts.connect_automatically)

    def _set_fields_enabled(self, enabled: bool) -> None:
        for widget in (*self._inputs, self.properties_button):
            widget.setEnabled(enabled)

    # -- the session ------------------------------------------------------------------------

    def open_session(self) -> None:
        """Open the profile in the daemon: pre-init runs, then the logon screen is ready."""
        self.phase = "opening"
        self.session_id = None
        self.status.add(state_words("pre-init"))
        self._talk = self._conversation_factory(self.socket_path)
        self._talk.setParent(self)
        self._talk.line.connect(self._on_line)
        self._talk.failed.connect(self._on_failed)
        self._talk.send(
            {
                "op": "open",
                "profile": str(self.facts.profile_path),
                "type": self.choices.connection_type,
                "entry": self.choices.entry,
                "unattended": False,
            }
        )

    def credentials(self) -> Credentials:
        if not self.facts.asks_credentials:
            return Credentials()
        return Credentials(
            username=self.facts.realm_user(self.user.text()) or None,
            password=self.password.text() or None,
            domain=self.domain.text().strip() or None,
        )

    def start_connect(self) -> None:
        if self.phase == "ended":
            self._connect_when_ready = True
            self._set_fields_enabled(False)
            self.open_session()
            return
        if self.phase != "ready" or self._talk is None:
            return
        if self.facts.asks_credentials and not self.user.text().strip():
            self.status.add("Type your user name first.")
            self.user.setFocus()
            return
        self._remember()
        self.phase = "connecting"
        self._set_fields_enabled(False)
        self.cancel_button.setFocus()
        creds = self.credentials()
        self._talk.send(
            {
                "op": "connect",
                "session": self.session_id,
                "credentials": {
                    "username": creds.username,
                    "password": creds.password,
                    "domain": creds.domain,
                },
            }
        )

    def _remember(self) -> None:
        """Save the password (keyring, where the profile allows) and the check boxes."""
        facts = self.facts
        if facts.asks_credentials and facts.may_save_password and self.save_password.isChecked():
            where = saved_store.save(
                self.profile,
                Credentials(
                    username=self.user.text().strip() or None,
                    password=self.password.text() or None,
                    domain=self.domain.text().strip() or None,
                ),
            )
            self.status.add(f"Password saved in {where}.")
        cmp = self.profile.cmp
        path = self.profile.cmp_path
        if cmp is not None and path is not None and os.access(path, os.W_OK):
            wanted = "1" if self.connect_automatically.isChecked() else "0"
            if (cmp.get(CM, "DialAutomatically") or "0") != wanted:
                cmp.set(CM, "DialAutomatically", wanted)
                cmp.save(path)

    def _on_line(self, line: dict[str, Any]) -> None:
        if "event" in line:
            text = event_text(line)
            if text:
                self.status.add(text)
            return
        status: dict[str, Any] = line["session"]
        self.session_id = str(status["session"])
        if self.phase == "opening" and status["state"] == "ready":
            self.phase = "ready"
            self._set_fields_enabled(True)
            (self.password if self.user.text() else self.user).setFocus()
            again, self._connect_when_ready = self._connect_when_ready, False
            if again or (self.connect_automatically.isChecked() and self._can_connect_unasked()):
                self.start_connect()
        elif status["state"] == "connected":
            self.phase = "connected"
            self.connected.emit(status)
            self.accept()
        else:
            self._ended(status)

    def _can_connect_unasked(self) -> bool:
        return not self.facts.asks_credentials or bool(self.user.text() and self.password.text())

    def _ended(self, status: dict[str, Any]) -> None:
        self.phase = "ended"
        self._drop_talk()
        self.last_outcome = outcome_words(status)
        self.status.add(self.last_outcome)
        # Connect again opens a new session (pre-init runs again, as on a new start).
        self._set_fields_enabled(True)

    def _on_failed(self, message: str, code: int) -> None:
        self.phase = "ended"
        self._drop_talk()
        self.connect_button.setEnabled(True)
        if code == 5:
            self.status.add(
                "The opencm service is not running. Start it (systemctl start opencm) and open "
                "this connection again."
            )
        self.status.add(message)

    def _drop_talk(self) -> None:
        if self._talk is not None:
            self._talk.line.disconnect(self._on_line)
            self._talk.failed.disconnect(self._on_failed)
            self._talk.close()
            self._talk = None

    # -- buttons ----------------------------------------------------------------------------

    def reject(self) -> None:
        """Cancel: during an attempt the on-cancel actions run and the dialog stays; otherwise
        the dialog closes (the daemon closes a session still at its logon screen)."""
        if self.phase == "connecting" and self.session_id is not None:
            self.status.add("Cancelling…")
            canceller = self._conversation_factory(self.socket_path)
            canceller.setParent(self)  # kept alive while its thread may still signal
            canceller.line.connect(lambda _line: canceller.close())
            canceller.failed.connect(lambda message, _code: self.status.add(message))
            canceller.send({"op": "cancel", "session": self.session_id, "wait": False})
            return
        self._drop_talk()
        self.phase = "closed"
        super().reject()

    def show_help(self) -> None:
        if self.facts.help_file is not None:
            self._open_url(QUrl.fromLocalFile(str(self.facts.help_file)))

    def show_properties(self) -> None:
        dialog = PropertiesDialog(self.profile, self.choices, parent=self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            changed = dialog.choices() != self.choices
            self.choices = dialog.choices()
            if changed and self.phase == "ready":
                # The connection type and server are the session's from its start: open anew.
                self._drop_talk()
                self._set_fields_enabled(False)
                self.open_session()

    def closeEvent(self, event: Any) -> None:
        if self.phase == "connecting":
            event.ignore()
            self.reject()
            return
        self._drop_talk()
        super().closeEvent(event)


__all__ = ["LogonDialog", "StatusPane", "event_text"]
