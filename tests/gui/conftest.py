"""Desktop client tests: pytest-qt on Qt's offscreen platform, against a real daemon process.

The daemon is the suite's harness daemon (``tests/session/daemon_harness.py``: the real
:class:`~opencm.session.daemon.Daemon` with the process-holding dialer double), so every
dialog talks the real protocol over the real socket; the end-to-end tests use the real daemon
over real OpenVPN.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6", reason="the desktop client needs the opencm[gui] extra")

from PySide6.QtGui import QColor, QImage

from opencm.profile.model import ServiceProfile, load_profile
from tests.session.conftest import build_profile
from tests.session.daemons import DaemonProcess


def write_image(path: Path, width: int, height: int, color: str) -> Path:
    """A real PNG (Qt writes it), standing in for the kit's .ico/.bmp files."""
    image = QImage(width, height, QImage.Format.Format_ARGB32)
    image.fill(QColor(color))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert image.save(str(path))  # the format follows the suffix
    return path


def branded_profile(
    root: Path,
    *,
    cm: tuple[str, ...] = (),
    opencm: tuple[str, ...] = ("Credentials=password",),
    cmp: tuple[str, ...] = ("UserName=jo",),
    **options: object,
) -> tuple[ServiceProfile, Path]:
    """The session tests' recorder profile, with a logo, icons, a help file, a realm suffix
    and the .cmp's first-time user name."""
    service = root / "CONTOSO"
    write_image(service / "logo.png", 320, 60, "#1f4e79")
    write_image(service / "icon.png", 32, 32, "#2e8b57")
    write_image(service / "tray.png", 16, 16, "#ffa500")
    service.mkdir(parents=True, exist_ok=True)
    (service / "help.html").write_text("<h1>Contoso VPN help</h1>\n")
    _profile, record = build_profile(
        root,
        cm=(
            r"Logo=CONTOSO\logo.png",
            r"Icon=CONTOSO\icon.png",
            r"SmallIcon=CONTOSO\icon.png",
            r"TrayIcon=CONTOSO\tray.png",
            r"HelpFile=CONTOSO\help.html",
            "UserNameSuffix=@contoso.test",
            *cm,
        ),
        opencm=opencm,
        **options,  # type: ignore[arg-type]
    )
    cmp_path = root / "CONTOSO.cmp"
    cmp_path.write_bytes(cmp_path.read_bytes() + "".join(f"{k}\r\n" for k in cmp).encode())
    return load_profile(cmp_path), record


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path)
    process.start()
    yield process
    if process.process is not None and process.process.poll() is None:
        process.stop()


@pytest.fixture(autouse=True)
def _private_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Save password" writes into the test's own folder (no keyring on the test machine)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
