"""Executables run asynchronously; opencm's ``N&Wait`` makes the session wait for one.

Microsoft's "Custom Actions": an executable "is run asynchronously, which means that Connection
Manager starts the executable … and continues without waiting for the process to exit". With
``N&Wait=S`` *(opencm)* the session waits up to S seconds and the exit status counts. Real
processes, real OpenVPN between namespaces, the real daemon and CLI. Root only.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opencm_lab.lab import Lab, LabError, NetnsPair, start_openvpn_server
from tests.openvpn_lab import OPENVPN_LAB
from tests.session.conftest import build_profile, points_of
from tests.session.daemons import REAL, DaemonProcess

pytestmark = OPENVPN_LAB

#: A slow program: says it started, runs until the test lets it go, then exits with status 7.
SLOW = """#!{python}
import os, sys, time
open({started!r}, "w").close()
while not os.path.exists({release!r}):
    time.sleep(0.05)
open({ended!r}, "w").close()
sys.exit(7)
"""


@dataclass
class Slow:
    started: Path
    release: Path
    ended: Path


@dataclass
class Setup:
    lab: Lab
    pair: NetnsPair
    tmp: Path

    def profile(self, *wait: str) -> tuple[Path, Slow, Path]:
        """A profile whose pre-connect action is the slow program (``wait``: extra keys)."""
        root = self.tmp / "profile"
        slow = Slow(self.tmp / "started", self.tmp / "release", self.tmp / "ended")
        program = root / "CONTOSO" / "slow.py"
        program.parent.mkdir(parents=True)
        program.write_text(
            SLOW.format(
                python=sys.executable,
                started=str(slow.started),
                release=str(slow.release),
                ended=str(slow.ended),
            )
        )
        program.chmod(0o755)
        _, record = build_profile(
            root,
            points=["pre-tunnel", "post-connect", "on-error", "disconnect"],
            extra_actions={"pre-connect": [r"0=CONTOSO\slow.py", "0&Flags=16", *wait]},
            opencm=[f"Netns={self.pair.client_ns}"],
            servers=("Main",),
            modem=False,
        )
        server = start_openvpn_server(self.lab, self.pair, self.lab.pki())
        (root / "CONTOSO" / "main.ovpn").write_text(server.client_config_text)
        return root, slow, record


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with Lab() as lab:
        try:
            pair = lab.netns_pair()
        except LabError as error:
            pytest.skip(f"the lab cannot run here: {error}")
        yield Setup(lab, pair, tmp_path)
        (tmp_path / "release").touch()  # never leave the slow program behind


def wait_for(path: Path, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_slow_executable_does_not_delay_the_connection(setup: Setup, tmp_path: Path) -> None:
    root, slow, record = setup.profile()
    daemon = DaemonProcess(tmp_path, REAL)
    daemon.start()
    try:
        result = daemon.cli("connect", str(root), "--unattended", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["state"] == "connected"
        # The tunnel is up and carries traffic while the pre-connect program still runs.
        assert slow.started.exists() and not slow.ended.exists()
        setup.lab.ping(setup.pair.client_ns, _server_ip(daemon))
        slow.release.touch()
        wait_for(slow.ended)
        # Its exit status (7) does not count: still connected, no on-error.
        (shown,) = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
        assert shown["state"] == "connected"
        assert daemon.cli("disconnect").returncode == 0
    finally:
        slow.release.touch()
        daemon.stop()
    assert points_of(record) == ["pre-tunnel", "post-connect", "disconnect"]


def _server_ip(daemon: DaemonProcess) -> str:
    (shown,) = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
    return str(shown["server_ip"])


def test_with_the_wait_key_the_session_waits_and_the_exit_status_counts(
    setup: Setup, tmp_path: Path
) -> None:
    root, slow, record = setup.profile("0&Wait=120")
    daemon = DaemonProcess(tmp_path, REAL)
    daemon.start()
    try:
        connecting = daemon.popen_cli("connect", str(root), "--unattended", "--json")
        wait_for(slow.started)
        (shown,) = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
        assert shown["state"] == "pre-connect"
        slow.release.touch()
        out, err = connecting.communicate(timeout=120)
        assert connecting.returncode == 1, err
        status = json.loads(out)
        assert status["error"]["code"] == 7
        assert "slow.py failed 7" in status["error"]["message"]
    finally:
        slow.release.touch()
        daemon.stop()
    # Nothing after pre-connect ran (no pre-tunnel, no tunnel): the session waited, and the
    # exit status 7 ended the attempt.
    assert points_of(record) == ["on-error"]
