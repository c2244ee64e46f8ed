"""The request parser: names case-insensitive, every bad-request class named."""

from __future__ import annotations

import pytest

from opencm.pbs.catalog import DELTA_WINDOW
from opencm.pbs.query import MAX_QUERY_BYTES, PbsQuery, QueryError, is_endpoint, parse_query

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
        b"pb=%57ORLD&pbver=%37",  # percent-encoded
    ],
)
def test_names_are_case_insensitive_and_values_decoded(raw: bytes) -> None:
    assert parse_query(raw) == PbsQuery("WORLD", 7)


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
        (b"pb=WORLD&pbver=%D9%A3", 400, "whole number"),  # Arabic-Indic digit three
        (b"pb=WORLD&pbver=7&pbver=8", 400, "twice"),
        (b"pb=../etc&pbver=7", 400, "letters, digits"),
        (b"pb=..%2F..%2Fetc&pbver=7", 400, "letters, digits"),
        (b"pb=WORLD%00&pbver=7", 400, "letters, digits"),
        (b"pb=WORLD/x&pbver=7", 400, "letters, digits"),
        (b"pb=TOOLONGNAME&pbver=7", 400, "letters, digits"),
        (b"pb=12345&pbver=7", 400, "not all digits"),
        (b"pb=W%20D&pbver=7", 400, "letters, digits"),
        (b"pb=WORLD&pbver=7&osver=" + b"9" * 33, 400, "osver is longer than 32"),
        (b"pb=WORLD&pbver=7&lcid=" + "é".encode() * 33, 400, "lcid is longer than 32"),
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
    from opencm.phonebook.release import WINDOW

    assert DELTA_WINDOW == WINDOW == 5
