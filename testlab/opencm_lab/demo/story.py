"""The demo's story, step by step; every step checks what it claims and the first failure ends it.

Administrator: a phone book is created and released (signed), posted to a Phone Book Service
running on 127.0.0.1, and a kit is built whose profile has actions at all nine points (each one
records the point and its expanded macros) and a monitored application; the package is signed.
User: the package is installed into a private home, the administrator releases a phone-book
change, and the user connects over a real OpenVPN server (two network namespaces with 10.x
addresses inside them only). The actions fire in order, the post-connect update fetches the
delta, closing the monitored application disconnects, and everything is removed again.

Without root (no namespaces), the connection part cannot run: the demo says so and stops after
the offline part (kit, plan, install, the pre-connect actions, uninstall).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from opencm.actions.api import ActionPoint
from opencm.process import end_child
from opencm_lab.demo.steps import StepFailed, Story, expect, indent, opencm

BOOK = "CONTOSO"

#: The action program the kit ships: one line per call, its arguments as the engine built them
#: (an argv, never a shell line, so the macros' values arrive exactly as expanded).
RECORDER = """\
#!/bin/sh
# opencm demo: append "<point> <macro values…>" to the log named by the first argument.
log=$1
shift
printf '%s\\n' "$*" >> "$log"
"""

#: The monitored application: runs until the demo "closes" it by creating the stop file.
MONITORED = """\
#!/bin/sh
# opencm demo: a monitored application; it exits when the file named by $1 appears.
while [ ! -e "$1" ]; do sleep 0.1; done
"""

#: Macros each point records: what the user (or the administrator's script) would see.
RECORDED_MACROS = (
    "service=%ServiceName% type=%ConnectionType% client=%ClientIPAddress%"
    " server=%TunnelServerAddress% error=%ErrorCode%"
)


def kit_toml(log: Path, stop_file: Path, *, pbs_url: str | None, vpn_address: str) -> str:
    actions = "\n".join(
        textwrap.dedent(
            f"""\
            [[action]]
            point = "{point.value}"
            program = "files/record.sh"
            parameters = "{log} {point.value} {RECORDED_MACROS}"
            description = "record {point.value}"
            include = true
            interactive = false
            {"" if point is ActionPoint.MONITORED else "wait = 30"}
            """
        )
        for point in ActionPoint
    )
    monitored = textwrap.dedent(
        f"""\
        [[action]]
        point = "monitored"
        program = "files/monitored.sh"
        parameters = "{stop_file}"
        description = "the monitored application"
        include = true
        interactive = false
        """
    )
    phonebook = (
        textwrap.dedent(
            f"""\
            [phonebook]
            name = "{BOOK}"
            dir = "phonebook"
            pbs_url = "{pbs_url}"
            public_key = "keys/pba.pub"

            """
        )
        if pbs_url
        else ""
    )
    return (
        textwrap.dedent(
            f"""\
            [service]
            name = "Contoso VPN"
            short = "CONTOSO"
            connection_types = ["direct", "double"]

            [[vpn]]
            name = "Main"
            address = "{vpn_address}"
            link = "openvpn"
            config = "files/contoso.ovpn"

            """
        )
        + phonebook
        + actions
        + "\n"
        + monitored
    )


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="opencm_lab.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the demo's temp folder")
    parser.add_argument(
        "--offline", action="store_true", help="only the part that needs no root and no network"
    )
    options = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="opencm-demo-"))
    story = Story("opencm demo")
    online = not options.offline and os.geteuid() == 0
    if not online and not options.offline:
        print("Not root: the connection part (network namespaces, OpenVPN) is skipped.")
    try:
        with ExitStack() as cleanup:
            Demo(work, cleanup).tell(story, online=online)
    except StepFailed as failure:
        print(f"\ndemo FAILED: {failure}", flush=True)
        return 1
    finally:
        if options.keep:
            print(f"(kept {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + story.summary())
    return 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes], name: str) -> None:
    """End a process the demo started, by its PID: SIGTERM, then SIGKILL after 5 s."""
    end_child(process, grace=5.0)
    print(f"    stopped {name} (PID {process.pid})")


class Demo:
    """The demo's folders, its private XDG home and the processes it started."""

    def __init__(self, work: Path, cleanup: ExitStack) -> None:
        self.work = work
        self.cleanup = cleanup
        self.kit = work / "kit"
        self.log = work / "actions.log"
        self.stop_file = work / "close-the-monitored-app"
        self.home = work / "home"
        self.workspace = work / "pba"
        self.store = work / "pbs-data"
        self.built = self.kit / "build" / "CONTOSO" / "CONTOSO.cmp"
        self.package = self.kit / "build" / "CONTOSO.cmpkg.pyz"
        self.installed = self.home / "share" / "opencm" / "Cm" / "CONTOSO.cmp"
        self.service_dir = self.installed.parent / "CONTOSO"
        self.socket = work / "run" / "opencm.sock"
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / "share"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_STATE_HOME": str(self.home / "state"),
            "OPENCM_SOCKET": str(self.socket),
        }
        self.pbs_url: str | None = None
        self.client_ns = ""
        self.tunnel_ip = ""
        self.vpn_address = "vpn.contoso.example"

    def opencm(self, *args: str | Path, check: bool = True) -> str:
        return opencm(*args, env=self.env, check=check)

    def pba(self, *args: str | Path) -> str:
        return self.opencm("phonebook", "--workspace", self.workspace, *args)

    def tell(self, story: Story, *, online: bool) -> None:
        if online:
            story.step("administrator: a phone book, released and signed", self.phonebook)
            story.step("administrator: Phone Book Service on 127.0.0.1, release posted", self.pbs)
            story.step("lab: two network namespaces and a real OpenVPN server", self.lab)
        story.step("administrator: a kit with actions at all nine points", self.write_kit)
        story.step("administrator: opencm kit build, signed with the admin key", self.build)
        story.step("administrator: opencm actions plan, before anything runs", self.plan)
        story.step("user: opencm install (signature checked first)", self.install)
        if online:
            story.step("administrator: a phone-book change, released and posted", self.change)
            story.step("user: opencm connect over OpenVPN", self.connect)
            story.step("the actions fired in order, macros expanded", self.actions_so_far)
            story.step("post-connect: the phone-book delta was fetched", self.updated)
            story.step("user closes the monitored app: disconnect", self.close_app)
        else:
            story.step("user: pre-connect actions run for real", self.pre_connect)
        story.step("user: opencm uninstall removes exactly what install added", self.uninstall)

    # -- administrator: phone book and PBS ---------------------------------------------------

    def phonebook(self) -> None:
        self.pba("keygen")
        self.pba("create", BOOK)
        self.pba("region", "add", BOOK, "Washington")
        self.pba("region", "add", BOOK, "Oregon")
        for name, region, area, access in (
            ("Seattle", "Washington", "425", "555-0101"),
            ("Tacoma", "Washington", "253", "555-0102"),
            ("Portland", "Oregon", "503", "555-0103"),
        ):
            self.pba("pop", "add", BOOK, "--country", "1", "--region", region, "--name", name,
                     "--area", area, "--access", access)  # fmt: skip
        release = json.loads(self.pba("release", BOOK, "--json"))
        expect(release["version"] == 1, f"the first release is version {release['version']}")

    def pbs(self) -> None:
        self.store.mkdir()
        token = json.loads(
            self.opencm("pbs", "token", "add", "demo", "--data", self.store, "--json")
        )
        token_file = self.work / "pbs.token"
        token_file.write_text(token["token"] + "\n")
        token_file.chmod(0o600)
        port = free_port()
        argv = [sys.executable, "-m", "opencm", "pbs", "serve", "--data", str(self.store),
                "--port", str(port), "--poll-interval", "0.2"]  # fmt: skip
        print(f"$ opencm pbs serve --data {self.store} --port {port} &")
        server = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        self.cleanup.callback(stop, server, "the Phone Book Service")
        base = f"http://127.0.0.1:{port}"
        self.pbs_url = f"{base}/pbserver/pbserver.dll"
        _wait_http(f"{base}/openapi.json", server)
        self.pba("post", BOOK, "--to", base, "--token-file", token_file)
        self.pbs_base = base
        self.token_file = token_file
        answer = _get(
            f"{self.pbs_url}?osarch=0&ostype=0&osver=1&cmver=1&lcid=1033&pbver=0&pb={BOOK}"
        )
        expect(answer[0] == 200, f"the PBS answers {answer[0]} for a client without the book")
        print(indent(f"GET …pbver=0&pb={BOOK} → {answer[0]} {answer[1]} ({answer[2]} bytes)"))

    # -- the lab -----------------------------------------------------------------------------

    def lab(self) -> None:
        from opencm_lab.lab import Lab, LabError, start_openvpn_server

        lab = self.cleanup.enter_context(Lab())
        try:
            pair = lab.netns_pair()
            server = start_openvpn_server(lab, pair, lab.pki())
        except LabError as error:
            raise StepFailed(f"the OpenVPN lab cannot run here: {error}") from error
        self.client_ns = pair.client_ns
        self.vpn_address = pair.server_ip
        self.tunnel_ip = server.tunnel_ip
        self.ovpn = server.client_config_text
        self.lab_ = lab
        print(indent(f"server namespace {pair.server_ns} ({pair.server_ip}), OpenVPN PID "
                     f"{server.process.pid}; client namespace {pair.client_ns}"))  # fmt: skip

    # -- administrator: the kit --------------------------------------------------------------

    def write_kit(self) -> None:
        files = self.kit / "files"
        files.mkdir(parents=True)
        for name, text in (("record.sh", RECORDER), ("monitored.sh", MONITORED)):
            (files / name).write_text(text)
            (files / name).chmod(0o755)
        ovpn = getattr(self, "ovpn", "client\ndev tun\nremote 10.0.0.1\n")
        (files / "contoso.ovpn").write_text(ovpn)
        if self.pbs_url:
            self.pba("export", BOOK, self.kit / "phonebook", "--released")
            (self.kit / "keys").mkdir()
            shutil.copy(self.workspace / "pba.pub", self.kit / "keys" / "pba.pub")
        (self.kit / "kit.toml").write_text(
            kit_toml(self.log, self.stop_file, pbs_url=self.pbs_url, vpn_address=self.vpn_address)
        )
        print(indent((self.kit / "kit.toml").read_text()[:700] + "…"))

    def build(self) -> None:
        self.opencm("kit", "keygen", self.work / "admin")
        self.opencm("kit", "build", self.kit, "--key", self.work / "admin.key")
        expect(self.built.is_file(), f"the build did not write {self.built}")
        expect(self.package.is_file(), f"the build did not write {self.package}")

    def plan(self) -> None:
        out = self.opencm("actions", "plan", self.built)
        for point in ActionPoint:
            expect(point.section in out, f"the plan does not mention [{point.section}]")

    # -- user --------------------------------------------------------------------------------

    def install(self) -> None:
        self.home.mkdir()
        self.opencm("install", self.package, "--user", "--trust", self.work / "admin.pub")
        listed = json.loads(self.opencm("list", "--user", "--json"))
        names = [entry["short_name"] for entry in listed]
        expect("CONTOSO" in names, f"opencm list does not show CONTOSO: {listed}")
        expect(self.installed.is_file(), f"install did not write {self.installed}")
        if self.client_ns:
            # A per-machine setting: run this profile's links inside the lab's client namespace.
            cms = self.service_dir / "CONTOSO.cms"
            self.opencm("profile", "set", cms, "opencm", "Netns", self.client_ns)

    def pre_connect(self) -> None:
        self.opencm("actions", "run", "pre-connect", self.installed, "--wait")
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        expect(len(lines) == 1 and lines[0].startswith("pre-connect service=Contoso VPN type=1"),
               f"{self.log} holds {lines!r}")  # fmt: skip
        print(indent(f"{self.log.name}: {lines}"))

    def change(self) -> None:
        self.pba("pop", "add", BOOK, "--country", "1", "--region", "Oregon", "--name", "Salem",
                 "--area", "503", "--access", "555-0104")  # fmt: skip
        release = json.loads(self.pba("release", BOOK, "--json"))
        expect(release["version"] == 2, f"the change was released as {release['version']}")
        self.pba("post", BOOK, "--token-file", self.token_file)

    def connect(self) -> None:
        self.socket.parent.mkdir()
        state, logs = self.work / "state", self.work / "logs"
        argv = [sys.executable, "-m", "opencm", "daemon", "--socket", str(self.socket),
                "--state-dir", str(state), "--log-dir", str(logs)]  # fmt: skip
        print(f"$ opencm daemon --socket {self.socket} … &")
        daemon = subprocess.Popen(argv, env=self.env)
        self.cleanup.callback(stop, daemon, "the opencm daemon")
        self.daemon = daemon
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            expect(daemon.poll() is None, f"the daemon exited with {daemon.returncode}")
            expect(time.monotonic() < deadline, "the daemon did not open its socket")
            time.sleep(0.05)
        status = json.loads(self.opencm("connect", self.installed, "--unattended", "--json"))
        expect(status.get("state") == "connected", f"not connected: {status}")
        self.client_ip = str(status.get("client_ip"))
        shown = json.loads(self.opencm("status", "--json"))["sessions"]
        expect(len(shown) == 1 and shown[0]["state"] == "connected", f"status shows {shown}")
        took = self.lab_.ping(self.client_ns, self.tunnel_ip)
        print(indent(f"ping {self.tunnel_ip} through the tunnel: answered in {took * 1000:.0f} ms"))

    def actions_so_far(self) -> None:
        lines = self.log.read_text().splitlines()
        print(indent(self.log.name + ":\n" + "\n".join(lines)))
        points = [line.split(" ", 1)[0] for line in lines]
        wanted = ["pre-init", "pre-connect", "pre-tunnel", "post-connect", "monitored"]
        expect(points == wanted, f"the actions ran as {points}, expected {wanted}")
        post = lines[3]
        expect(f"client={self.client_ip}" in post, f"post-connect saw no client address: {post}")
        expect("type=1" in post and "service=Contoso VPN" in post, f"macros not expanded: {post}")

    def updated(self) -> None:
        log = self.work / "logs" / "CONTOSO.log"
        events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        updates = [e for e in events if e.get("kind") == "phonebook-update"]
        expect(len(updates) == 1, f"the session log has {len(updates)} phone-book updates")
        print(indent(f"session log: phonebook-update {updates[0].get('result')}: "
                     f"{updates[0].get('message')}"))  # fmt: skip
        expect(updates[0].get("result") == "applied", f"the update was {updates[0]}")
        version = (self.service_dir / f"{BOOK}.ver").read_text().split()[0]
        expect(version == "2", f"the installed phone book is version {version}, expected 2")
        pops = json.loads(self.opencm("pops", self.installed, "--region", "Oregon", "--json"))
        names = [pop["name"] for pop in pops["pops"]]
        expect(names == ["Portland", "Salem"], f"the updated book offers {names} in Oregon")
        stats = json.loads(self.opencm("pbs", "stats", "--data", self.store, "--json"))
        print(indent(json.dumps(stats)[:400]))

    def close_app(self) -> None:
        self.stop_file.touch()
        deadline = time.monotonic() + 30
        # An ended session stays in status with its outcome; wait for that.
        while not all(s["ended"] for s in json.loads(self.opencm("status", "--json"))["sessions"]):
            expect(time.monotonic() < deadline, "the session did not end after the app closed")
            time.sleep(0.3)
        lines = self.log.read_text().splitlines()
        expect(lines[-1].startswith("disconnect "), f"no disconnect action last: {lines[-1]!r}")
        print(indent(lines[-1]))

    def uninstall(self) -> None:
        self.opencm("uninstall", "CONTOSO", "--user")
        left = sorted(
            p for p in (self.home / "share").rglob("*") if p.is_file()
        ) if (self.home / "share").exists() else []  # fmt: skip
        expect(not left, f"uninstall left files behind: {left}")


def _get(url: str) -> tuple[int, str, int]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
            return response.status, response.headers.get("Content-Type", ""), len(body)
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), 0


def _wait_http(url: str, process: subprocess.Popen[bytes], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        expect(process.poll() is None, f"the server exited with {process.returncode}")
        try:
            _get(url)
            return
        except OSError:
            expect(time.monotonic() < deadline, f"nothing answers at {url}")
            time.sleep(0.1)
