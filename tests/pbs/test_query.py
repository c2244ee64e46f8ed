"""The request parser: names case-insensitive, every bad-request class named."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencm.pbs.query import (
    BOOK_NAME,
    MAX_QUERY_BYTES,
    PbsQuery,
    QueryError,
    is_endpoint,
    parse_query,
)
from opencm.phonebook.limits import is_book_name

DOCUMENTED = b"osarch=0&ostype=0&osver=1&cmver=1&lcid=1033&pbver=7&pb=WORLD"


def test_the_documented_request_parses() -> None:
    assert parse_query(DOCUMENTED) == PbsQuery("WORLD", 7)


@pytest.mark.parametrize(
    "raw",
    [
        b"OSArch=0&OSType=2&LCID=1033&PBVer=7&PB=world",  # the Nessus plugin's spelling
        b"PBVER=7&Pb=World",
        b"pbver=7&pb=WORLD&unknown=1",
        b"pb=WORLD&&pbver=7&",
        b"pb=world&pbver=0007",
    ],
)
def test_names_and_the_book_ignore_case(raw: bytes) -> None:
    parsed = parse_query(raw)
    assert isinstance(parsed, PbsQuery)
    assert (parsed.key, parsed.pbver) == ("WORLD", 7)


@pytest.mark.parametrize("raw", [b"pb=%57ORLD&pbver=7", b"pb=WORLD&pbver=%37"])
def test_values_are_taken_literally(raw: bytes) -> None:
    # Every valid value is letters, digits and '_': an encoded one can only be refused (and the
    # nginx export refuses it the same way, docs/pbs-protocol.md).
    result = parse_query(raw)
    assert isinstance(result, QueryError)
    assert result.status == 400


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"", 400, "Bad Request\n"),
        (b"osarch=0", 400, "needs pb"),
        (b"pbver=7", 400, "pb (the phone book name) is missing"),
        (b"pb=&pbver=7", 400, "pb (the phone book name) is missing"),
        (b"pb=WORLD", 400, "pbver"),
        (b"pb=WORLD&pbver=", 400, "pbver"),
        (b"pb=WORLD&pbver=seven", 400, "whole number"),
        (b"pb=WORLD&pbver=-1", 400, "whole number"),
        (b"pb=WORLD&pbver=1.5", 400, "whole number"),
        (b"pb=WORLD&pbver=1234567890", 400, "at most"),
        (b"pb=WORLD&pbver=\xd9\xa3", 400, "whole number"),  # Arabic-Indic digit three
        (b"pb=WORLD&pbver=7&pbver=8", 400, "twice"),
        (b"pb=../etc&pbver=7", 400, "letters, digits"),
        (b"pb=..%2F..%2Fetc&pbver=7", 400, "letters, digits"),
        (b"pb=WORLD%00&pbver=7", 400, "letters, digits"),
        (b"pb=WORLD/x&pbver=7", 400, "letters, digits"),
        (b"pb=TOOLONGNAME&pbver=7", 400, "letters, digits"),
        (b"pb=12345&pbver=7", 400, "not all digits"),
        (b"pb=W%20D&pbver=7", 400, "letters, digits"),
        (b"pb=WORLD&pbver=7&osver=" + b"9" * 33, 400, "osver is longer than 32"),
        (b"pb=WORLD&pbver=7&lcid=" + b"%C3" * 11, 400, "lcid is longer than 32"),
        (b"pb=WORLD&pbver=7&x=" + b"a" * MAX_QUERY_BYTES, 414, "longer than"),
    ],
)
def test_every_bad_request_class_has_a_clear_body(raw: bytes, status: int, words: str) -> None:
    result = parse_query(raw)
    assert isinstance(result, QueryError)
    assert result.status == status
    assert words in result.body.decode()
    assert result.body.startswith(b"Bad Request" if status == 400 else b"URI Too Long")


def test_the_bare_request_says_exactly_bad_request() -> None:
    result = parse_query(b"")
    assert isinstance(result, QueryError)
    assert result.body == b"Bad Request\n"


def test_endpoint_path_ignores_case() -> None:
    assert is_endpoint("/pbserver/pbserver.dll")
    assert is_endpoint("/PBServer/PBServer.DLL")
    assert not is_endpoint("/pbserver/../pbserver/pbserver.dll")
    assert not is_endpoint("/pbserver/pbserver.dll/")


def test_the_delta_window_is_the_pbas() -> None:
    # Documented in docs/pbs-protocol.md: exactly five behind gets the delta the PBA made.
    from opencm.phonebook.limits import DELTA_WINDOW
    from opencm.phonebook.release import delta_bases

    assert DELTA_WINDOW == 5
    assert list(delta_bases(10)) == [5, 6, 7, 8, 9]


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=10))
def test_the_query_rule_for_names_is_the_phone_book_rule(name: str) -> None:
    # The PBS states the name rule as a regular expression so nginx can apply it too; it must
    # say exactly what opencm.phonebook.limits.is_book_name says.
    as_query = re.fullmatch(BOOK_NAME, name) is not None
    assert as_query == is_book_name(name)
