"""The Connections window: the installed profiles with their icons ("How Connection Manager
Works": "An icon for the service profile is created in the Network Connections folder. The
user opens the Network Connections folder and opens the Connection Manager service profile").

Each item is an installed profile (this user's, then all users'), shown with its ``Icon`` and
its service name; opening one (double-click, or Enter) opens its logon dialog.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QLabel,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from opencm.errors import OpencmError
from opencm.kit.install import list_installed
from opencm.kit.roots import Scope, all_users_scope, user_scope
from opencm.profile.model import load_profile
from opencm.session.logon import logon_facts


@dataclass(frozen=True)
class InstalledConnection:
    service_name: str
    cmp_path: Path
    icon: Path | None
    scope: str


def installed_connections(scopes: list[Scope] | None = None) -> list[InstalledConnection]:
    """The profiles ``opencm install`` put in place (root sees the all-users ones only)."""
    if scopes is None:
        scopes = [all_users_scope()] if os.geteuid() == 0 else [user_scope(), all_users_scope()]
    found: list[InstalledConnection] = []
    for scope, record in list_installed(scopes):
        cmp = record.cmp_path(scope)
        icon = None
        # An unreadable profile is still listed; its logon dialog says what is wrong.
        with contextlib.suppress(OpencmError):
            icon = logon_facts(load_profile(cmp)).icon
        found.append(InstalledConnection(record.service_name, cmp, icon, scope.name))
    return found


class ConnectionsWindow(QWidget):
    #: A profile was opened: its ``.cmp``.
    opened = Signal(Path)

    def __init__(
        self, connections: list[InstalledConnection], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Network Connections — opencm")
        layout = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setObjectName("connections")
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(48, 48))
        self.list.setGridSize(QSize(150, 96))
        self.list.setWordWrap(True)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        fallback = self.style().standardIcon(QStyle.StandardPixmap.SP_DriveNetIcon)
        for connection in connections:
            icon = QIcon(str(connection.icon)) if connection.icon is not None else fallback
            item = QListWidgetItem(icon, connection.service_name)
            item.setData(Qt.ItemDataRole.UserRole, str(connection.cmp_path))
            item.setToolTip(f"{connection.cmp_path} (installed for {connection.scope})")
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)
        self.hint = QLabel(
            "Open a connection to connect."
            if connections
            else "No connections are installed. Install a profile with 'opencm install'."
        )
        self.hint.setObjectName("hint")
        layout.addWidget(self.list)
        layout.addWidget(self.hint)
        self.list.itemActivated.connect(self._open)
        self.resize(520, 300)

    def _open(self, item: QListWidgetItem) -> None:
        self.opened.emit(Path(str(item.data(Qt.ItemDataRole.UserRole))))


__all__ = ["ConnectionsWindow", "InstalledConnection", "installed_connections"]
