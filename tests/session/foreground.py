"""``opencm connect --foreground`` as a process a test drives: wait until it is connected, act
(disconnect it, drop its link), then read its final status."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]


class ForegroundConnect:
    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opencm", "connect", *args, "--foreground", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, cwd=ROOT, env=None if env is None else dict(env),
        )  # fmt: skip
        self.lines: list[str] = []
        assert self.process.stderr is not None
        stderr = self.process.stderr
        self._reader = threading.Thread(target=lambda: self.lines.extend(stderr), daemon=True)
        self._reader.start()

    def wait_connected(self, limit: float = 90.0) -> None:
        deadline = time.monotonic() + limit
        while "opencm: connected\n" not in self.lines:
            assert self.process.poll() is None, self.lines
            assert time.monotonic() < deadline, f"never connected: {self.lines}"
            time.sleep(0.05)

    def finish(self, limit: float = 90.0) -> dict[str, Any]:
        """The final status, once the command has ended (the test made it end)."""
        try:
            out = self.process.communicate(timeout=limit)[0]
        finally:
            self.close()
        status: dict[str, Any] = json.loads(out)
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self._reader.join(10)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)
