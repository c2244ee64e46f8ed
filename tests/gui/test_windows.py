"""Properties (connection type, server, the POP picker from the same code as ``opencm pops``,
dialing rules), the Connections window, and the guard that the rest of opencm imports no Qt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDialog
from pytestqt.qtbot import QtBot

from opencm.cli.main import cli
from opencm.gui.connections import ConnectionsWindow, InstalledConnection
from opencm.gui.properties import ConnectChoices, PropertiesDialog
from opencm.profile.model import load_profile
from tests.gui.conftest import write_image
from tests.phonebook.test_select import profile_with_book
from tests.session.conftest import build_profile

ROOT = Path(__file__).parents[2]


def pops_cli(profile: Path, *args: str) -> list[str]:
    result = CliRunner().invoke(cli, ["pops", str(profile), "--json", *args])
    assert result.exit_code == 0, result.output
    dial_order: list[str] = json.loads(result.stdout)["dial_order"]
    return dial_order


def test_the_pop_picker_offers_what_opencm_pops_lists_and_saves_the_choice(
    qtbot: QtBot, tmp_path: Path
) -> None:
    profile = profile_with_book(tmp_path, opencm=["ModemDevice=/dev/ttyS9", "Link&Main=openvpn"])
    dialog = PropertiesDialog(profile, ConnectChoices())
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.dialup.isVisible()
    countries = [dialog.country.itemText(i) for i in range(dialog.country.count())]
    assert countries == ["(any)", "+1", "+44"]
    dialog.country.setCurrentIndex(dialog.country.findData(1))
    dialog.region.setCurrentIndex(dialog.region.findData("Washington"))
    shown = [dialog.pops.item(i).text() for i in range(dialog.pops.count())]
    assert len(shown) == 2 and all("(Washington)" in line for line in shown)
    dialog.pops.setCurrentRow(1)
    qtbot.keyClicks(dialog.dial_prefix, "9,")
    # The numbers dialled, in order: the same as `opencm pops` gives for these choices.
    cms_path = profile.cms_path
    expected = pops_cli(cms_path, "--country", "1", "--region", "Washington", "--pop", "2")
    assert dialog.dial_order_numbers() == ["9," + number for number in expected]
    assert dialog.dial_order.text() == ", ".join("9," + number for number in expected)
    with qtbot.waitSignal(dialog.accepted):
        qtbot.keyClick(dialog.dial_prefix, Qt.Key.Key_Return)  # Enter = OK
    saved = load_profile(cms_path).cms
    assert [saved.get("opencm", k) for k in ("PopCountry", "PopRegion", "PopIndex")] == [
        "1",
        "Washington",
        "2",
    ]
    assert saved.get("opencm", "DialPrefix") == "9,"


def test_connection_type_and_server_are_the_connections_choices(
    qtbot: QtBot, tmp_path: Path
) -> None:
    profile, _ = build_profile(tmp_path / "profile")
    dialog = PropertiesDialog(profile, ConnectChoices())
    qtbot.addWidget(dialog)
    dialog.show()
    kinds = [dialog.connection_type.itemData(i) for i in range(dialog.connection_type.count())]
    assert kinds == ["direct", "double"]
    servers = [dialog.server.itemText(i) for i in range(dialog.server.count())]
    assert servers == ["Automatic (the profile's order)", "Main", "Backup"]
    dialog.server.setCurrentIndex(2)
    assert dialog.choices() == ConnectChoices(connection_type="direct", entry="Backup")
    with qtbot.waitSignal(dialog.rejected):
        qtbot.keyClick(dialog.server, Qt.Key.Key_Escape)  # Esc = Cancel
    assert dialog.result() == QDialog.DialogCode.Rejected


def test_the_connections_window_lists_profiles_with_their_icons_and_opens_one(
    qtbot: QtBot, tmp_path: Path
) -> None:
    icon = write_image(tmp_path / "icon.png", 32, 32, "#2e8b57")
    window = ConnectionsWindow(
        [
            InstalledConnection("Contoso VPN", tmp_path / "CONTOSO.cmp", icon, "user"),
            InstalledConnection("Fabrikam Dial-up", tmp_path / "FABRIKAM.cmp", None, "all users"),
        ]
    )
    qtbot.addWidget(window)
    window.show()
    names = [window.list.item(i).text() for i in range(window.list.count())]
    assert names == ["Contoso VPN", "Fabrikam Dial-up"]
    assert not window.list.item(0).icon().isNull() and not window.list.item(1).icon().isNull()
    window.list.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is window.list)
    qtbot.keyClick(window.list, Qt.Key.Key_End)  # icons flow left to right
    with qtbot.waitSignal(window.opened) as opened:
        qtbot.keyClick(window.list, Qt.Key.Key_Return)
    assert opened.args == [tmp_path / "FABRIKAM.cmp"]


def test_no_profiles_says_how_to_install_one(qtbot: QtBot) -> None:
    window = ConnectionsWindow([])
    qtbot.addWidget(window)
    assert "opencm install" in window.hint.text()


def test_the_core_package_imports_no_qt() -> None:
    """Headless installs need no Qt: importing every opencm module but opencm.gui loads none."""
    code = """
import pkgutil, importlib, sys, opencm
for module in pkgutil.walk_packages(opencm.__path__, "opencm."):
    if module.name.startswith("opencm.gui") or module.name.endswith("__main__"):
        continue
    importlib.import_module(module.name)
qt = sorted(name for name in sys.modules if name.split(".")[0] in ("PySide6", "shiboken6"))
print(len(sys.modules), qt)
"""
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    count, qt = done.stdout.split(" ", 1)
    assert int(count) > 100  # the walk really imported opencm
    assert qt.strip() == "[]"
