"""Properties: the connection type, the VPN server, and for dial-up the POP and dialing rules.

The POP picker narrows the profile's phone books by country, region and service type with the
same code as ``opencm pops`` (:mod:`opencm.phonebook.select`, filtered by the profile's
``[ISP]`` block), and shows the numbers the modem would dial, in order. The choices a session
reads from the profile (``[opencm] PopCountry``, ``PopRegion``, ``PopServiceType``,
``PopIndex``, ``DialPrefix``: docs/session.md) are written back to the ``.cms`` when this user
may write it (a profile installed for this user); a profile installed for all users belongs to
root and its POP choice is the administrator's. The connection type and server are this
connection's choices, sent with the ``open`` request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from opencm.errors import OpencmError
from opencm.phonebook.select import OfferedPop, dial_numbers, read_offered, select
from opencm.profile.isp import read_isp_filters
from opencm.profile.model import ConnectionType, ServiceProfile
from opencm.session.config import OPENCM, session_config

TYPE_WORDS = {
    ConnectionType.DIRECT: "VPN over my Internet connection",
    ConnectionType.DIALUP: "Dial-up",
    ConnectionType.DOUBLE: "Dial-up, then VPN",
}
ANY = "(any)"


@dataclass(frozen=True)
class ConnectChoices:
    #: ``direct``, ``dialup``, ``double``, or None for the profile's default.
    connection_type: str | None = None
    #: The VPN server (or dial-up entry) to try first, or None for the profile's order.
    entry: str | None = None

    @classmethod
    def default(cls, profile: ServiceProfile) -> ConnectChoices:
        return cls()


class PropertiesDialog(QDialog):
    def __init__(
        self, profile: ServiceProfile, current: ConnectChoices, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.profile = profile
        self.setWindowTitle(f"{profile.service_name} Properties")
        config = session_config(profile)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.connection_type = QComboBox()
        self.connection_type.setObjectName("connection_type")
        for kind in config.supported_types:
            self.connection_type.addItem(TYPE_WORDS[kind], kind.cli_name)
        wanted = current.connection_type or config.default_type.cli_name
        self.connection_type.setCurrentIndex(max(0, self.connection_type.findData(wanted)))
        form.addRow("Connect &using:", self.connection_type)
        self.server = QComboBox()
        self.server.setObjectName("server")
        self.server.addItem("Automatic (the profile's order)", None)
        for entry in config.tunnel_entries:
            self.server.addItem(entry.name, entry.name)
        self.server.setCurrentIndex(max(0, self.server.findData(current.entry)))
        form.addRow("&VPN server:", self.server)
        layout.addLayout(form)

        self.dialup = QGroupBox("Dial-up: phone number and dialing rules")
        self.dialup.setObjectName("dialup")
        pops_form = QFormLayout(self.dialup)
        self.country = QComboBox()
        self.country.setObjectName("country")
        self.region = QComboBox()
        self.region.setObjectName("region")
        self.service_type = QComboBox()
        self.service_type.setObjectName("service_type")
        self.pops = QListWidget()
        self.pops.setObjectName("pops")
        self.dial_prefix = QLineEdit(profile.cms.get(OPENCM, "DialPrefix") or "")
        self.dial_prefix.setObjectName("dial_prefix")
        self.dial_prefix.setPlaceholderText("for example 9, for an outside line")
        self.dial_order = QLabel()
        self.dial_order.setObjectName("dial_order")
        self.dial_order.setWordWrap(True)
        pops_form.addRow("&Country:", self.country)
        pops_form.addRow("&Region:", self.region)
        pops_form.addRow("&Service type:", self.service_type)
        pops_form.addRow("&Phone number:", self.pops)
        pops_form.addRow("&Dial first:", self.dial_prefix)
        pops_form.addRow("Numbers dialled:", self.dial_order)
        layout.addWidget(self.dialup)
        self.note = QLabel()
        self.note.setObjectName("note")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

        self._offered: list[OfferedPop] = []
        self._filters = read_isp_filters(profile.cms)
        self._load_phonebook()
        self.connection_type.currentIndexChanged.connect(self._type_changed)
        self.country.currentIndexChanged.connect(self._country_changed)
        self.region.currentIndexChanged.connect(self._refresh_pops)
        self.service_type.currentIndexChanged.connect(self._refresh_pops)
        self.pops.currentRowChanged.connect(self._refresh_order)
        self.dial_prefix.textChanged.connect(self._refresh_order)
        self._type_changed()

    # -- the phone book ----------------------------------------------------------------------

    def _load_phonebook(self) -> None:
        if self.profile.phonebook_path() is None:
            return
        try:
            view = read_offered(self.profile)
        except OpencmError as error:
            self.note.setText(f"The phone book cannot be read: {error}")
            return
        self._offered = view.pops
        chosen_country = self.profile.cms.get(OPENCM, "PopCountry")
        self.country.addItem(ANY, None)
        for country in sorted({offered.pop.country for offered in view.pops}):
            self.country.addItem(f"+{country}", country)
        if chosen_country and chosen_country.strip().isdigit():
            self.country.setCurrentIndex(max(0, self.country.findData(int(chosen_country))))
        self.service_type.addItem(ANY, None)
        for name in self._filters.service_types:
            self.service_type.addItem(name, name)
        chosen_type = self.profile.cms.get(OPENCM, "PopServiceType")
        if chosen_type:
            self.service_type.setCurrentIndex(max(0, self.service_type.findData(chosen_type)))
        self._country_changed()
        chosen_region = self.profile.cms.get(OPENCM, "PopRegion")
        if chosen_region:
            self.region.setCurrentIndex(max(0, self.region.findData(chosen_region)))
        chosen_index = self.profile.cms.get(OPENCM, "PopIndex")
        for row in range(self.pops.count()):
            if (
                str(self.pops.item(row).data(Qt.ItemDataRole.UserRole))
                == (chosen_index or "").strip()
            ):
                self.pops.setCurrentRow(row)

    def _country_changed(self) -> None:
        country = self.country.currentData()
        self.region.blockSignals(True)
        self.region.clear()
        self.region.addItem(ANY, None)
        names = sorted(
            {
                offered.region_name
                for offered in self._offered
                if offered.region_name and (country is None or offered.pop.country == country)
            }
        )
        for name in names:
            self.region.addItem(name, name)
        self.region.blockSignals(False)
        self._refresh_pops()

    def selected_pops(self) -> list[OfferedPop]:
        """The POPs the country / region / service type choices leave (as ``opencm pops``)."""
        return select(
            self._offered,
            self._filters,
            country=self.country.currentData(),
            region=self.region.currentData(),
            service_type=self.service_type.currentData(),
        )

    def _refresh_pops(self) -> None:
        self.pops.blockSignals(True)
        self.pops.clear()
        for offered in self.selected_pops():
            item = QListWidgetItem(
                f"{offered.display_number}  {offered.pop.name}"
                + (f" ({offered.region_name})" if offered.region_name else "")
            )
            item.setData(Qt.ItemDataRole.UserRole, offered.pop.index)
            self.pops.addItem(item)
        self.pops.blockSignals(False)
        if self.pops.count():
            self.pops.setCurrentRow(0)
        self._refresh_order()

    def dial_order_numbers(self) -> list[str]:
        item = self.pops.currentItem()
        first = int(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None
        prefix = self.dial_prefix.text().strip()
        return [prefix + number for number in dial_numbers(self.selected_pops(), first=first)]

    def _refresh_order(self) -> None:
        numbers = self.dial_order_numbers()
        self.dial_order.setText(", ".join(numbers) if numbers else "no number matches")

    def _type_changed(self) -> None:
        kind = ConnectionType.from_name(str(self.connection_type.currentData()))
        self.dialup.setVisible(kind.dials and bool(self._offered))
        self.server.setEnabled(kind.tunnels)
        if kind.dials and not self._offered and self.profile.phonebook_path() is None:
            self.note.setText("This profile dials the numbers its administrator set.")

    # -- the result --------------------------------------------------------------------------

    def choices(self) -> ConnectChoices:
        kind = self.connection_type.currentData()
        return ConnectChoices(
            connection_type=str(kind) if kind else None,
            entry=self.server.currentData() if self.server.isEnabled() else None,
        )

    def accept(self) -> None:
        if self.dialup.isVisible() and not self._save_pop_choice():
            return
        super().accept()

    def _save_pop_choice(self) -> bool:
        item = self.pops.currentItem()
        values = {
            "PopCountry": str(self.country.currentData() or ""),
            "PopRegion": str(self.region.currentData() or ""),
            "PopServiceType": str(self.service_type.currentData() or ""),
            "PopIndex": str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else "",
            "DialPrefix": self.dial_prefix.text().strip(),
        }
        cms = self.profile.cms
        if all((cms.get(OPENCM, key) or "") == value for key, value in values.items()):
            return True
        if not os.access(self.profile.cms_path, os.W_OK):
            self.note.setText(
                "This profile is installed for all users: its phone number is chosen by the "
                "administrator. Cancel to keep it."
            )
            return False
        try:
            for key, value in values.items():
                cms.set(OPENCM, key, value)
            cms.save(self.profile.cms_path)
        except OpencmError as error:
            self.note.setText(str(error))
            return False
        return True


__all__ = ["ConnectChoices", "PropertiesDialog"]
