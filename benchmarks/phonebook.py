"""Benchmark of the Phone Book Administrator on a 65,000-POP book.

Run: ``.venv/bin/python benchmarks/phonebook.py`` (needs gcab for the cab anchor).

Prints, each with its target:

1. import of 65,000 POPs into a new workspace (target < 3 s); "How Connection Manager Works" caps
one import file
   into an unposted book at 32,000 POPs, so the book is imported as 32,000 + 32,000 + 1,000;
2. a release with the full cab and five deltas (no target; reported);

Absolute times depend on what else the machine runs: the load average is printed with them.
3. delta build + apply for a change set of 500 edits, 100 adds, 100 deletes (target < 200 ms);
4. search by name, area code and access number prefix (target < 10 ms);
5. cab build of the full book against ``gcab -c -z`` on the same files in the same run
   (target ratio ≤ 1.5).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opencm.phonebook.cabinet import write_cab
from opencm.phonebook.delta import apply_delta, build_delta, format_delta, parse_delta
from opencm.phonebook.importer import import_file
from opencm.phonebook.pbk import Pop, format_pbk
from opencm.phonebook.release import Snapshot, build_release, version_file
from opencm.phonebook.workspace import Workspace
from opencm.signing import generate_keypair, load_secret_key

POPS = 65_000
CITIES = ["Redmond", "Seattle", "London", "Hyderabad", "Paris", "Berlin", "Tokyo", "Lagos"]


def measure(function: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, minimum) seconds of ``repeat`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), min(times)


def pba_line(index: int, rng: random.Random) -> str:
    city = rng.choice(CITIES)
    return (
        f"{index}, {rng.randint(1, 250)}, {rng.randint(0, 8)}, {city} {index}, "
        f"{rng.randint(100, 999)}, 555-{rng.randint(0, 9999):04d}, 9600, 56000, 0, "
        f"{rng.choice([0, 96, 2, 64])}, ISP{index % 7}\n"
    )


def report(label: str, seconds: float, target: str) -> None:
    print(f"{label:<46} {seconds * 1e3:10.1f} ms   {f'({target})' if target else ''}")


def main() -> int:
    rng = random.Random(65000)
    secret_bytes, _ = generate_keypair()
    secret = load_secret_key(secret_bytes)
    with tempfile.TemporaryDirectory(prefix="ocm-pb-bench-") as temp:
        root = Path(temp)
        files = []
        for number, (start, count) in enumerate(((1, 32_000), (32_001, 32_000), (64_001, 1_000))):
            path = root / f"import{number}.txt"
            path.write_text("".join(pba_line(i, rng) for i in range(start, start + count)))
            files.append(path)

        import_times = []
        for attempt in range(3):  # a fresh workspace each time; the last one is kept
            ws = Workspace(root / f"ws{attempt}")
            ws.create_book("WORLD")
            for region in range(8):
                ws.add_region("WORLD", f"Region {region + 1}")
            started = time.perf_counter()
            for path in files:
                import_file(ws, "WORLD", path)
            import_times.append(time.perf_counter() - started)
            assert ws.book("WORLD").pops == POPS
            if attempt < 2:
                ws.close()

        def build(snapshot: Snapshot, previous: dict[int, Snapshot]) -> dict[str, bytes]:
            return build_release("WORLD", snapshot, previous, secret)

        ws.add_release("WORLD", build)
        for _ in range(5):  # five change sets, so the sixth release carries five deltas
            for index in rng.sample(range(1, POPS + 1), 200):
                ws.db.execute(
                    "UPDATE pops SET access = ? WHERE book_id = 1 AND idx = ?",
                    (f"555-{rng.randint(0, 9999):04d}", index),
                )
            ws.db.execute(
                "INSERT INTO operations (book_id, command, created) VALUES (1, 'bench', 'now')"
            )
            if ws.book("WORLD").version < 5:
                ws.add_release("WORLD", build)
        started = time.perf_counter()
        _, release_files = ws.add_release("WORLD", build)
        release_seconds = time.perf_counter() - started
        deltas = sorted(name for name in release_files if name.endswith(".cab") and "delta" in name)

        base = ws.export("WORLD")
        pops = {pop.index: pop for pop in ws.pops("WORLD")}
        for index in rng.sample(sorted(pops), 500):
            pops[index] = _renamed(pops[index])
        for index in rng.sample(sorted(pops), 100):
            del pops[index]
        for index in range(POPS + 1, POPS + 101):
            pops[index] = Pop(index, 1, 0, "New", "425", "5550100")
        new_pbk = format_pbk(pops.values())

        def delta_round() -> None:
            delta = build_delta("WORLD", 6, 7, base.pbk, base.pbr, new_pbk, base.pbr)
            parsed = parse_delta(format_delta(delta))
            pbk, _ = apply_delta(parsed, base.pbk, base.pbr)
            assert pbk == new_pbk

        delta_median, delta_min = measure(delta_round, 9)

        queries = ["Seattle 12", "425", "555-12", "4711", "lond"]
        search_times = []
        for query in queries:

            def search(query: str = query) -> object:
                return ws.search("WORLD", query)

            search_times.append(measure(search, 20)[0])

        snapshot = Snapshot(7, base.pbk, base.pbr, base.pops)
        members = {
            "WORLD.pbk": snapshot.pbk,
            "WORLD.pbr": snapshot.pbr,
            "WORLD.ver": version_file("WORLD", snapshot),
        }
        ours_median, _ = measure(lambda: write_cab(members), 5)
        gcab = shutil.which("gcab")
        gcab_median = None
        if gcab:
            cab_dir = root / "cab"
            cab_dir.mkdir()
            for name, data in members.items():
                (cab_dir / name).write_bytes(data)

            def run_gcab() -> None:
                subprocess.run(
                    [gcab, "-c", "-z", "-n", str(root / "g.cab"), *members],
                    cwd=cab_dir,
                    check=True,
                    capture_output=True,
                )

            gcab_median, _ = measure(run_gcab, 5)
        ws.close()

    load = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"phone book benchmark: {POPS:,} POPs, {len(base.pbk):,} bytes of .pbk")
    print(f"command: {Path(sys.executable).name} {' '.join(sys.argv)}")
    print(f"load average at the end (1/5/15 min): {load} on {os.cpu_count()} CPUs")
    report(
        "import 65,000 POPs (3 files, median of 3)",
        statistics.median(import_times),
        "target < 3000 ms",
    )
    print(f"{'    (min)':<46} {min(import_times) * 1e3:10.1f} ms")
    report(f"release v6: full + {len(deltas)} deltas, signed", release_seconds, "reported")
    report("delta build + apply (700 changes, median)", delta_median, "target < 200 ms")
    print(f"{'    (min)':<46} {delta_min * 1e3:10.1f} ms")
    for query, seconds in zip(queries, search_times, strict=True):
        report(f"search {query!r} (median)", seconds, "target < 10 ms")
    report("cab build, ours (median)", ours_median, "")
    if gcab_median is not None:
        report("cab build, gcab -c -z (median, same files)", gcab_median, "anchor")
        ratio = ours_median / gcab_median
        print(f"{'cab build ratio ours / gcab':<46} {ratio:10.2f} x   (target ≤ 1.5)")
    else:
        print("gcab not installed: no cab anchor")
    return 0


def _renamed(pop: Pop) -> Pop:
    return dataclasses.replace(pop, name=pop.name[:25] + " x")


if __name__ == "__main__":
    sys.exit(main())
