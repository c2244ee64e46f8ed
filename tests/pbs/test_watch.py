"""New releases are seen through inotify, without polling."""

from __future__ import annotations

from pathlib import Path

import httpx2

from opencm.pbs.watch import StoreWatch
from tests.pbs.conftest import Keys, publish, start_server, wait_until


def test_a_release_is_served_without_polling(keys: Keys, tmp_path: Path) -> None:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 3)
    # An hour between polls: only inotify can make the new release and the new book visible.
    server = start_server(data, tmp_path, poll=3600)
    try:
        url = server.endpoint + "?pb=WORLD&pbver=2"
        assert httpx2.get(url, timeout=5).headers["x-opencm-pbs-version"] == "3"
        publish(keys, data, "WORLD", 4)
        wait_until(
            lambda: httpx2.get(url, timeout=5).headers["x-opencm-pbs-version"] == "4", timeout=30
        )
        publish(keys, data, "NEWBOOK", 1)
        wait_until(
            lambda: (
                httpx2.get(server.endpoint + "?pb=newbook&pbver=0", timeout=5).status_code == 200
            ),
            timeout=30,
        )
    finally:
        server.stop()


def test_the_watch_reports_a_new_current_and_nothing_else(keys: Keys, tmp_path: Path) -> None:
    data = tmp_path / "store"
    publish(keys, data, "WORLD", 1)
    watch = StoreWatch(data)
    try:
        assert watch.changed() is False
        (data / "WORLD" / "notes.txt").write_text("not a release")
        assert watch.changed() is False
        publish(keys, data, "WORLD", 2)
        assert watch.changed() is True
        assert watch.changed() is False
    finally:
        watch.close()
