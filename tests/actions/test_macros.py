"""Macros: names, NULL for missing values, tokenising before expanding, the command line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opencm.actions.macros import (
    KNOWN_MACROS,
    command_line,
    expand,
    expand_parameters,
    macro_table,
    tokenize,
)

DOCUMENTED_MACROS = {
    "ServiceName", "UserPrefix", "UserSuffix", "UserName", "Profile", "ServiceDir", "Domain",
    "InetUserName", "ConnectionType", "DialRasPhoneBook", "TunnelRasPhoneBook", "DialRasEntry",
    "TunnelRasEntry", "AutoRedial", "PopName", "ErrorCode", "LastErrorSource",
    "CurrentFavorite", "TunnelServerAddress", "ClientIPAddress", "ServerIPAddress", "Interactive",
}  # fmt: skip


def test_every_documented_macro_is_known() -> None:
    # Microsoft's, plus opencm's own %DisconnectReason% (NULL outside the disconnect point).
    assert set(KNOWN_MACROS) == DOCUMENTED_MACROS | {"DisconnectReason"}


@pytest.mark.parametrize("name", sorted(DOCUMENTED_MACROS))
def test_each_macro_expands_in_any_case(name: str) -> None:
    table = macro_table({name: "v a l"})
    for spelling in (name, name.upper(), name.lower()):
        assert expand(f"<%{spelling}%>", table) == "<v a l>"
    assert expand(f"%{name}%", macro_table({})) == "NULL"


def test_the_documented_example_command_line() -> None:
    # "Incorporating Custom Actions": LogUserAndPopToServer %UserPrefix% %UserName% %UserSuffix%
    # %PopName% %AutoRedial% (the entry point is removed before the line reaches the DLL) → NULL
    # jobrown "Seattle 28,800" 0
    table = macro_table(
        {"UserName": "jobrown", "UserSuffix": "", "PopName": "Seattle 28,800", "AutoRedial": "0"}
    )
    args, _ = expand_parameters(
        "%UserPrefix% %UserName% %UserSuffix% %PopName% %AutoRedial%", table
    )
    assert args == ["NULL", "jobrown", "NULL", "Seattle 28,800", "0"]
    assert command_line(args) == 'NULL jobrown NULL "Seattle 28,800" 0'


def test_unknown_words_are_left_as_written() -> None:
    table = macro_table({"UserName": "jo"})
    assert expand("%windir%\\x %UserName% 100% %", table) == "%windir%\\x jo 100% %"
    assert expand("50%%UserName%", table) == "50%jo"


def test_expansion_is_a_single_pass() -> None:
    table = macro_table({"UserName": "%Domain%", "Domain": "CORP"})
    assert expand("%UserName%/%Domain%", table) == "%Domain%/CORP"


def test_tokenising_happens_before_expansion() -> None:
    hostile = 'a b"; rm -rf / $(x) `y`\nz'
    args, open_quote = expand_parameters(
        '/u %UserName% "/p %PopName%" x', macro_table({"UserName": hostile, "PopName": "P"})
    )
    assert args == ["/u", hostile, "/p P", "x"]
    assert not open_quote


def test_tokenize_quotes_and_empty_arguments() -> None:
    assert tokenize('a "b c"d "" \t e').words == ("a", "b cd", "", "e")
    assert tokenize('"open to the end').unterminated_quote
    assert tokenize(r"C:\dir\ x").words == ("C:\\dir\\", "x")


@given(st.lists(st.text(alphabet=st.characters(exclude_characters='"'), min_size=1), max_size=6))
def test_command_line_round_trips_through_tokenize(words: list[str]) -> None:
    # What a library receives splits back (with the same rules) into what was meant, as long as
    # the values contain no double quote.
    assert list(tokenize(command_line(words)).words) == words
