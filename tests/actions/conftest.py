"""Helpers for the action tests: real profiles on disk, real compiled libraries, real programs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from opencm.actions.api import RunContext
from opencm.actions.libhost import LibraryHost
from opencm.profile.model import ConnectionType, ServiceProfile, load_profile

#: A custom-action library with the documented signature ("Incorporating Custom Actions"): it
#: records what it received, then returns 0, returns -5, crashes or hangs, depending on the entry
#: point called.
LIBRARY_SOURCE = r"""
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static int record(const char *name, void *parent, void *instance, const char *line,
                  unsigned int reserved) {
    FILE *out = fopen(RECORD_PATH, "a");
    if (!out) return -1;
    fprintf(out, "%s|parent=%s|instance=%s|reserved=%u|%s\n", name,
            parent ? "set" : "null", instance ? "set" : "null", reserved, line);
    fclose(out);
    return 0;
}

int Succeed(void *parent, void *instance, const char *line, unsigned int reserved) {
    return record("Succeed", parent, instance, line, reserved);
}

int Fail(void *parent, void *instance, const char *line, unsigned int reserved) {
    record("Fail", parent, instance, line, reserved);
    return -5;
}

int Crash(void *parent, void *instance, const char *line, unsigned int reserved) {
    record("Crash", parent, instance, line, reserved);
    raise(SIGSEGV);
    return 0;
}

int ReadStdin(void *parent, void *instance, const char *line, unsigned int reserved) {
    char buffer[16];
    return (int)read(0, buffer, sizeof buffer); /* 0: end of file, the host's pipe is not here */
}

int Hang(void *parent, void *instance, const char *line, unsigned int reserved) {
    record("Hang", parent, instance, line, reserved);
    for (;;) pause();
    return 0;
}
"""

#: An executable that writes its argv (without argv[0]) and working folder as JSON.
ARGV_DUMPER = """#!{python}
import json, os, sys
with open({out!r}, "w") as out:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd()}}, out)
"""


def compile_library(folder: Path, name: str, record: Path) -> Path:
    """Build the test library with gcc into ``folder/name``."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    source = folder / "action.c"
    source.write_text(LIBRARY_SOURCE)
    target = folder / name
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O1",
            f'-DRECORD_PATH="{record}"',
            "-o",
            str(target),
            str(source),
        ],
        check=True,
        timeout=60,
    )
    return target


def write_argv_dumper(path: Path, out: Path) -> Path:
    path.write_text(ARGV_DUMPER.format(python=sys.executable, out=str(out)))
    path.chmod(0o755)
    return path


def make_profile(
    root: Path, sections: Mapping[str, list[str]], *, extra: str = "", short: str = "CONTOSO"
) -> ServiceProfile:
    """An installed profile: ``root/SHORT.cmp`` and ``root/SHORT/SHORT.cms`` (CRLF, as CMAK
    writes them) with the given action sections."""
    service = root / short
    service.mkdir(parents=True, exist_ok=True)
    (root / f"{short}.cmp").write_bytes(
        b"[Profile Format]\r\nVersion=5\r\n\r\n[Connection Manager]\r\n"
        + f"CMSFile={short}\\{short}.cms\r\n".encode()
    )
    lines = [
        "[Connection Manager]",
        "ServiceName=Contoso VPN",
        "Dialup=1",
        "Direct=1",
        "Tunnel=1",
        "TunnelAddress=vpn.example.test",
    ]
    lines += extra.splitlines()
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        lines.extend(entries)
    if "[opencm]" not in extra and "opencm" not in sections:
        # A tunnelling profile names its link (profile check reports one that does not).
        lines += ["[opencm]", "VpnServer0=Main", "Link&Main=networkmanager", "Connection&Main=C"]
    (service / f"{short}.cms").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return load_profile(root / f"{short}.cmp")


def context_for(
    profile: ServiceProfile,
    *,
    connection_type: ConnectionType = ConnectionType.DIRECT,
    interactive: bool = True,
    logon: bool = False,
    timeout: float = 10.0,
    **macros: str,
) -> RunContext:
    return RunContext(
        macros={**profile.base_macros(), **macros},
        connection_type=connection_type,
        interactive=interactive,
        profile_dir=profile.profile_dir,
        logon=logon,
        timeout=timeout,
    )


@pytest.fixture
def host() -> Iterator[LibraryHost]:
    with LibraryHost() as library_host:
        yield library_host
