"""The long fuzz run: every surface of ``tests/fuzz/surfaces.py`` with many inputs, and figures.

    python -m tests.fuzz.campaign [--examples 20000] [--hang-seconds 10] [--surface NAME]

Prints, per surface: inputs tried, findings (exceptions other than opencm's own errors, i.e.
tracebacks a user would see), hangs (an input that took longer than ``--hang-seconds``) and
the time taken. Exits 1 if anything was found, with the smallest failing input for each.
A crash of the interpreter itself would end the run: its exit status says so.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType

from hypothesis import HealthCheck, given, settings

from tests.fuzz.surfaces import SURFACES, Surface


class Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


def run_surface(surface: Surface, examples: int, hang_seconds: int) -> dict[str, object]:
    tried = hangs = 0
    slowest = 0.0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(surface.strategy())
    def run(data: bytes) -> None:
        nonlocal tried, hangs, slowest
        tried += 1
        signal.alarm(hang_seconds)
        started = time.perf_counter()
        try:
            surface.check(data)
        except Hang:
            hangs += 1
            raise AssertionError(f"hang: over {hang_seconds} s on {len(data)} bytes") from None
        finally:
            signal.alarm(0)
            slowest = max(slowest, time.perf_counter() - started)

    started = time.perf_counter()
    finding = ""
    try:
        run()
    except Exception as error:  # a finding: shown with hypothesis' smallest example
        finding = f"{type(error).__name__}: {error}"[:2000]
    return {
        "surface": surface.name,
        "inputs": tried,
        "findings": 1 if finding and not hangs else 0,
        "hangs": hangs,
        "slowest_s": round(slowest, 3),
        "seconds": round(time.perf_counter() - started, 1),
        "detail": finding,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--hang-seconds", type=int, default=10)
    parser.add_argument("--surface", action="append", help="only surfaces containing this text")
    args = parser.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    load = os.getloadavg()[0]
    print(f"fuzz campaign: {args.examples} inputs per surface, load {load:.1f}", flush=True)
    print(f"{'surface':34} {'inputs':>8} {'findings':>9} {'hangs':>6} {'slowest':>8} {'time':>7}")
    found = 0
    for surface in SURFACES:
        if args.surface and not any(text in surface.name for text in args.surface):
            continue
        row = run_surface(surface, args.examples, args.hang_seconds)
        print(
            f"{surface.name:34} {row['inputs']:>8} {row['findings']:>9} {row['hangs']:>6}"
            f" {row['slowest_s']:>7}s {row['seconds']:>6}s",
            flush=True,
        )
        if row["detail"]:
            found += 1
            print(f"    {row['detail']}", flush=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
