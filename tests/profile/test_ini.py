"""The lossless INI engine: byte-identical round trips, Windows look-ups, line-local edits."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencm.errors import InputError
from opencm.profile.ini import IniFile, Line

FIXTURES = Path(__file__).parent / "fixtures"
ALL_FIXTURES = sorted(FIXTURES.iterdir())


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=[p.name for p in ALL_FIXTURES])
def test_real_style_fixtures_round_trip_byte_identically(path: Path) -> None:
    data = path.read_bytes()
    assert IniFile.parse(data, path).render() == data


def test_fixture_shapes_are_what_they_claim() -> None:
    # Guards the fixtures themselves: each covers the case its name promises.
    assert b"\r\n" in (FIXTURES / "contoso.cms").read_bytes()
    assert not (FIXTURES / "contoso.cms").read_bytes().endswith(b"\n")
    assert (FIXTURES / "utf16.cmp").read_bytes().startswith(codecs.BOM_UTF16_LE)
    assert (FIXTURES / "utf8bom.cms").read_bytes().startswith(codecs.BOM_UTF8)
    assert b"\r\n" not in (FIXTURES / "contoso.inf").read_bytes()
    assert IniFile.load(FIXTURES / "cp1252.cms").encoding.codec == "cp1252"


def test_lookups_are_case_insensitive_and_the_first_section_and_key_win() -> None:
    ini = IniFile.load(FIXTURES / "contoso.cms")
    assert ini.get("connection MANAGER", "servicename") == "Contoso VPN"
    assert ini.get("Connection Manager", "RedialCount") == "99"
    assert ini.get("Strings", "KEY") == "one"
    assert ini.get("Strings", "Cert") == "${ServerCertificate}"
    assert ini.get("Server&CONTOSO Tunnel", "customauthdata0") == "0123ABCD"
    assert ini.get("ISP", "Mask&SignOn") == "0x0001"
    assert ini.get("ISP", "FilterA&") == "NosurchargeSignon"
    assert ini.get("Nope", "x") is None
    assert ini.get("ISP", "nope", "fallback") == "fallback"
    assert ini.sections().count("Connection Manager") == 2


def test_utf16_cmp_is_read() -> None:
    ini = IniFile.load(FIXTURES / "utf16.cmp")
    assert ini.encoding.label == "UTF-16LE with BOM"
    assert ini.get("Connection Manager", "CMSFile") == "CONTOSO\\CONTOSO.cms"


def test_ansi_and_utf8_bom_text() -> None:
    ansi = IniFile.load(FIXTURES / "cp1252.cms")
    assert ansi.get("Connection Manager", "ServiceName") == "Café Réseau"
    assert ansi.get("Connection Manager", "Indented") == "value with spaces"
    assert ansi.get("Connection Manager", "Quoted") == "quoted value"
    assert ansi.entries("Connection Manager")[3].raw_value == '"quoted value"'
    assert ansi.get("Connection Manager", "Empty") == ""
    utf8 = IniFile.load(FIXTURES / "utf8bom.cms")
    assert utf8.get("connection manager", "ServiceName") == "Zürich 東京"


def test_integers_follow_custom_actions_keys() -> None:
    ini = IniFile.parse(b"[S]\r\nA=1.1\r\nB=garbage\r\nC=0x0040\r\nD= 7 \r\nE=-3\r\n", "x.cms")
    assert ini.get_int("S", "A", 5) == 1
    assert ini.get_int("S", "B", 5) == 5
    assert ini.get_int("S", "C", 0) == 64
    assert ini.get_int("S", "D", 0) == 7
    assert ini.get_int("S", "E", 0) == -3
    assert ini.get_int("S", "missing", 9) == 9
    messages = [str(d) for d in ini.diagnostics]
    assert messages == [
        "x.cms:2: warning: [S] A='1.1' read as the integer 1",
        "x.cms:3: warning: [S] B='garbage' is not an integer; using 5",
    ]


def test_entries_and_content_lines_keep_line_numbers() -> None:
    inf = IniFile.load(FIXTURES / "contoso.inf")
    lines = inf.content_lines("Xnstall.CopyFiles")
    assert [(c.text, c.line) for c in lines] == [
        ("CONTOSO.cms,,,4", 6),
        ("CONTOSO.cmp", 7),
        ("CONTOSO.cmp", 8),
    ]
    cms = IniFile.load(FIXTURES / "contoso.cms")
    keys = [(e.key, e.line) for e in cms.entries("Connect Actions")]
    assert keys == [("0", 32), ("0&Flags", 33), ("0&Description", 34)]


def _changed_lines(before: bytes, after: bytes) -> list[tuple[bytes, bytes]]:
    old, new = before.split(b"\n"), after.split(b"\n")
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new, strict=True) if a != b]


def test_set_existing_key_touches_only_its_line() -> None:
    path = FIXTURES / "contoso.cms"
    before = path.read_bytes()
    ini = IniFile.parse(before)
    ini.set("CONNECTION MANAGER", "redialdelay", "10")
    assert _changed_lines(before, ini.render()) == [(b"RedialDelay=5\r", b"RedialDelay=10\r")]


def test_set_keeps_spacing_and_utf16() -> None:
    data = codecs.BOM_UTF16_LE + "[A]\r\n  Key = old  \r\n".encode("utf-16-le")
    ini = IniFile.parse(data)
    ini.set("a", "KEY", "new")
    assert ini.render() == codecs.BOM_UTF16_LE + "[A]\r\n  Key = new  \r\n".encode("utf-16-le")


def test_new_key_goes_after_the_sections_last_line_in_the_files_line_ending() -> None:
    ini = IniFile.parse(b"[A]\r\nx=1\r\n\r\n[B]\r\ny=2\r\n")
    ini.set("a", "z", "3")
    assert ini.render() == b"[A]\r\nx=1\r\nz=3\r\n\r\n[B]\r\ny=2\r\n"


def test_new_section_and_no_final_newline_kept() -> None:
    ini = IniFile.parse(b"[A]\nx=1")
    ini.set("B", "k", "v")
    assert ini.render() == b"[A]\nx=1\n\n[B]\nk=v"
    ini = IniFile.parse(b"[A]\nx=1")
    ini.set("A", "y", "2")
    assert ini.render() == b"[A]\nx=1\ny=2"


def test_delete_removes_one_line() -> None:
    ini = IniFile.parse(b"[A]\r\nx=1\r\ny=2\r\n")
    assert ini.delete("a", "X")
    assert not ini.delete("a", "X")
    assert ini.render() == b"[A]\r\ny=2\r\n"


def test_unwritable_values_are_refused_without_change() -> None:
    ini = IniFile.load(FIXTURES / "cp1252.cms")
    before = ini.render()
    with pytest.raises(InputError, match="cp1252"):
        ini.set("Connection Manager", "ServiceName", "東京")
    with pytest.raises(InputError, match="span lines"):
        ini.set("Connection Manager", "ServiceName", "a\nb")
    assert ini.render() == before


def test_save_is_atomic_and_keeps_other_lines(tmp_path: Path) -> None:
    target = tmp_path / "p.cms"
    target.write_bytes((FIXTURES / "contoso.cms").read_bytes())
    ini = IniFile.load(target)
    ini.set("Connection Manager", "RedialCount", "3")
    ini.save()
    again = IniFile.load(target)
    assert again.get("Connection Manager", "RedialCount") == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["p.cms"]


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.cms"):
        IniFile.load(tmp_path / "nope.cms")


# -- properties ---------------------------------------------------------------------------

_line_text = st.text(
    alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
    max_size=30,
)
_ini_like = st.lists(
    st.one_of(
        st.builds(lambda s: f"[{s}]", _line_text),
        st.builds(lambda k, v: f"{k}={v}", _line_text, _line_text),
        st.builds(lambda c: f";{c}", _line_text),
        _line_text,
    ),
    max_size=20,
)
_eols = st.sampled_from(["\r\n", "\n", "\r"])


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_any_bytes_round_trip(data: bytes) -> None:
    assert IniFile.parse(data).render() == data


@settings(max_examples=200)
@given(_ini_like, _eols, st.booleans(), st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_any_ini_text_round_trips(lines: list[str], eol: str, final: bool, codec: str) -> None:
    text = eol.join(lines) + (eol if final and lines else "")
    data = text.encode(codec, errors="surrogatepass")
    assert IniFile.parse(data).render() == data


_name = st.text(alphabet="abcXYZ019 &_-.", min_size=1, max_size=8).filter(
    lambda s: s.strip() != "" and s == s.strip()
)
_value = st.text(alphabet="abc XYZ019%&;=_-.", max_size=12).filter(lambda s: s == s.strip())


@settings(max_examples=200)
@given(_ini_like, _eols, _name, _name, _value)
def test_set_then_get_reads_back_and_other_sections_keep_their_answers(
    lines: list[str], eol: str, section: str, key: str, value: str
) -> None:
    ini = IniFile.parse(eol.join(lines).encode())
    others = {
        (s, e.key): ini.get(s, e.key)
        for s in ini.sections()
        if s.casefold() != section.casefold()
        for e in ini.entries(s)
    }
    ini.set(section, key, value)
    reparsed = IniFile.parse(ini.render())
    want = value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value
    assert reparsed.get(section, key) == want
    for (s, k), answer in others.items():
        assert reparsed.get(s, k) == answer


@settings(max_examples=200)
@given(_ini_like, _eols, _name, _name, _value)
def test_edits_change_at_most_the_touched_lines(
    lines: list[str], eol: str, section: str, key: str, value: str
) -> None:
    before = IniFile.parse(eol.join(lines).encode())
    original = [line.text for line in before.lines]
    existed = before.get(section, key) is not None
    before.set(section, key, value)
    after = [line.text for line in before.lines]
    if existed:
        assert len(after) == len(original)
        assert sum(a != b for a, b in zip(original, after, strict=True)) <= 1
    else:
        # Only insertions: every original line is still there, in order.
        remaining = iter(after)
        assert all(any(line == candidate for candidate in remaining) for line in original)


def test_direct_edits_of_the_line_list_keep_lookups_true() -> None:
    # Callers (the kit's rebuild) splice lines in place; look-ups must see the new shape.
    ini = IniFile.parse(b"[A]\r\nx=1\r\n")
    assert ini.get("B", "y") is None
    ini.lines.append(Line("[B]", "\r\n"))
    ini.lines.append(Line("y=2", "\r\n"))
    assert ini.get("B", "y") == "2"
    ini.lines[0:2] = [Line("[C]", "\r\n"), Line("x=3", "\r\n")]
    assert ini.get("A", "x") is None
    assert ini.get("C", "x") == "3"
    del ini.lines[0]
    assert ini.get("C", "x") is None
