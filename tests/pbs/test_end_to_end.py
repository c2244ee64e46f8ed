"""The whole path with the real commands: the Phone Book Administrator makes and posts releases
to ``opencm pbs serve`` over HTTP; the client's post-connect update installs them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from opencm.pbs.autoupdate import auto_update
from opencm.phonebook.update import installed_version
from tests.pbs.conftest import Server
from tests.pbs.test_client import write_profile
from tests.pbs.test_upload import cli_token


def opencm(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "opencm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_post_then_update_full_and_delta(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    server = server_factory(store)
    token = cli_token(store, "pba")
    workspace = str(tmp_path / "pba")
    pba = ["phonebook", "--workspace", workspace]
    post_env = {"OPENCM_PBS_TOKEN": token}
    opencm(*pba, "keygen")
    opencm(*pba, "create", "WORLD")
    opencm(*pba, "pop", "add", "WORLD", "--country", "1", "--name", "A", "--access", "5550001")
    opencm(*pba, "release", "WORLD")
    opencm(*pba, "post", "WORLD", "--to", server.url, env=post_env)

    key_line = (tmp_path / "pba" / "pba.pub").read_text().splitlines()[1]
    profile = write_profile(tmp_path / "Cm", server.url, key_line, None)
    service = tmp_path / "Cm" / "CONTOSO"
    first = auto_update(profile)
    assert (first.result, first.version) == ("applied", 1), first.message
    assert first.outcome is not None and first.outcome.status == "full"
    assert b"5550001" in (service / "WORLD.pbk").read_bytes()

    opencm(*pba, "pop", "add", "WORLD", "--country", "1", "--name", "B", "--access", "5550002")
    opencm(*pba, "release", "WORLD")
    opencm(*pba, "post", "WORLD", "--to", server.url, env=post_env)
    second = auto_update(profile)
    assert (second.result, second.version) == ("applied", 2), second.message
    assert second.outcome is not None and second.outcome.status == "delta"
    assert b"5550002" in (service / "WORLD.pbk").read_bytes()
    assert installed_version(service, "WORLD") == 2
    assert auto_update(profile).result == "current"
