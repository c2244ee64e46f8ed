"""The demo's story, step by step; every step checks what it claims and the first failure ends it.

An administrator builds a service profile whose custom actions record, at each of the nine
points, which point ran and the macros it was given; ``opencm actions plan`` shows what will run
before anything does; the pre-connect actions then run for real and their record is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

from opencm.actions.api import ActionPoint
from opencm.demo.steps import StepFailed, Story, expect, expect_lines, indent, opencm

#: The action program the kit ships: one line per call, its arguments as the engine built them
#: (an argv, never a shell line, so the macros' values arrive exactly as expanded).
RECORDER = """\
#!/bin/sh
# opencm demo: append "<point> <macro values…>" to the log named by the first argument.
log=$1
shift
printf '%s\\n' "$*" >> "$log"
"""


def kit_toml(log: Path) -> str:
    actions = "\n".join(
        textwrap.dedent(
            f"""\
            [[action]]
            point = "{point.value}"
            program = "files/record.sh"
            parameters = "{log} {point.value} service=%ServiceName% type=%ConnectionType%"
            description = "record {point.value}"
            include = true
            interactive = false
            """
        )
        for point in ActionPoint
    )
    return (
        textwrap.dedent(
            """\
            [service]
            name = "Contoso VPN"
            short = "CONTOSO"
            connection_types = ["direct", "double"]

            [[vpn]]
            name = "Main"
            address = "vpn.contoso.example"
            link = "openvpn"
            config = "files/contoso.ovpn"

            """
        )
        + actions
    )


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="opencm.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep the demo's temp folder")
    options = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="opencm-demo-"))
    story = Story("opencm demo")
    try:
        Demo(work).tell(story)
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


class Demo:
    """The demo's folders and the environment its commands run in (a private XDG home)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.kit = work / "kit"
        self.log = work / "actions.log"
        self.home = work / "home"
        self.built = self.kit / "build" / "CONTOSO" / "CONTOSO.cmp"
        self.package = self.kit / "build" / "CONTOSO.cmpkg.pyz"
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_DATA_HOME": str(self.home / "share"),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_STATE_HOME": str(self.home / "state"),
        }
        self.installed = self.home / "share" / "opencm" / "Cm" / "CONTOSO.cmp"

    def opencm(self, *args: str | Path, check: bool = True) -> str:
        return opencm(*args, env=self.env, check=check)

    def tell(self, story: Story) -> None:
        story.step("administrator: a kit with actions at all nine points", self.write_kit)
        story.step("administrator: opencm kit build, signed with the admin key", self.build)
        story.step("administrator: opencm actions plan, before anything runs", self.plan)
        story.step("user: opencm install (signature checked first)", self.install)
        story.step("user: pre-connect actions run for real", self.pre_connect)
        story.step("user: opencm uninstall removes exactly what install added", self.uninstall)

    def write_kit(self) -> None:
        files = self.kit / "files"
        files.mkdir(parents=True)
        (files / "record.sh").write_text(RECORDER)
        (files / "record.sh").chmod(0o755)
        (files / "contoso.ovpn").write_text("client\ndev tun\nremote 10.0.0.1\n")
        (self.kit / "kit.toml").write_text(kit_toml(self.log))
        print(indent((self.kit / "kit.toml").read_text()[:400] + "…"))

    def build(self) -> None:
        self.opencm("kit", "keygen", self.work / "admin")
        self.opencm("kit", "build", self.kit, "--key", self.work / "admin.key")
        expect(self.built.is_file(), f"the build did not write {self.built}")
        expect(self.package.is_file(), f"the build did not write {self.package}")

    def plan(self) -> None:
        out = self.opencm("actions", "plan", self.built)
        for point in ActionPoint:
            expect(point.section in out, f"the plan does not mention [{point.section}]")

    def install(self) -> None:
        self.home.mkdir()
        self.opencm("install", self.package, "--user", "--trust", self.work / "admin.pub")
        listed = json.loads(self.opencm("list", "--user", "--json"))
        names = [entry["short_name"] for entry in listed]
        expect("CONTOSO" in names, f"opencm list does not show CONTOSO: {listed}")
        expect(self.installed.is_file(), f"install did not write {self.installed}")

    def pre_connect(self) -> None:
        self.opencm("actions", "run", "pre-connect", self.installed, "--wait")
        lines = expect_lines(self.log, ["pre-connect service=Contoso VPN type=1"])
        print(indent(f"{self.log.name}: {lines}"))

    def uninstall(self) -> None:
        self.opencm("uninstall", "CONTOSO", "--user")
        left = sorted(p for p in self.home.rglob("*") if p.is_file())
        expect(not left, f"uninstall left files behind: {left}")
