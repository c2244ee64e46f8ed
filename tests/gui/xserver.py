"""A private X server (Xvfb) for tests and screenshots that need a real display, and xdotool
to type into it as a person would."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def xvfb(size: str = "1024x768x24") -> Iterator[str]:
    """Start Xvfb on a free display number (it picks one: ``-displayfd``); yield ``:N``."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise FileNotFoundError("Xvfb is not installed (Debian: xvfb)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [binary, "-displayfd", str(write_end), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


def xdotool(display: str, *args: str, timeout: float = 30) -> str:
    done = subprocess.run(
        ["xdotool", *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return done.stdout


def find_window(display: str, name: str, limit: float = 30) -> str:
    deadline = time.monotonic() + limit
    while True:
        try:
            found = xdotool(display, "search", "--onlyvisible", "--name", name).split()
        except subprocess.CalledProcessError:
            found = []
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no window named {name!r} appeared")
        time.sleep(0.1)


__all__ = ["find_window", "xdotool", "xvfb"]
