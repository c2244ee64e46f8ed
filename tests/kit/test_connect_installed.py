"""Issue 8's whole chain for an administrator and a user, with real OpenVPN (root only):

build → signed package → verify → install for all users → list → connect by short name
(actions fire in order, traffic flows through the tunnel) → the monitored app closes →
disconnect → uninstall leaves the roots exactly as they were.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from opencm_lab.lab import Lab, LabError, start_openvpn_server
from tests.kit.conftest import Roots, make_keys, tree

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
    pytest.mark.skipif(shutil.which("openvpn") is None, reason="needs openvpn"),
]

RECORD = '#!/bin/sh\nlog=$1\nshift\nprintf "%s\\n" "$*" >> "$log"\n'
MONITOR = '#!/bin/sh\nwhile [ ! -e "$1" ]; do sleep 0.05; done\n'


def kit_toml(record: Path, stop: Path, address: str) -> str:
    actions = "".join(
        f"""
        [[action]]
        point = "{point}"
        program = "files/record.sh"
        parameters = "{record} {point} %ConnectionType% %ClientIPAddress%"
        include = true
        interactive = false
        wait = 30
        """
        for point in ("pre-init", "pre-connect", "pre-tunnel", "post-connect", "disconnect")
    )
    return textwrap.dedent(
        f"""
        [service]
        name = "Contoso VPN"
        short = "CONTOSO"

        [[vpn]]
        name = "Main"
        address = "{address}"
        link = "openvpn"
        config = "files/contoso.ovpn"

        [[action]]
        point = "monitored"
        program = "files/monitor.sh"
        parameters = "{stop}"
        include = true
        interactive = false
        """
        + actions
    )


def opencm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opencm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_build_install_connect_by_short_name_disconnect_uninstall(
    tmp_path: Path, roots: Roots
) -> None:
    env = {**os.environ, **roots.env}
    record, stop = tmp_path / "record.txt", tmp_path / "stop"
    with Lab() as lab:
        try:
            pair = lab.netns_pair()
            server = start_openvpn_server(lab, pair, lab.pki())
        except LabError as error:
            pytest.skip(f"the OpenVPN lab cannot run here: {error}")
        kit = tmp_path / "kit"
        (kit / "files").mkdir(parents=True)
        for name, text in (("record.sh", RECORD), ("monitor.sh", MONITOR)):
            (kit / "files" / name).write_text(text)
            (kit / "files" / name).chmod(0o755)
        (kit / "files" / "contoso.ovpn").write_text(server.client_config_text)
        (kit / "kit.toml").write_text(kit_toml(record, stop, pair.server_ip))
        keys = make_keys(tmp_path / "keys")
        before = tree(roots.base)

        built = opencm(env, "kit", "build", str(kit), "--key", str(keys.secret_path))
        assert built.returncode == 0, built.stderr
        package = kit / "build" / "CONTOSO.cmpkg.pyz"
        trust = ("--trust", str(keys.public_path))
        assert opencm(env, "kit", "verify", str(package), *trust).returncode == 0
        installed = opencm(env, "install", str(package), "--all-users", *trust)
        assert installed.returncode == 0, installed.stderr
        assert opencm(env, "list", "--all-users").stdout.startswith("CONTOSO")
        cms = roots.all_users.profiles_dir / "CONTOSO" / "CONTOSO.cms"
        set_netns = opencm(env, "profile", "set", str(cms), "opencm", "Netns", pair.client_ns)
        assert set_netns.returncode == 0, set_netns.stderr

        errors = tmp_path / "connect.err"
        with errors.open("w") as stderr:
            session = subprocess.Popen(
                [sys.executable, "-m", "opencm", "connect", "CONTOSO", "--foreground",
                 "--unattended"],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while "post-connect" not in (record.read_text() if record.exists() else ""):
                assert session.poll() is None, errors.read_text()
                assert time.monotonic() < deadline, "no post-connect action within 30 s"
                time.sleep(0.05)
            lab.ping(pair.client_ns, server.tunnel_ip)
            stop.touch()  # the monitored app exits: unattended → disconnect
            assert session.wait(timeout=30) == 0, errors.read_text()
        finally:
            stop.touch()
            if session.poll() is None:
                session.kill()
                session.wait()

    lines = record.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "post-connect",
        "disconnect",
    ]
    post = lines[3].split()
    assert post[1] == "1" and post[2].startswith(server.tunnel_prefix + ".")
    removed = opencm(env, "uninstall", "CONTOSO", "--all-users")
    assert removed.returncode == 0, removed.stderr
    assert tree(roots.base) == before
