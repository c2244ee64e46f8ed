"""The update runs as the session's first post-connect action, and never holds it up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from opencm.actions.libhost import LibraryHost
from opencm.phonebook.store import publish_release
from opencm.phonebook.update import installed_version
from opencm.session.log import read_log
from opencm.session.runner import Outcome
from opencm.testing import up
from tests.pbs.conftest import Keys, Server, free_port
from tests.pbs.test_client import install, real_release, snapshot
from tests.session.conftest import anyio_backend, host  # noqa: F401 (fixtures)
from tests.session.test_runner import Harness, connect_then_disconnect

pytestmark = pytest.mark.anyio


def harness(tmp_path: Path, host: LibraryHost, url: str, key_line: str) -> Harness:  # noqa: F811
    book_lines = [f"PhoneBookURL={url}", f"PhoneBookKey={key_line}", "[ISP]",
                  "PBFile=CONTOSO\\WORLD.pbk", "RegionFile=CONTOSO\\WORLD.pbr"]  # fmt: skip
    h = Harness(tmp_path, host, opencm=book_lines, tunnel=[up()])
    install(tmp_path / "CONTOSO", "WORLD", 7)
    return h


async def test_the_book_is_updated_before_the_profiles_post_connect_actions(
    keys: Keys,
    tmp_path: Path,
    host: LibraryHost,  # noqa: F811
    server_factory: Callable[..., Server],
) -> None:
    store = tmp_path / "store"
    publish_release(store, "WORLD", 10, real_release(keys, "WORLD", 10))
    server = server_factory(store)
    h = harness(tmp_path / "Cm", host, server.url, keys.public_line)
    await connect_then_disconnect(h)
    assert h.outcome is Outcome.DISCONNECTED
    service = tmp_path / "Cm" / "CONTOSO"
    assert installed_version(service, "WORLD") == 10
    assert (service / "WORLD.pbk").read_bytes() == snapshot("WORLD", 10).pbk
    order = [(r["kind"], r.get("point")) for r in read_log(h.log_path)]
    assert order.index(("phonebook-update", None)) + 1 == order.index(("action", "post-connect"))
    update = next(r for r in read_log(h.log_path) if r["kind"] == "phonebook-update")
    assert update["result"] == "applied"
    assert h.points() == ["pre-init", "pre-connect", "pre-tunnel", "post-connect", "disconnect"]


async def test_an_unreachable_service_does_not_stop_the_connection(
    keys: Keys,
    tmp_path: Path,
    host: LibraryHost,  # noqa: F811
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    h = harness(tmp_path / "Cm", host, url, keys.public_line)
    await connect_then_disconnect(h)
    assert h.outcome is Outcome.DISCONNECTED
    assert "post-connect" in h.points()
    assert installed_version(tmp_path / "Cm" / "CONTOSO", "WORLD") == 7
    update = next(r for r in read_log(h.log_path) if r["kind"] == "phonebook-update")
    assert update["result"] == "failed"
