"""The menu entry ``opencm install`` writes, launched as a desktop would: its Exec line run as
written, with no terminal, on a real X server (Xvfb). The logon dialog appears, the password is
typed into it (xdotool, as a person types), and the profile's interactive action runs (it
would be skipped by the old ``opencm connect`` entry, which had nobody to ask)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from opencm.kit.build import build_kit
from opencm.kit.install import install_package
from opencm.kit.package import build_package
from opencm.kit.roots import user_scope
from tests.gui.conftest import write_image
from tests.gui.xserver import find_window, xdotool, xvfb
from tests.kit.conftest import make_keys
from tests.session.daemons import DaemonProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("Xvfb") is None or shutil.which("xdotool") is None,
        reason="needs Xvfb and xdotool",
    ),
]

KIT = """\
[service]
name = "Contoso VPN"
short = "CONTOSO"
version = 1
connection_types = ["direct"]
ask_password = true

[[vpn]]
name = "Main"
address = "vpn.contoso.example"
link = "openvpn"
config = "files/contoso.ovpn"

[[action]]
point = "pre-connect"
program = "files/ask.py"
parameters = "%UserName%"
description = "ask the user to accept the terms"
include = true

[files]
icon = "files/icon.png"
logo = "files/logo.png"
"""

#: The interactive action: records that it ran and with which user name.
ACTION = """#!{python}
import sys
with open({out!r}, "a") as out:
    out.write(" ".join(sys.argv[1:]) + "\\n")
"""


def exec_argv(desktop: Path) -> list[str]:
    """The Exec line as a desktop runs it (Desktop Entry spec: string escapes, then quoting)."""
    (line,) = [x for x in desktop.read_text().splitlines() if x.startswith("Exec=")]
    value = line.removeprefix("Exec=").replace("\\\\", "\\")
    return shlex.split(value)


def test_the_menu_entry_opens_the_logon_dialog_where_the_password_is_typed(
    tmp_path: Path,
) -> None:
    kit = tmp_path / "kit"
    (kit / "files").mkdir(parents=True)
    (kit / "kit.toml").write_text(textwrap.dedent(KIT))
    (kit / "files" / "contoso.ovpn").write_text("client\n")
    ran = tmp_path / "interactive-action-ran.txt"
    action = kit / "files" / "ask.py"
    action.write_text(ACTION.format(python=sys.executable, out=str(ran)))
    action.chmod(0o755)
    write_image(kit / "files" / "icon.png", 32, 32, "#2e8b57")
    write_image(kit / "files" / "logo.png", 320, 60, "#1f4e79")
    keys = make_keys(tmp_path / "keys")
    package = tmp_path / "CONTOSO-1.cmpkg.pyz"
    build_package(
        build_kit(kit).root,
        short_name="CONTOSO",
        service_name="Contoso VPN",
        version=1,
        secret_key=keys.secret,
        out=package,
    )
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "home" / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / "config"),
        # A desktop's own PATH: not the virtual environment's bin, where opencm-gui lives.
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    env.pop("QT_QPA_PLATFORM", None)
    installed = install_package(package, user_scope(env), trusted_keys=[keys.public])
    assert installed.record.desktop_entry is not None
    argv = exec_argv(Path(installed.record.desktop_entry))
    assert argv[:2] == [str(Path(sys.executable).parent / "opencm-gui"), "--profile"]

    daemon = DaemonProcess(tmp_path)
    daemon.start()
    try:
        with xvfb() as display, (tmp_path / "gui.log").open("wb") as log:
            app = subprocess.Popen(
                argv,
                env={**env, "DISPLAY": display, "OPENCM_SOCKET": str(daemon.socket)},
                stdin=subprocess.DEVNULL,  # no terminal: a menu entry has none
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                window = find_window(display, "Connect Contoso VPN")
                session = wait_for(daemon, lambda s: s["state"] == "ready")
                assert not ran.exists()  # nothing but pre-init before the logon screen
                xdotool(display, "windowfocus", "--sync", window)
                xdotool(display, "type", "--delay", "30", "jo")
                xdotool(display, "key", "Tab")
                xdotool(display, "type", "--delay", "30", "s3cret")
                xdotool(display, "key", "Return")
                wait_for(daemon, lambda s: s["state"] == "connected")
                # The interactive action ran, with the user name typed in the dialog.
                assert ran.read_text() == "jo\n"
                assert daemon.cli("disconnect").returncode == 0
                # The tray saw the session end; the client quits with nothing left to show.
                assert app.wait(30) == 0
            finally:
                if app.poll() is None:
                    app.kill()
                    app.wait(10)
    finally:
        daemon.stop()
    assert session["service"] == "Contoso VPN"


def wait_for(daemon: DaemonProcess, condition: object, limit: float = 30) -> dict[str, object]:
    assert callable(condition)
    deadline = time.monotonic() + limit
    while True:
        shown = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
        if shown and condition(shown[0]):
            return dict(shown[0])
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)


def test_opencm_gui_without_qt_says_what_to_install_not_a_traceback() -> None:
    """The menu entry runs `opencm-gui`, which every install has; Qt is an optional extra."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="gui_scripts") if e.name == "opencm-gui"]
    probe = (
        "import sys\n"
        "sys.modules['PySide6'] = None  # as on a machine without the gui extra\n"
        f"from {script.module} import {script.attr} as main\n"
        "sys.exit(main(['--profile', 'CONTOSO']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "opencm[gui]" in done.stderr and "opencm connect" in done.stderr
