"""Imports (PBA format and CSV, all or nothing) and the documented limits at each boundary."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencm.errors import InputError, RefusedError
from opencm.phonebook import limits
from opencm.phonebook.importer import COLUMNS, _Planner, import_file
from opencm.phonebook.pbk import Pop
from opencm.phonebook.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "ws")
    workspace.create_book("WORLD")
    workspace.add_region("WORLD", "Seattle")
    return workspace


def pba_lines(start: int, count: int) -> str:
    return "".join(
        f"{i}, 1, 0, POP {i}, 425, 555-{i % 10000:04d}, 9600, 56000, 0, 96, ISP\n"
        for i in range(start, start + count)
    )


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_pba_format_adds_edits_and_deletes(ws: Workspace, tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "a.txt",
        "1, 1, 0, Redmond, 425, 555-0134, 9600, 56000, 0, 120, ISP\n"
        "2, 1, 1, Seattle, 206, 5550199, 9600, 56000, 0, 0\n",
    )
    assert import_file(ws, "WORLD", first) == (2, 0, 0)
    assert ws.pop("WORLD", 1) == Pop(
        1, 1, 0, "Redmond", "425", "555-0134", 9600, 56000, 0, 120, "ISP"
    )
    second = write(
        tmp_path, "b.txt", "# comment\n-2\n1, 1, 0, Redmond2, 425, 5550134, 0, 0, 0, 0,\n"
    )
    assert import_file(ws, "WORLD", second) == (0, 1, 1)
    assert [p.name for p in ws.pops("WORLD")] == ["Redmond2"]
    assert ws.undo("WORLD") == "import b.txt"
    assert [p.name for p in ws.pops("WORLD")] == ["Redmond", "Seattle"]


def test_csv_with_region_names_and_actions(ws: Workspace, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pops.csv",
        "action,index,country,region,name,access\n"
        'add,1,1,Seattle,"Down, town",5550001\n,2,44,0,London,5550002\n',
    )
    with pytest.raises(InputError, match="comma") as error:
        import_file(ws, "WORLD", path)
    assert (error.value.line, error.value.field) == (2, "name")
    path.write_text(
        "action,index,country,region,name,access\n"
        "add,1,1,Seattle,Downtown,5550001\n,2,44,0,London,5550002\n"
    )
    assert import_file(ws, "WORLD", path) == (2, 0, 0)
    assert ws.pop("WORLD", 1).region == 1
    path.write_text("action,index,country,access\nadd,1,1,5550001\n")
    with pytest.raises(InputError, match="already has POP 1"):
        import_file(ws, "WORLD", path)
    path.write_text("action,index,country,access\nedit,9,1,5550001\n")
    with pytest.raises(InputError, match="has no POP 9"):
        import_file(ws, "WORLD", path)


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("1, 1, 0, Redmond, 425, 5550134, fast, 56000, 0, 0, ISP", "min_speed", "whole number"),
        ("1, 1, 0, " + "N" * 31 + ", 425, 5550134, 0, 0, 0, 0, ISP", "name", "at most 30"),
        ("1, 1, 0, Redmond, 42512345678, 5550134, 0, 0, 0, 0, ISP", "area", "at most 10"),
        ("1, 1, 0, Redmond, 425, " + "5" * 36 + ", 0, 0, 0, 0, ISP", "access", "at most 35"),
        ("1, 1, 0, Redmond, 425, 555-CALL, 0, 0, 0, 0, ISP", "access", "digits"),
        ("1, 1, 9, Redmond, 425, 5550134, 0, 0, 0, 0, ISP", "region", "unknown region 9"),
        ("1, 1, 0, Redmond, 425, 5550134, 0, 0, 0, 1, ISP", "flags", "Sign On"),
        ("1, , 0, Redmond, 425, 5550134, 0, 0, 0, 0, ISP", "country", "required"),
        ("1, 1, 0, Redmond, 425, 5550134, 0, 0, 0, 0, " + "D" * 51, "dun", "at most 50"),
        ("1, 1, 0, Redmond, 425, 5550134, 0, 0", None, "11"),
    ],
)
def test_bad_line_names_file_line_field_and_changes_nothing(
    ws: Workspace, tmp_path: Path, line: str, field: str | None, message: str
) -> None:
    path = write(tmp_path, "bad.txt", pba_lines(100, 3) + line + "\n")
    with pytest.raises(InputError, match=message) as error:
        import_file(ws, "WORLD", path)
    assert (error.value.path, error.value.line, error.value.field) == (path, 4, field)
    assert ws.book("WORLD").pops == 0


def test_duplicate_pop_index_and_bad_encoding(ws: Workspace, tmp_path: Path) -> None:
    path = write(tmp_path, "dup.txt", pba_lines(1, 3) + pba_lines(2, 1))
    with pytest.raises(InputError, match="POP 2 appears twice \\(first on line 2\\)") as error:
        import_file(ws, "WORLD", path)
    assert error.value.line == 4
    path = write(
        tmp_path,
        "latin.txt",
        pba_lines(1, 2).encode() + "3, 1, 0, Zürich, 1, 1, 0, 0, 0, 0,\n".encode("latin-1"),
    )
    with pytest.raises(InputError, match="byte 0xfc is not ASCII") as error:
        import_file(ws, "WORLD", path)
    assert error.value.line == 3
    assert ws.book("WORLD").pops == 0


# -- limits at their boundaries -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ABCDEFGHI", "at most 8"),
        ("12345678", "all digits"),
        ("MY BOOK", "' '"),
        ("A.B", "'.'"),
        ("ÄBC", "'Ä'"),
        ("", "empty"),
    ],
)
def test_book_name_rules(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        limits.check_book_name(name)


def test_book_name_at_the_limit_passes() -> None:
    assert limits.check_book_name("ABCDEFGH") == "ABCDEFGH"
    assert limits.check_book_name("A1234567") == "A1234567"


def test_at_most_100_books(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    for number in range(limits.MAX_BOOKS):
        ws.create_book(f"B{number}")
    with pytest.raises(RefusedError, match="at most 100"):
        ws.create_book("ONEMORE")


def test_at_most_65000_pops(ws: Workspace, tmp_path: Path) -> None:
    import_file(ws, "WORLD", write(tmp_path, "a.txt", pba_lines(1, 32_000)))
    import_file(ws, "WORLD", write(tmp_path, "b.txt", pba_lines(32_001, 32_000)))
    import_file(ws, "WORLD", write(tmp_path, "c.txt", pba_lines(64_001, 999)))
    ws.add_pop("WORLD", Pop(0, 1, 0, "last", "", "1"))
    assert ws.book("WORLD").pops == 65_000
    with pytest.raises(RefusedError, match="65,001 POPs; at most 65,000"):
        ws.add_pop("WORLD", Pop(0, 1, 0, "one too many", "", "1"))
    with pytest.raises(RefusedError, match="65,001 POPs; at most 65,000"):
        import_file(ws, "WORLD", write(tmp_path, "d.txt", pba_lines(70_000, 1)))


def test_unposted_import_at_most_32000(ws: Workspace, tmp_path: Path) -> None:
    assert import_file(ws, "WORLD", write(tmp_path, "ok.txt", pba_lines(1, 32_000)))[0] == 32_000
    ws.undo("WORLD")
    with pytest.raises(
        RefusedError, match="32,001 POPs; a book not yet posted takes at most 32,000"
    ):
        import_file(ws, "WORLD", write(tmp_path, "big.txt", pba_lines(1, 32_001)))
    assert ws.book("WORLD").pops == 0


def test_posted_import_at_most_6000_per_post(ws: Workspace, tmp_path: Path) -> None:
    import_file(ws, "WORLD", write(tmp_path, "base.txt", pba_lines(1, 10)))
    ws.mark_posted("WORLD", 1)
    ws.add_pop("WORLD", Pop(20_000, 1, 0, "pending", "", "1"))  # one change already waiting
    assert import_file(ws, "WORLD", write(tmp_path, "ok.txt", pba_lines(11, 5_999)))[0] == 5_999
    ws.undo("WORLD")
    with pytest.raises(RefusedError, match="6,000 adds, edits and deletes, 1 more are waiting"):
        import_file(ws, "WORLD", write(tmp_path, "big.txt", pba_lines(11, 6_000)))


def test_at_most_32676_updates() -> None:
    limits.check_update_count(32_676)
    with pytest.raises(RefusedError, match="at most 32,676 times; this would be update 32,677"):
        limits.check_update_count(32_677)


def test_update_limit_applies_to_release(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.create_book("WORLD")
    ws.add_pop("WORLD", Pop(1, 1, 0, "", "", "1"))
    ws.db.execute("UPDATE books SET version = 32676")
    with pytest.raises(RefusedError, match="32,677"):
        ws.add_release("WORLD", lambda snapshot, previous: {})
    assert ws.book("WORLD").version == 32_676


@pytest.mark.parametrize(
    ("check", "at_limit", "over"),
    [
        (lambda v: limits.check_text(v, "name", 30), "N" * 30, "N" * 31),
        (limits.check_area, "1" * 10, "1" * 11),
        (limits.check_access, "5" * 35, "5" * 36),
        (lambda v: limits.check_text(v, "dun", 50), "D" * 50, "D" * 51),
    ],
)
def test_field_limits(check, at_limit: str, over: str) -> None:  # type: ignore[no-untyped-def]
    assert check(at_limit) == at_limit
    with pytest.raises(InputError, match="at most"):
        check(over)


def test_import_an_ms_cpsp_phone_book_with_its_region_file(ws: Workspace, tmp_path: Path) -> None:
    ws.add_region("WORLD", "Hyderabad")  # the book: 1 Seattle, 2 Hyderabad
    (tmp_path / "OLD.PBR").write_bytes(b"2\r\nHyderabad\r\nSeattle\r\n")
    pbk = write(
        tmp_path,
        "OLD.pbk",
        "23,1,2,Redmond,999,5550134,9600,56000,0,96,\r\n24,91,1,Hitec,40,55500123,,,,,,\r\n",
    )
    assert import_file(ws, "WORLD", pbk) == (2, 0, 0)
    assert ws.pop("WORLD", 23) == Pop(23, 1, 1, "Redmond", "999", "5550134", 9600, 56000, 0, 96)
    assert ws.pop("WORLD", 24).region == 2
    # Exported and imported again into another book: byte-identical.
    ws.create_book("COPY")
    for region in ws.regions("WORLD"):
        ws.add_region("COPY", region)
    out = tmp_path / "out"
    out.mkdir()
    (out / "WORLD.pbk").write_bytes(ws.export("WORLD").pbk)
    (out / "WORLD.pbr").write_bytes(ws.export("WORLD").pbr)
    import_file(ws, "COPY", out / "WORLD.pbk")
    assert ws.export("COPY").pbk == ws.export("WORLD").pbk


def test_pbk_import_is_strict_where_a_client_would_drop_entries(
    ws: Workspace, tmp_path: Path
) -> None:
    pbk = write(
        tmp_path,
        "OLD.pbk",
        "23,1,0,Redmond,999,5550134,9600,56000,0,96,\r\n24,91,0,Hitec,40,55500123,fast,,,,,\r\n",
    )
    with pytest.raises(InputError, match="cpsp-min-speed") as error:
        import_file(ws, "WORLD", pbk)
    assert (error.value.line, error.value.field) == (2, "Minimum Analog Speed")
    pbk.write_text("23,1,1,Redmond,999,5550134,9600,56000,0,96,\r\n")
    (tmp_path / "OLD.pbr").write_text("1\r\nAtlantis\r\n")
    with pytest.raises(InputError, match="no region 'Atlantis'"):
        import_file(ws, "WORLD", pbk)
    assert ws.book("WORLD").pops == 0


_PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126, exclude_characters=",")


def _mostly(valid: list[str], invalid: list[str]) -> st.SearchStrategy[str]:
    """Mostly valid values, so that whole lines are often valid and both paths are compared."""
    return st.sampled_from(valid * 6 + invalid)


_COLUMNS = [
    _mostly(["1", "42", "007"], ["0", "", "x1"]),
    _mostly(["1", "44"], ["", "0", "US"]),
    _mostly(["0", "1", "2", ""], ["3", "N"]),
    st.text(_PRINTABLE, max_size=32),
    _mostly(["425", "", "1234567890"], ["42-5", "12345678901", "4 2", "x"]),
    st.text("0123456789#*- ", max_size=37),
    _mostly(["", "0", "9600"], ["-1", "x"]),
    _mostly(["", "0", "56000"], ["1.5"]),
    _mostly(["", "0", "2"], ["-0"]),
    _mostly(["", "0", "96", "254"], ["97", "256", "x"]),
    st.text(_PRINTABLE | st.just("\t"), max_size=52),
]
_LINE_FIELDS = st.tuples(*_COLUMNS).map(list) | st.tuples(*_COLUMNS[:10]).map(list)


@settings(max_examples=400, deadline=None)
@given(_LINE_FIELDS, st.sampled_from([",", ", ", " , "]))
def test_fast_path_agrees_with_the_field_by_field_rules(fields: list[str], sep: str) -> None:
    line = sep.join(fields).strip()
    fast = _Planner(Path("f.txt"), ["North", "South"])
    slow = _Planner(Path("f.txt"), ["North", "South"])
    taken = fast.add_plain(line, 1)
    try:
        slow.add(dict(zip(COLUMNS, line.split(","), strict=False)), 1)
    except InputError:
        assert not taken, line
        return
    assert fast.plan.upserts == slow.plan.upserts or not taken, line
