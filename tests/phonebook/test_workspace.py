"""The SQLite workspace: books, POPs, regions, undo, releases, migrations, concurrency."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from opencm.errors import InputError, RefusedError
from opencm.phonebook.pbk import Pop, parse_pbk
from opencm.phonebook.pbr import parse_pbr
from opencm.phonebook.release import Snapshot, build_release
from opencm.phonebook.workspace import MIGRATIONS, Workspace
from tests.phonebook.conftest import Keys


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "ws")
    workspace.create_book("WORLD")
    return workspace


def release(ws: Workspace, keys: Keys, name: str = "WORLD") -> dict[str, bytes]:
    def build(snapshot: Snapshot, previous: dict[int, Snapshot]) -> dict[str, bytes]:
        return build_release(name, snapshot, previous, keys.secret)

    return ws.add_release(name, build)[1]


def test_schema_version_is_set_and_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Workspace(tmp_path).close()
    db = sqlite3.connect(tmp_path / "workspace.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(InputError, match="newer than this opencm knows"):
        Workspace(tmp_path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "workspace.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="not a usable workspace database"):
        Workspace(tmp_path)


def test_pops_regions_and_export(ws: Workspace) -> None:
    ws.add_region("WORLD", "Seattle")
    ws.add_region("WORLD", "Hyderabad")
    ws.add_pop("WORLD", Pop(5, 1, 1, "Redmond", "425", "555-0134", 9600, 56000, 0, 96, "ISP"))
    ws.add_pop("WORLD", Pop(0, 91, 2, "Hitec", "40", "5550100"))
    snap = ws.export("WORLD")
    assert parse_pbr(snap.pbr).names == ["Seattle", "Hyderabad"]
    pops = parse_pbk(snap.pbk, region_count=2).pops
    assert [(pop.index, pop.region) for pop in pops] == [(5, 1), (6, 2)]
    with pytest.raises(RefusedError, match="already has POP 5"):
        ws.add_pop("WORLD", Pop(5, 1, 0, "", "", "1"))
    with pytest.raises(InputError, match="unknown region 3"):
        ws.add_pop("WORLD", Pop(7, 1, 3, "", "", "1"))
    with pytest.raises(InputError, match="Sign On"):
        ws.add_pop("WORLD", Pop(7, 1, 0, "", "", "1", flags=1))


def test_region_delete_renumbers_and_undo_restores(ws: Workspace) -> None:
    for name in ("A", "B", "C"):
        ws.add_region("WORLD", name)
    ws.add_pop("WORLD", Pop(1, 1, 1, "a", "", "1"))
    ws.add_pop("WORLD", Pop(2, 1, 3, "c", "", "1"))
    with pytest.raises(RefusedError, match="1 POPs are in region 'A'"):
        ws.delete_region("WORLD", "A")
    before = ws.export("WORLD")
    ws.delete_region("WORLD", "a", force=True)
    assert ws.regions("WORLD") == ["B", "C"]
    assert [(p.index, p.region) for p in ws.pops("WORLD")] == [(1, 0), (2, 2)]
    assert ws.undo("WORLD") == "region delete a"
    assert ws.export("WORLD") == before


def test_undo_reverts_operations_newest_first_until_the_release(ws: Workspace, keys: Keys) -> None:
    ws.add_pop("WORLD", Pop(1, 1, 0, "one", "", "1"))
    release(ws, keys)
    ws.edit_pop("WORLD", 1, name="uno")
    ws.add_pop("WORLD", Pop(2, 1, 0, "two", "", "2"))
    ws.delete_pop("WORLD", 1)
    assert ws.book("WORLD").changes_since_post == 4
    assert ws.undo("WORLD") == "pop delete 1"
    assert ws.undo("WORLD") == "pop add 2"
    assert ws.undo("WORLD") == "pop edit 1"
    assert ws.pops("WORLD") == [Pop(1, 1, 0, "one", "", "1")]
    with pytest.raises(RefusedError, match="no unreleased change"):
        ws.undo("WORLD")


def test_release_needs_changes_and_keeps_history(ws: Workspace, keys: Keys) -> None:
    ws.add_pop("WORLD", Pop(1, 1, 0, "one", "", "1"))
    files = release(ws, keys)
    assert set(files) == {"full.cab", "full.cab.minisig"}
    with pytest.raises(RefusedError, match="no changes since version 1"):
        release(ws, keys)
    ws.add_pop("WORLD", Pop(2, 1, 0, "two", "", "2"))
    files = release(ws, keys)
    assert "delta-1.cab" in files
    assert [(h.version, h.added) for h in ws.history("WORLD")] == [(1, 1), (2, 1)]
    assert ws.release_files("WORLD", 2) == files


def test_search_matches_prefixes_any_case_and_index(ws: Workspace) -> None:
    ws.add_pop("WORLD", Pop(1, 1, 0, "Redmond", "425", "5550134"))
    ws.add_pop("WORLD", Pop(2, 1, 0, "Seattle", "206", "4255550"))
    ws.add_pop("WORLD", Pop(42, 1, 0, "100%_ok", "", "1"))
    assert [p.index for p in ws.search("WORLD", "red")] == [1]
    assert [p.index for p in ws.search("WORLD", "425")] == [1, 2]
    assert [p.index for p in ws.search("WORLD", "42")] == [1, 2, 42]
    assert [p.index for p in ws.search("WORLD", "att")] == []
    assert [p.index for p in ws.search("WORLD", "att", contains=True)] == [2]
    assert [p.index for p in ws.search("WORLD", "100%_")] == [42]
    assert [p.index for p in ws.search("WORLD", "1%")] == []


def test_post_target_is_remembered_and_a_second_is_refused(ws: Workspace) -> None:
    ws.set_post_target("WORLD", "/srv/pbs", force=False)
    ws.set_post_target("WORLD", "/srv/pbs", force=False)
    with pytest.raises(RefusedError, match="one home service"):
        ws.set_post_target("WORLD", "https://other.example", force=False)
    ws.set_post_target("WORLD", "https://other.example", force=True)
    assert ws.book("WORLD").post_target == "https://other.example"


def test_a_failed_command_leaves_nothing_behind(ws: Workspace) -> None:
    with pytest.raises(RuntimeError), ws.transaction() as db:
        db.execute("INSERT INTO books (name, created) VALUES ('HALF', 'x')")
        raise RuntimeError("power cut")
    assert [b.name for b in ws.books()] == ["WORLD"]


_WRITER = """
import sys
from pathlib import Path
from opencm.phonebook.pbk import Pop
from opencm.phonebook.workspace import Workspace
ws = Workspace(Path(sys.argv[1]))
start = int(sys.argv[2])
for index in range(start, start + 60):
    ws.add_pop("WORLD", Pop(index, 1, 0, "p", "", "1"))
    if index % 20 == 0:
        ws.add_region("WORLD", f"R{index}")
"""


def test_two_processes_at_once_never_corrupt_the_workspace(ws: Workspace) -> None:
    ws.close()
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(ws.directory), str(start)])
        for start in (1, 1001)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    with Workspace(ws.directory) as again:
        assert again.book("WORLD").pops == 120
        assert len(again.regions("WORLD")) == 6
        assert again.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert len(again.db.execute("SELECT * FROM operations").fetchall()) == 126
