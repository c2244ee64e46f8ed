"""A custom dialer shipped as its own package, from pip install to uninstall ("Custom Dialers").

ACME's dialer (``tests/fixtures/acme-dialer``: its own ``pyproject.toml`` with an
``opencm.dialers`` entry point) is pip-installed, allowed by root, named by a kit, installed with
the signed package, connected (``dial``), shown as a dialog by a front end with a screen and
cancelled there (``dial_dialog`` and IDCANCEL), and told when the profile is uninstalled
(``entry_deleted``: RasCustomDeleteEntryNotify). Everything goes through ``opencm`` processes.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "tests" / "fixtures" / "acme-dialer"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the allow list must belong to root, as on a real machine"
    ),
]


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` of the ACME package (build and all) into a folder of its own, which the
    ``opencm`` processes get on their path: the test venv stays as it was."""
    target = tmp_path_factory.mktemp("acme-site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), str(PACKAGE)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"pip cannot build the ACME package here: {done.stderr[-500:]}")
    assert (target / "acme_dialer-1.0.dist-info" / "entry_points.txt").is_file()
    return target


class Machine:
    """A machine's folders moved under the test's tmp_path, and ``opencm`` run on it."""

    def __init__(self, tmp_path: Path, site: Path) -> None:
        self.tmp = tmp_path
        self.record = tmp_path / "acme.jsonl"
        etc = tmp_path / "etc" / "opencm"
        etc.mkdir(parents=True, mode=0o755)
        allow = etc / "dialers.allow"
        allow.write_text("acme   # ACME's dialer, installed with pip\n")
        allow.chmod(0o644)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(site),
            "ACME_RECORD": str(self.record),
            "HOME": str(tmp_path / "home"),
            "XDG_DATA_HOME": str(tmp_path / "home" / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "home" / "config"),
            "TMPDIR": str(tmp_path),
            "OPENCM_SYSTEM_CONFIG_DIR": str(etc),
            "OPENCM_SYSTEM_STATE_DIR": str(tmp_path / "var" / "lib" / "opencm"),
            "OPENCM_SYSTEM_APPLICATIONS_DIR": str(tmp_path / "usr" / "share" / "applications"),
        }

    def opencm(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "opencm", *args], capture_output=True, text=True,
            cwd=self.tmp, env=self.env, stdin=subprocess.DEVNULL, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    def calls(self) -> list[dict[str, object]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]


def read_until(fd: int, done: object, limit: float = 60.0) -> bytes:
    """Read the pty until ``done()`` is true."""
    seen = b""
    deadline = time.monotonic() + limit
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, seen
        if select.select([fd], [], [], 0.1)[0]:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_a_pip_installed_dialer_from_kit_to_uninstall(tmp_path: Path, acme_site: Path) -> None:
    machine = Machine(tmp_path, acme_site)
    (tmp_path / "acme.conf").write_text("server vpn.acme.test\n")
    monitored = '{point="monitored", program="/bin/true", interactive=false}'
    machine.opencm(
        "kit", "new", "kit", "--no-input", "--name", "ACME VPN", "--short", "ACME",
        "--vpn", "Main", "vpn.acme.test", "acme", "acme.conf", "--action", monitored,
    )  # fmt: skip
    machine.opencm("kit", "keygen", "admin")
    built = json.loads(machine.opencm("kit", "build", "kit", "--key", "admin.key", "--json").stdout)
    machine.opencm("install", built["package"], "--user", "--trust", "admin.pub")
    cms = tmp_path / "home" / "data" / "opencm" / "Cm" / "ACME" / "ACME.cms"
    assert "Link&Main=acme" in cms.read_text()

    # Unattended: the dialer's silent entry point; the monitored app ends, so does the session.
    result = machine.opencm("connect", "ACME", "--user", "--foreground", "--unattended", "--json")
    assert json.loads(result.stdout)["outcome"] == "disconnected"
    assert [c["kind"] for c in machine.calls()] == ["dial", "hang-up"]

    # A front end with a screen (the terminal): the dialer's dialog, and the user's Cancel.
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "opencm", "connect", "ACME", "--user", "--foreground"],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=machine.env,
        start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    try:
        read_until(master, lambda: "dialog-shown" in [c["kind"] for c in machine.calls()])
        process.send_signal(2)  # Ctrl-C at the terminal: the user's Cancel
        output = read_until(master, lambda: process.poll() is not None)
        assert process.wait(60) == 4, output  # cancelled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert [c["kind"] for c in machine.calls()][2:] == ["dialog-shown", "dialog-cancelled"]

    # Uninstall: the dialer hears that its entry is deleted, before the files go.
    removed = json.loads(machine.opencm("uninstall", "ACME", "--user", "--json").stdout)
    assert removed["dialers_notified"] == [{"entry": "Main", "dialer": "acme", "problem": None}]
    deleted = machine.calls()[-1]
    assert deleted["kind"] == "entry-deleted" and deleted["entry"] == "Main"
    assert deleted["settings"] == {"config": str(cms.parent / "acme.conf")}
    assert not cms.exists()
