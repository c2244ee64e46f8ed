"""The MS-CPSP region file: round trips and its error rules (MS-CPSP §2.2)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from opencm.phonebook.pbr import format_pbr, parse_pbr
from opencm.phonebook.problems import Effect
from tests.phonebook.strategies import region_names


@given(region_names)
def test_canonical_region_files_round_trip(names: list[str]) -> None:
    data = format_pbr(names)
    result = parse_pbr(data)
    assert result.names == names and result.problems == []
    assert result.render() == data


@given(st.text(alphabet="0123456789,ab \r\n\xe9", max_size=200))
def test_any_region_file_renders_back_byte_identical(text: str) -> None:
    data = text.encode("latin-1")
    assert parse_pbr(data).render() == data


def test_spec_example_and_comma_separators() -> None:
    assert parse_pbr(b"2\r\nSeattle\r\nHyderabad\r\n").names == ["Seattle", "Hyderabad"]
    assert parse_pbr(b"3\nA,B\nC").names == ["A", "B", "C"]


def test_non_numeric_count_voids_the_phone_book() -> None:
    result = parse_pbr(b"two\r\nSeattle\r\n", "T.pbr")
    assert result.voids_phone_book and result.names == []
    assert [(p.rule, p.line, p.effect) for p in result.problems] == [
        ("cpsp-pbr-count", 1, Effect.ALL)
    ]


def test_count_smaller_than_names_ignores_the_extra_names() -> None:
    result = parse_pbr(b"1\r\nSeattle\r\nHyderabad\r\n")
    assert result.names == ["Seattle"]
    assert [p.rule for p in result.problems] == ["cpsp-pbr-count-small"]


def test_count_larger_than_names_reads_all_names() -> None:
    result = parse_pbr(b"5\r\nSeattle\r\nHyderabad\r\n")
    assert result.names == ["Seattle", "Hyderabad"]
    assert [p.rule for p in result.problems] == ["cpsp-pbr-count-large"]


def test_long_region_name_keeps_31_characters() -> None:
    result = parse_pbr(b"2\r\nA\r\n" + b"R" * 40 + b"\r\n", "T.pbr")
    assert result.names == ["A", "R" * 31]
    assert [(p.rule, p.line) for p in result.problems] == [("cpsp-pbr-name-length", 3)]


def test_zero_names_means_no_regions() -> None:
    result = parse_pbr(b"0\r\n")
    assert result.names == [] and result.problems == [] and not result.voids_phone_book
