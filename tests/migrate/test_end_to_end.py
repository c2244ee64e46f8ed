"""Import → build → install → plan → connect, over real OpenVPN and real strongSwan IKEv2.

Root only: network namespaces with unique names made by the lab, the client side inside one of
them (``[opencm] Netns``), the real daemon and CLI. The fixtures are written by the tests
(tests/windows_profiles.py): an Azure-shaped profile whose RAS entry says IKEv2, packed as a
gcab cabinet inside an IExpress-shaped ``.exe``, and an ``.ovpn`` with referenced key files and
options opencm must own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencm_lab.ikev2 import start_ikev2_server
from opencm_lab.lab import Lab, LabError, generate_pki, start_openvpn_server
from tests.kit.conftest import Roots, make_keys
from tests.session.daemons import REAL, DaemonProcess
from tests.windows_profiles import (
    AZURE_GATEWAY,
    AZURE_SHORT,
    ras_book,
    write_cab,
    write_iexpress,
    write_windows_profile,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
]


def opencm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opencm", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def build_and_install(kit: Path, keys_dir: Path, short: str) -> Path:
    """``opencm kit build`` (signed) and ``opencm install --all-users``; the installed .cmp."""
    keys = make_keys(keys_dir)
    built = opencm("kit", "build", str(kit), "--key", str(keys.secret_path))
    assert built.returncode == 0, built.stderr
    package = kit / "build" / f"{short}.cmpkg.pyz"
    installed = opencm("install", str(package), "--all-users", "--trust", str(keys.public_path),
                       "--json")  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return Path(json.loads(installed.stdout)["cmp"])


def set_netns(cmp: Path, short: str, netns: str) -> None:
    cms = cmp.parent / short / f"{short}.cms"
    done = opencm("profile", "set", str(cms), "opencm", "Netns", netns)
    assert done.returncode == 0, done.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def connect(daemon: DaemonProcess, cmp: Path) -> dict[str, object]:
    done = daemon.cli("connect", str(cmp), "--unattended", "--json")
    assert done.returncode == 0, done.stderr + daemon_log(daemon)
    status: dict[str, object] = json.loads(done.stdout)
    return status


def daemon_log(daemon: DaemonProcess) -> str:
    return (
        "\n".join(p.read_text() for p in daemon.logs.glob("*.log")) if daemon.logs.is_dir() else ""
    )


def wait_ended(daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + 30
    while True:
        sessions = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
        if not [s for s in sessions if not s["ended"]]:
            return
        assert time.monotonic() < deadline, "the session did not end"
        time.sleep(0.1)


# --- OpenVPN ------------------------------------------------------------------------------------


def admin_ovpn(folder: Path, text: str) -> Path:
    """The lab's inline config as an administrator keeps it: key and CA in files beside it
    (the key by an absolute path), plus options opencm must own."""
    folder.mkdir(parents=True)
    for tag, name in (("key", str(folder / "secret" / "client.key")), ("ca", "ca.crt")):
        match = re.search(rf"<{tag}>\n(.*?)</{tag}>\n", text, re.DOTALL)
        assert match is not None
        target = folder / name if not name.startswith("/") else Path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(match.group(1))
        text = text.replace(match.group(0), f"{tag} {name}\n")
    text += "script-security 2\nup /bin/true\ndaemon\nlog /tmp/never.log\n"
    path = folder / "client.ovpn"
    path.write_text(text)
    return path


def test_imported_ovpn_connects_over_real_openvpn_with_keys_0600(
    tmp_path: Path, roots: Roots
) -> None:
    if shutil.which("openvpn") is None:
        pytest.skip("needs openvpn")
    with Lab() as lab:
        try:
            pair = lab.netns_pair()
            server = start_openvpn_server(lab, pair, lab.pki())
        except LabError as error:
            pytest.skip(f"the OpenVPN lab cannot run here: {error}")
        source = admin_ovpn(tmp_path / "admin", server.client_config_text)
        kit = tmp_path / "kit"
        imported = opencm("import", str(source), "--out", str(kit), "--json")
        assert imported.returncode == 0, imported.stderr
        report = json.loads(imported.stdout)
        dropped = {i["what"] for i in report["items"] if i["outcome"] == "dropped"}
        assert {"script-security", "up", "daemon", "log"} <= dropped
        cmp = build_and_install(kit, tmp_path / "keys", "CLIENT")
        installed = cmp.parent / "CLIENT" / "client.ovpn"
        assert mode(installed) == 0o600  # it carries the private key inline
        assert str(tmp_path) not in installed.read_text()  # no path of the admin's machine
        set_netns(cmp, "CLIENT", pair.client_ns)
        daemon = DaemonProcess(tmp_path / "d", REAL)
        daemon.start()
        try:
            status = connect(daemon, cmp)
            assert status["state"] == "connected", status
            lab.ping(pair.client_ns, server.tunnel_ip)
            done = daemon.cli("disconnect", "CLIENT")
            assert done.returncode == 0, done.stderr
            wait_ended(daemon)
        finally:
            assert daemon.stop() == 0


# --- IKEv2 (strongSwan) with the profile's route file ------------------------------------------


def main_routes(netns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, "route", "show"], capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines()]


@pytest.fixture
def hosts_file() -> Iterator[list[Path]]:
    """``/etc/netns/<ns>/hosts`` files the test writes (``ip netns exec`` bind-mounts them)."""
    made: list[Path] = []
    yield made
    for path in made:
        path.unlink(missing_ok=True)
        if path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()


def test_imported_windows_profile_connects_over_ikev2_and_its_routes_follow_the_link(
    tmp_path: Path, roots: Roots, hosts_file: list[Path]
) -> None:
    if not Path("/usr/lib/ipsec/charon").exists() or shutil.which("unshare") is None:
        pytest.skip("needs strongSwan (strongswan-charon, libcharon-extra-plugins)")
    with Lab() as lab:
        pair = lab.netns_pair()
        pki = generate_pki(lab.workdir / "pki", server_name=AZURE_GATEWAY)
        gateway = start_ikev2_server(lab, pair, pki, auth="eap-tls")
        # The gateway's name resolves inside the client namespace only.
        hosts = Path("/etc/netns") / pair.client_ns / "hosts"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(f"127.0.0.1 localhost\n{pair.server_ip} {AZURE_GATEWAY}\n")
        hosts_file.append(hosts)
        routes = "".join(
            f"ADD {net.split('/')[0]} MASK 255.255.255.0 default METRIC default IF default\r\n"
            for net in gateway.networks
        )
        profile = write_windows_profile(
            tmp_path / "Cm",
            routes=routes,
            book=ras_book("contoso-vnet", strategy=7, device="WAN Miniport (IKEv2)"),
        )
        cab = write_cab(profile.root, tmp_path / "profile.cab")
        exe = write_iexpress(cab, tmp_path / "VpnClientSetupAmd64.exe")
        kit = tmp_path / "kit"
        imported = opencm(
            "import", str(exe), "--out", str(kit), "--ca", str(pki.ca_cert),
            "--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key), "--json",
        )  # fmt: skip
        assert imported.returncode == 0, imported.stderr + imported.stdout
        assert json.loads(imported.stdout)["link"] == "ikev2"
        cmp = build_and_install(kit, tmp_path / "keys", AZURE_SHORT)
        assert mode(cmp.parent / AZURE_SHORT / "client.key") == 0o600

        plan = opencm("actions", "plan", str(cmp), "--json")
        assert plan.returncode == 0, plan.stderr
        points = {p["point"]: p["actions"] for p in json.loads(plan.stdout)["points"]}
        [route_action] = points["post-connect"]
        assert route_action["runs"] is True
        assert route_action["program"] == "python:cmroute.SetRoutes"

        set_netns(cmp, AZURE_SHORT, pair.client_ns)
        expected = {f"{net} dev ipsec0 scope link" for net in gateway.networks}
        daemon = DaemonProcess(tmp_path / "d", REAL)
        daemon.start()
        try:
            status = connect(daemon, cmp)
            assert status["state"] == "connected", status
            assert expected <= set(main_routes(pair.client_ns)), main_routes(pair.client_ns)
            for net in gateway.networks:
                lab.ping(pair.client_ns, net.replace(".0/24", ".1"))
            done = daemon.cli("disconnect", AZURE_SHORT)
            assert done.returncode == 0, done.stderr
            wait_ended(daemon)
            assert not expected & set(main_routes(pair.client_ns))

            # Again, and this time the daemon dies: the restarted one ends the link, and the
            # routes go with it.
            connect(daemon, cmp)
            assert expected <= set(main_routes(pair.client_ns))
            daemon.kill9()
            assert expected <= set(main_routes(pair.client_ns)), "charon outlives the daemon"
            daemon.start()
            deadline = time.monotonic() + 20
            while expected & set(main_routes(pair.client_ns)):
                assert time.monotonic() < deadline, main_routes(pair.client_ns)
                time.sleep(0.1)
        finally:
            assert daemon.stop() == 0
