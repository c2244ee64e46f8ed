"""A real NetworkManager for tests: its own system bus, running inside a client namespace.

What it takes to run NetworkManager 1.42 on a machine without systemd (measured in the lab,
``shared/lab/REPORT.md``): udev (without it every device is "strictly unmanaged"), a system
D-Bus, and a base connection with a default route before a VPN activates ("Could not find
source connection" otherwise). Here the bus is a private ``dbus-daemon --system`` listening on a
socket in the lab's folder (``DBUS_SYSTEM_BUS_ADDRESS`` points NetworkManager, nmcli and
opencm at it), NetworkManager keeps its connections, state and pid file in the lab's folder and
never touches the host's DNS or host name. NetworkManager still uses ``/run/NetworkManager``,
so one such lab runs at a time on a machine (a lock file serialises them).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from opencm_lab.lab import Lab, LabError, NetnsPair

LOCK = Path("/tmp/opencm-lab-networkmanager.lock")
NM_CONF = """\
[main]
plugins=keyfile
no-auto-default=*
dns=none
rc-manager=unmanaged
hostname-mode=none
systemd-resolved=false
auth-polkit=false

[keyfile]
path={connections}

[logging]
level=INFO
domains=ALL,VPN_PLUGIN:TRACE
"""


def missing() -> list[str]:
    """What this machine lacks for a real NetworkManager lab."""
    needed = ["NetworkManager", "nmcli", "dbus-daemon", "udevadm"]
    absent = [name for name in needed if shutil.which(name) is None]
    if not Path("/usr/lib/NetworkManager/nm-openvpn-service").exists():
        absent.append("network-manager-openvpn")
    if not Path("/lib/systemd/systemd-udevd").exists():
        absent.append("udev")
    return absent


@dataclass
class RealNM:
    lab: Lab
    netns: str
    bus_address: str
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address, "HOME": str(self.home)}

    def nmcli(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["nmcli", *args], capture_output=True, text=True, env=self.env, timeout=60, check=False
        )
        if check and done.returncode != 0:
            raise LabError(f"nmcli {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def base_connection(self, pair: NetnsPair) -> None:
        """The client's veth as an NM ethernet connection with a default route (NM activates a
        VPN only over a connection that has one)."""
        self.nmcli("device", "set", pair.client_if, "managed", "yes")
        self.nmcli(
            "connection", "add", "type", "ethernet", "ifname", pair.client_if,
            "con-name", "opencm-base", "ipv4.method", "manual",
            "ipv4.addresses", f"{pair.client_ip}/30", "ipv4.gateway", pair.server_ip,
            "ipv6.method", "disabled",
        )  # fmt: skip
        self.nmcli("connection", "up", "opencm-base")

    def import_openvpn(self, ovpn: Path, name: str) -> str:
        """Import an ``.ovpn`` as NM connection ``name``; returns its UUID."""
        out = self.nmcli("connection", "import", "type", "openvpn", "file", str(ovpn))
        imported = out.split("(")[-1].split(")")[0].strip()
        self.nmcli("connection", "modify", imported, "connection.id", name)
        return imported


def _udevd() -> subprocess.Popen[bytes] | None:
    """systemd-udevd, unless one runs already (NetworkManager needs udev to manage devices)."""
    running = subprocess.run(["pgrep", "-x", "systemd-udevd"], capture_output=True, check=False)
    if running.returncode == 0:
        return None
    return subprocess.Popen(
        ["/lib/systemd/systemd-udevd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@contextlib.contextmanager
def start_networkmanager(lab: Lab, netns: str, *, lock_timeout: float = 300.0) -> Iterator[RealNM]:
    """A system bus and NetworkManager inside ``netns``; everything ends with the block."""
    absent = missing()
    if absent:
        raise LabError(f"a real NetworkManager needs: {', '.join(absent)}")
    folder = lab.workdir / "nm"
    (folder / "connections").mkdir(parents=True)
    (folder / "home").mkdir()
    conf = folder / "NetworkManager.conf"
    conf.write_text(NM_CONF.format(connections=folder / "connections"))
    LOCK.touch(exist_ok=True)
    with LOCK.open("r+") as lock:
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError("another NetworkManager lab runs on this machine") from None
                time.sleep(0.2)
        udevd = _udevd()
        try:
            bus = folder / "system_bus_socket"
            address = f"unix:path={bus}"
            lab.spawn(
                ["dbus-daemon", "--system", "--nofork", "--nopidfile", f"--address={address}"],
                log_name="nm-dbus.log",
            )
            _wait(lambda: bus.exists(), "the system bus did not start")
            subprocess.run(["udevadm", "trigger", "--action=add"], capture_output=True, check=False)
            subprocess.run(["udevadm", "settle", "-t", "5"], capture_output=True, check=False)
            env = {"DBUS_SYSTEM_BUS_ADDRESS": address, "HOME": str(folder / "home")}
            # In a mount namespace of its own, the lab's folders stand at /run/dbus (so that
            # nm-openvpn's helper, which openvpn starts without our environment, finds the bus
            # at its usual path) and /run/NetworkManager (nothing of the host's is touched).
            run_nm = folder / "run"
            run_nm.mkdir()
            script = (
                f"mount --bind {folder} /run/dbus 2>/dev/null || "
                f"{{ mkdir -p /run/dbus && mount --bind {folder} /run/dbus; }} && "
                f"mkdir -p /run/NetworkManager && mount --bind {run_nm} /run/NetworkManager && "
                f"exec NetworkManager --no-daemon --debug --config={conf} "
                f"--state-file={folder / 'NetworkManager.state'} "
                f"--pid-file={folder / 'NetworkManager.pid'}"
            )
            lab.spawn(
                ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                netns=netns,
                log_name="nm.log",
                env=env,
            )
            nm = RealNM(lab, netns, address, folder / "home")

            def answers() -> bool:
                done = subprocess.run(
                    ["nmcli", "-t", "general", "status"], capture_output=True, env=nm.env,
                    check=False,
                )  # fmt: skip
                return done.returncode == 0

            _wait(answers, f"NetworkManager did not answer (see {lab.workdir / 'nm.log'})")
            yield nm
        finally:
            # NetworkManager, the VPN plug-in and its openvpn all live in the lab's namespace;
            # then the bus. By PID, and only those.
            _end_namespace_processes(netns)
            for process in list(lab.processes):
                if process.args and "dbus-daemon" in str(process.args):
                    lab.kill(process, 15)
            if udevd is not None:
                udevd.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    udevd.wait(10)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _end_namespace_processes(netns: str) -> None:
    listed = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
    )
    for pid in (int(word) for word in listed.stdout.split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = subprocess.run(
            ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
        ).stdout.split()
        if not left:
            return
        time.sleep(0.1)
    for pid in (int(word) for word in left):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def _wait(ready: object, message: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not ready():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise LabError(message)
        time.sleep(0.1)


__all__ = ["RealNM", "missing", "start_networkmanager"]
