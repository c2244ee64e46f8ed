"""The demo's story, step by step; every step checks what it claims and the first failure ends it.

An administrator builds a service profile whose custom actions record, at each of the nine
points, which point ran and the macros it was given; ``opencm actions plan`` shows what will run
before anything does; the pre-connect actions then run for real and their record is checked.
"""

from __future__ import annotations

import argparse
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
        _profile_story(story, work)
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


def _profile_story(story: Story, work: Path) -> None:
    kit = work / "kit"
    log = work / "actions.log"
    profile = kit / "build" / "CONTOSO" / "CONTOSO.cmp"

    def write_kit() -> None:
        (kit / "files").mkdir(parents=True)
        (kit / "files" / "record.sh").write_text(RECORDER)
        (kit / "files" / "record.sh").chmod(0o755)
        (kit / "files" / "contoso.ovpn").write_text("client\ndev tun\nremote 10.0.0.1\n")
        (kit / "kit.toml").write_text(kit_toml(log))
        print(indent((kit / "kit.toml").read_text()[:400] + "…"))

    def build() -> None:
        opencm("kit", "build", kit)
        expect(profile.is_file(), f"the build did not write {profile}")

    def plan() -> None:
        out = opencm("actions", "plan", profile)
        for point in ActionPoint:
            expect(point.section in out, f"the plan does not mention [{point.section}]")

    def pre_connect() -> None:
        opencm("actions", "run", "pre-connect", profile, "--wait")
        lines = expect_lines(log, ["pre-connect service=Contoso VPN type=1"])
        print(indent(f"{log.name}: {lines}"))

    story.step("administrator writes a kit with actions at all nine points", write_kit)
    story.step("opencm kit build: the service profile (.cmp/.cms/.inf)", build)
    story.step("opencm actions plan: what will run, before anything does", plan)
    story.step("opencm actions run pre-connect: the actions run for real", pre_connect)
