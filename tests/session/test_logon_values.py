"""The .cmp's first-time user values are the logon prompt's defaults and are saved back there.

"How Connection Manager Works": the .cmp "contains user-related information"; by editing it,
administrators "can provide a first-time-only population of user information", which users
overwrite. Driven through ``opencm connect`` on a real terminal (a pty), as a user types.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from opencm.links.api import Credentials
from opencm.profile.ini import IniFile
from opencm.profile.model import load_profile
from opencm.session.credentials import logon_defaults, remember_logon
from tests.session.conftest import build_profile
from tests.session.daemons import ROOT


def first_time_values(cmp: Path, **values: str) -> None:
    ini = IniFile.load(cmp)
    for key, value in values.items():
        ini.set("Connection Manager", key, value)
    ini.save()


def test_defaults_come_from_the_cmp_and_typed_names_go_back(tmp_path: Path) -> None:
    profile, _ = build_profile(tmp_path, points=())
    assert profile.cmp_path is not None
    first_time_values(profile.cmp_path, UserName="jdoe", Domain="CORP", InternetUserName="isp1")
    assert logon_defaults(profile) == Credentials(username="jdoe", domain="CORP")
    assert logon_defaults(profile, "inet") == Credentials(username="isp1")
    remember_logon(profile, Credentials(username="alice", password="secret", domain="CORP"))
    text = profile.cmp_path.read_text()
    assert "UserName=alice" in text and "secret" not in text
    assert logon_defaults(load_profile(profile.cmp_path)).username == "alice"


def read_until(fd: int, words: bytes, limit: float = 60.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + limit
    while words not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, seen
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_the_terminal_prompt_offers_the_cmp_name_and_saves_what_was_typed(tmp_path: Path) -> None:
    # The connection stops at pre-connect (its program does not exist): no network needed.
    profile, _ = build_profile(
        tmp_path,
        points=(),
        opencm=["Credentials=password"],
        cm=["HideRememberPassword=1"],
        extra_actions={"pre-connect": ["0=/nonexistent/opencm-test-program", "0&Flags=16"]},
    )
    assert profile.cmp_path is not None
    first_time_values(profile.cmp_path, UserName="jdoe")
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "opencm", "connect", str(profile.cmp_path), "--foreground"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")},
    )
    os.close(slave)
    try:
        assert b"User name [jdoe]:" in read_until(master, b"User name [jdoe]:")
        os.write(master, b"alice\r")
        read_until(master, b"Password:")
        os.write(master, b"secret\r")
        rest = read_until(master, b"failed")
        assert process.wait(60) == 1, rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    cmp = IniFile.load(profile.cmp_path)
    assert cmp.get("Connection Manager", "UserName") == "alice"
    assert "secret" not in profile.cmp_path.read_text()
