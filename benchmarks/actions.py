"""Benchmark of the custom-action engine: planning a large profile and the cost of dispatch.

Run: ``python benchmarks/actions.py`` (needs gcc for the library part).

Each figure is printed with an anchor measured in the same run, and the ratio:

1. parse + plan of a generated ``.cms`` with 2,000 actions (target < 50 ms), against
   ``configparser`` merely reading the same file;
2. a library action (out-of-process host, fork per call) against a direct in-process ctypes call
   of the same function (target overhead < 10 ms);
3. a Python action against calling the function directly (target overhead < 1 ms);
4. an executable action (start and wait) against a bare ``subprocess.Popen`` of the program.
"""

from __future__ import annotations

import configparser
import ctypes
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opencm.actions.api import ActionPoint, RunContext
from opencm.actions.engine import ActionEngine
from opencm.actions.libhost import LibraryHost
from opencm.actions.parse import parse_section
from opencm.actions.plan import plan_section
from opencm.actions.pyactions import PythonActions
from opencm.profile.ini import IniFile
from opencm.profile.model import ConnectionType

ACTIONS = 2000
NOOP_C = "int Noop(void *p, void *i, const char *line, unsigned int r) { return line[0] == 'x'; }\n"


def measure(function: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, minimum) seconds of ``repeat`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def row(
    label: str, subject: tuple[float, float], anchor_label: str, anchor: tuple[float, float]
) -> None:
    ratio = subject[0] / anchor[0] if anchor[0] else float("inf")
    overhead = subject[0] - anchor[0]
    print(
        f"{label:<42} median {subject[0] * 1e3:9.3f} ms (min {subject[1] * 1e3:8.3f})\n"
        f"    anchor {anchor_label:<33} median {anchor[0] * 1e3:9.3f} ms"
        f" (min {anchor[1] * 1e3:8.3f})\n"
        f"    ratio {ratio:9.1f}x, difference {overhead * 1e3:8.3f} ms\n"
    )


def generate_cms(folder: Path) -> bytes:
    """A profile with ACTIONS actions of every kind, flags and macros, CRLF like CMAK's."""
    lines = ["[Connection Manager]", "ServiceName=Bench VPN", "Tunnel=1", "[Connect Actions]"]
    service = folder / "BENCH"
    service.mkdir()
    tool = service / "tool"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(0o755)
    (service / "helper.so").write_bytes(b"\x7fELF")
    (service / "readme.txt").write_text("hello")
    kinds = [
        r'BENCH\tool /user %UserName% /pop "%PopName%" /type %ConnectionType%',
        r"BENCH\cmroute.dll,SetRoutes /Profile %PROFILE% /ServiceName %SERVICENAME%",
        r"BENCH\helper.so,Run %UserName% %Domain%",
        r"BENCH\readme.txt",
        "python:bench.noop %ServiceDir% %Interactive%",
    ]
    for index in range(ACTIONS):
        lines.append(f"{index}={kinds[index % len(kinds)]}")
        lines.append(f"{index}&Flags={(index * 7) % 64}")
        lines.append(f"{index}&Description=action number {index}")
    return ("\r\n".join(lines) + "\r\n").encode()


def context(folder: Path) -> RunContext:
    return RunContext(
        macros={"UserName": "jobrown", "PopName": "Seattle 28,800", "ServiceName": "Bench VPN"},
        connection_type=ConnectionType.DOUBLE,
        interactive=True,
        profile_dir=folder,
        timeout=10,
    )


def bench_plan(folder: Path) -> None:
    data = generate_cms(folder)
    path = folder / "BENCH" / "BENCH.cms"
    path.write_bytes(data)
    run_context = context(folder)
    # Entry points are discovered once per process (the CLI builds one engine per run).
    python = PythonActions({"bench.noop": lambda *_: 0})
    discovery = measure(lambda: PythonActions().has("cmroute.SetRoutes"), 10)
    python.has("cmroute.SetRoutes")
    ini = IniFile.parse(data, path)
    entries = ini.entries("Connect Actions")
    parsed = parse_section("Connect Actions", entries)

    def whole() -> int:
        engine = ActionEngine(IniFile.parse(data, path), python_actions=python)
        return len(engine.plan(ActionPoint.POST_CONNECT, run_context))

    def ini_only() -> int:
        return len(IniFile.parse(data, path).entries("Connect Actions"))

    def configparser_read() -> int:
        parser = configparser.RawConfigParser(strict=False)
        parser.read_string(data.decode())
        return len(parser["Connect Actions"])

    def plan_only() -> int:
        planned = plan_section(
            ActionPoint.POST_CONNECT,
            parsed,
            run_context,
            python=python,
            logon_allowed=lambda _action: False,
        )
        return len(planned)

    assert whole() == ACTIONS
    anchor = measure(configparser_read, 30)
    row(
        f"INI read + parse + plan, {ACTIONS} actions",
        measure(whole, 30),
        "configparser read",
        anchor,
    )
    row("  of which INI read (profile.ini)", measure(ini_only, 30), "configparser read", anchor)
    row(
        "  of which action parse (actions.parse)",
        measure(lambda: parse_section("Connect Actions", entries), 30),
        "configparser read",
        anchor,
    )
    row("  of which plan (actions.plan)", measure(plan_only, 30), "configparser read", anchor)
    print(f"entry-point discovery, once per process: median {discovery[0] * 1e3:.3f} ms\n")


def bench_library(folder: Path) -> None:
    if shutil.which("gcc") is None:
        print("library dispatch: skipped (gcc not installed)")
        return
    source = folder / "noop.c"
    source.write_text(NOOP_C)
    library = folder / "noop.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(source)], check=True)
    cms = IniFile.parse(
        f"[Connect Actions]\r\n0={library},Noop /user %UserName%\r\n0&Flags=16\r\n".encode()
    )
    direct = ctypes.CDLL(str(library))
    function = direct.Noop
    function.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32)
    function.restype = ctypes.c_int32
    anchor = measure(lambda: function(None, None, b"/user jobrown", 0), 2000)
    with LibraryHost() as host, ActionEngine(cms, library_host=host) as engine:
        run_context = context(folder)
        raw = measure(lambda: host.call(library, "Noop", "/user jobrown", 10), 300)
        full = measure(lambda: engine.run_point(ActionPoint.POST_CONNECT, run_context), 300)
        assert engine.run_point(ActionPoint.POST_CONNECT, run_context).ok
    row("library: host call (fork per call)", raw, "in-process ctypes call", anchor)
    row("library: engine run_point (plan+call)", full, "in-process ctypes call", anchor)


def bench_python(folder: Path) -> None:
    def noop(_parent: None, _instance: None, line: str, _reserved: int) -> int:
        return 0 if line else 1

    cms = IniFile.parse(b"[Connect Actions]\r\n0=python:noop /user %UserName%\r\n")
    engine = ActionEngine(cms, python_actions={"noop": noop})
    run_context = context(folder)
    assert engine.run_point(ActionPoint.POST_CONNECT, run_context).ok
    row(
        "python: engine run_point (plan+call)",
        measure(lambda: engine.run_point(ActionPoint.POST_CONNECT, run_context), 3000),
        "direct function call",
        measure(lambda: noop(None, None, "/user jobrown", 0), 3000),
    )


def bench_executable(folder: Path) -> None:
    true = shutil.which("true") or "/bin/true"
    cms = IniFile.parse(f"[Connect Actions]\r\n0={true} /user %UserName%\r\n".encode())
    engine = ActionEngine(cms)
    run_context = context(folder)

    def via_engine() -> None:
        (result,) = engine.run_point(ActionPoint.POST_CONNECT, run_context).results
        assert result.process is not None
        result.process.wait()

    def bare() -> None:
        subprocess.Popen([true, "/user", "jobrown"]).wait()

    row(
        "executable: run_point + wait",
        measure(via_engine, 200),
        "bare Popen + wait",
        measure(bare, 200),
    )


def main() -> None:
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"python {sys.version.split()[0]}, {ACTIONS} actions for the plan benchmark\n")
    with tempfile.TemporaryDirectory(prefix="ocm-bench-") as temp:
        root = Path(temp)
        bench_plan(root)
        bench_library(root)
        bench_python(root)
        bench_executable(root)


if __name__ == "__main__":
    main()
