"""Reading action sections: numbering, the program/parameter split, integers."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencm.actions.cmint import parse_cm_int
from opencm.actions.parse import numbering_problems, parse_section, split_action_line
from opencm.profile.ini import IniFile

AZURE_LINE = (
    r"<short>\cmroute.dll,SetRoutes /Profile %PROFILE% /STATIC_FILE_NAME routes.txt"
    r" /IPHLPAPI_ACCESS_DENIED_OK /TunnelRasPhonebook %TUNNELRASPHONEBOOK%"
    r" /DialRasPhonebook %DIALRASPHONEBOOK% /ServiceName %SERVICENAME%"
)


def section(text: str, name: str = "Connect Actions") -> IniFile:
    return IniFile.parse(f"[{name}]\n{text}".replace("\n", "\r\n").encode(), Path("t.cms"))


@pytest.mark.parametrize(
    ("line", "program", "entry", "parameters"),
    [
        (
            AZURE_LINE,
            r"<short>\cmroute.dll",
            "SetRoutes",
            AZURE_LINE.split("SetRoutes ", 1)[1],
        ),
        ("notepad.exe readme.txt", "notepad.exe", None, "readme.txt"),
        (
            '"C:\\Program Files\\App\\app.exe" "a b" c',
            r"C:\Program Files\App\app.exe",
            None,
            '"a b" c',
        ),
        ("+dir with space\\tool.exe+ -x", r"dir with space\tool.exe", None, "-x"),
        ('"my libs\\x.dll",Entry  a  b', r"my libs\x.dll", "Entry", "a  b"),
        (r"C:\Program Files\x.dll,Entry a", r"C:\Program Files\x.dll", "Entry", "a"),
        ("lib/x.so,Run", "lib/x.so", "Run", ""),
        ("x.dll Entry a b", "x.dll", "Entry", "a b"),
        ("python:sync --fast", "python:sync", None, "--fast"),
        ("  tool  ", "tool", None, ""),
    ],
)
def test_program_parameter_split(
    line: str, program: str, entry: str | None, parameters: str
) -> None:
    got_program, got_entry, got_parameters, _notes = split_action_line(line)
    assert (got_program, got_entry, got_parameters) == (program, entry, parameters)


def test_library_without_entry_point_is_noted() -> None:
    _program, entry, _parameters, notes = split_action_line("x.dll,")
    assert entry is None
    assert notes == ["a library action needs an entry point: write file.dll,Entry"]


def test_real_azure_action_reads_its_flags_and_description() -> None:
    ini = section(f"0={AZURE_LINE}\n0&Flags=48\n0&Description=to update your routing table\n")
    parsed = parse_section("Connect Actions", ini.entries("Connect Actions"))
    assert parsed.problems == ()
    (action,) = parsed.actions
    assert (action.index, action.line, action.flags) == (0, 2, 48)
    assert action.description == "to update your routing table"
    assert action.entry == "SetRoutes"


def test_quoted_program_survives_the_ini_layer_quote_stripping() -> None:
    ini = section('0="C:\\dir\\x.exe" "arg one"\n')
    (action,) = parse_section("Connect Actions", ini.entries("Connect Actions")).actions
    assert action.program == r"C:\dir\x.exe"
    assert action.parameters == '"arg one"'


def test_actions_run_in_number_order_not_file_order() -> None:
    ini = section("2=c\n0=a\n1=b\n1&flags=4\n")
    parsed = parse_section("Connect Actions", ini.entries("Connect Actions"))
    assert [(a.index, a.program, a.flags) for a in parsed.actions] == [
        (0, "a", 0),
        (1, "b", 4),
        (2, "c", 0),
    ]
    assert parsed.gap_at is None


def test_gap_stops_the_read_loop_and_is_reported_at_its_line() -> None:
    ini = section("0=a\n1=b\n3=d\n4=e\n")
    parsed = parse_section("Connect Actions", ini.entries("Connect Actions"))
    assert parsed.gap_at == 2
    assert [a.index for a in parsed.runnable()] == [0, 1]
    assert numbering_problems(ini.entries("Connect Actions")) == [
        (
            4,
            "actions 3, 4 follow a gap at 2: the numbers must run 0, 1, 2, … without a hole,"
            " so they never run",
        )
    ]


def test_missing_zero_is_a_gap_at_zero() -> None:
    parsed = parse_section("Connect Actions", section("1=b\n").entries("Connect Actions"))
    assert parsed.gap_at == 0
    assert parsed.runnable() == ()


def test_empty_value_counts_as_missing() -> None:
    ini = section("0=a\n1=\n2=c\n")
    parsed = parse_section("Connect Actions", ini.entries("Connect Actions"))
    assert parsed.gap_at == 1
    assert (3, "action 1 has no program") in numbering_problems(ini.entries("Connect Actions"))


def test_numbering_problems_name_each_line() -> None:
    ini = section("0=a\n0=again\n01=never\nFoo=bar\n5&Flags=1\n0&Description=x\n0&Description=y\n")
    problems = numbering_problems(ini.entries("Connect Actions"), "Connect Actions")
    assert problems == [
        (3, "duplicate key '0'; the first one, on line 2, is used"),
        (
            4,
            "key '01' is never read: [Connect Actions] holds N, N&Flags, N&Description and N&Wait"
            " with N written without leading zeros",
        ),
        (
            5,
            "key 'Foo' is never read: [Connect Actions] holds N, N&Flags, N&Description and N&Wait"
            " with N written without leading zeros",
        ),
        (6, "5&Flags belongs to no action: there is no key 5"),
        (8, "duplicate key '0&Description'; the first one, on line 7, is used"),
    ]


@pytest.mark.parametrize(
    ("text", "value", "warned"),
    [
        ("48", 48, False),
        (" 0 ", 0, False),
        ("0x30", 48, False),
        ("1.1", 1, True),
        ("16.", 16, True),
        ("abc", 0, True),
        ("12abc", 0, True),
        ("", 0, True),
    ],
)
def test_cm_integers(text: str, value: int, warned: bool) -> None:
    parsed = parse_cm_int(text)
    assert parsed.value == value
    assert (parsed.warning is not None) == warned


def test_bad_flags_warn_with_file_line_and_fall_back() -> None:
    ini = section("0=a\n0&Flags=1.1\n1=b\n1&Flags=lots\n2=c\n2&Flags=-3\n")
    parsed = parse_section("Connect Actions", ini.entries("Connect Actions"))
    assert [a.flags for a in parsed.actions] == [1, 0, 0]
    assert [(p.line, p.message) for p in parsed.problems] == [
        (3, "0&Flags: '1.1' is not an integer; truncated to 1"),
        (5, "1&Flags: 'lots' is not an integer; ignored, using 0"),
        (7, "2&Flags -3 is negative; using 0"),
    ]
