"""A tiny step runner for the demo: numbered steps, timings, the first failure ends the run."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class StepFailed(Exception):
    """A demo step did not do what it should; the message says what."""


@dataclass
class Story:
    """Runs steps in order and remembers how long each took, for the summary."""

    title: str
    timings: list[tuple[str, float]] = field(default_factory=list)

    def step(self, name: str, action: Callable[[], None]) -> None:
        number = len(self.timings) + 1
        print(f"\n== [{number}] {name}", flush=True)
        started = time.monotonic()
        action()
        self.timings.append((name, time.monotonic() - started))

    def summary(self) -> str:
        width = max(len(name) for name, _ in self.timings)
        lines = [f"{self.title}: {len(self.timings)} steps, all passed"]
        lines += [f"  {name:<{width}}  {seconds:6.2f} s" for name, seconds in self.timings]
        lines.append(f"  {'total':<{width}}  {sum(s for _, s in self.timings):6.2f} s")
        return "\n".join(lines)


def opencm(*args: str | Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run the ``opencm`` CLI as a user would (same interpreter), echo it, return its stdout."""
    argv = [sys.executable, "-m", "opencm", *map(str, args)]
    print("$ opencm " + " ".join(map(str, args)), flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.stdout:
        print(indent(done.stdout), flush=True)
    if done.stderr:
        print(indent(done.stderr), flush=True)
    if check and done.returncode != 0:
        raise StepFailed(f"'opencm {' '.join(map(str, args))}' exited with {done.returncode}")
    return done.stdout


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)
