"""A user's session through the root daemon runs from the daemon's private copy of the
all-users profile (tests/session/test_daemon_security.py); the phone book its post-connect
update applies there is installed back for every user."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opencm.phonebook.store import publish_release
from opencm.phonebook.update import installed_version
from tests.pbs.conftest import Keys, Server
from tests.pbs.test_client import install, real_release, snapshot
from tests.session.conftest import build_profile
from tests.session.test_daemon_security import Machine, machine  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def test_a_users_session_updates_the_all_users_phone_book(
    machine: Machine,  # noqa: F811 (the fixture)
    keys: Keys,
    tmp_path: Path,
    server_factory: Callable[..., Server],
) -> None:
    store = tmp_path / "store"
    publish_release(store, "WORLD", 10, real_release(keys, "WORLD", 10))
    server = server_factory(store)
    build_profile(
        machine.allusers,
        opencm=[
            f"PhoneBookURL={server.url}",
            f"PhoneBookKey={keys.public_line}",
            "[ISP]",
            "PBFile=CONTOSO\\WORLD.pbk",
            "RegionFile=CONTOSO\\WORLD.pbr",
        ],
    )
    service = machine.allusers / "CONTOSO"
    install(service, "WORLD", 7)
    for path in [machine.allusers, *machine.allusers.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.name == "record.py" else 0o644)
    machine.daemon.start()
    answer = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    assert answer["ok"], answer
    deadline = time.monotonic() + 30
    while installed_version(service, "WORLD") != 10:
        assert time.monotonic() < deadline, "the all-users book was not updated"
        time.sleep(0.1)
    assert (service / "WORLD.pbk").read_bytes() == snapshot("WORLD", 10).pbk
    assert {(p.stat().st_uid, p.stat().st_mode & 0o022) for p in service.glob("WORLD.*")} == {
        (0, 0)
    }
    assert machine.as_nobody({"op": "disconnect"})["ok"]
    assert machine.daemon.stop() == 0
