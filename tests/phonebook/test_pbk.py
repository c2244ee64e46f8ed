"""The MS-CPSP phone book reader and writer: round trips and one test per error rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from opencm.phonebook.pbk import Pop, format_pbk, parse_pbk
from opencm.phonebook.problems import Effect
from tests.phonebook.strategies import books

GOOD = "1,1,0,Redmond,425,5550134,9600,56000,0,96,"
GOOD2 = "2,1,0,Seattle,206,5550199,9600,56000,0,0,"
GOOD3 = "3,44,0,London,20,5550100,9600,56000,0,0,"


def read(*lines: str, region_count: int | None = None):  # type: ignore[no-untyped-def]
    return parse_pbk(("\r\n".join(lines) + "\r\n").encode(), "T.pbk", region_count=region_count)


def rules(result) -> list[tuple[str, int | None, Effect]]:  # type: ignore[no-untyped-def]
    return [(p.rule, p.line, p.effect) for p in result.problems]


@given(books())
def test_canonical_books_round_trip(pops: list[Pop]) -> None:
    data = format_pbk(pops)
    result = parse_pbk(data)
    assert result.problems == []
    assert result.pops == sorted(pops, key=lambda pop: pop.index)
    assert result.document.render() == data
    assert format_pbk(result.pops) == data


@given(st.text(alphabet="0123456789,ab #*-\r\n\t\x80\xff", max_size=400))
def test_any_file_renders_back_byte_identical(text: str) -> None:
    data = text.encode("latin-1")
    assert parse_pbk(data).document.render() == data


def test_spec_examples() -> None:
    result = read("23,1,2,Redmond,999,5550134,9600,56000,0,96,", ",91,,,,55500123,,,,,,")
    assert result.problems == []
    assert result.pops == [
        Pop(23, 1, 2, "Redmond", "999", "5550134", 9600, 56000, 0, 96, ""),
        Pop(0, 91, 0, "", "", "55500123"),
    ]


def test_lf_and_missing_final_terminator_are_read() -> None:
    data = (GOOD + "\n" + GOOD2).encode()
    result = parse_pbk(data)
    assert [pop.index for pop in result.pops] == [1, 2]
    assert result.document.render() == data


def test_zero_entries_stop_gracefully() -> None:
    result = parse_pbk(b"")
    assert result.pops == [] and result.problems == []


def test_edited_line_is_rerendered_others_untouched() -> None:
    data = (GOOD + "\n" + GOOD2 + "\r\n").encode()
    result = parse_pbk(data)
    result.document.set_pop(2, Pop(2, 1, 0, "Tacoma", "253", "5550111"))
    assert result.document.render() == (GOOD + "\n2,1,0,Tacoma,253,5550111,0,0,0,0,\r\n").encode()


# -- one test per MS-CPSP §2.1 error rule ------------------------------------------------------


def test_fewer_than_10_commas_ignores_entry_and_all_later() -> None:
    result = read(GOOD, "2,1,0,Seattle,206,5550199,9600,56000,0", GOOD3)
    assert [pop.index for pop in result.pops] == [1]
    assert rules(result) == [("cpsp-commas-few", 2, Effect.FOLLOWING)]


def test_more_than_11_commas_ignores_every_entry() -> None:
    result = read(GOOD, GOOD2, GOOD3 + ",,")
    assert result.pops == []
    assert rules(result) == [("cpsp-commas-many", 3, Effect.ALL)]


def test_more_than_11_commas_after_a_stop_still_voids_the_file() -> None:
    result = read(GOOD, "x", GOOD3 + ",,")
    assert result.pops == []


def test_trailing_11th_comma_is_accepted() -> None:
    assert read(GOOD + ",").pops[0].dun == ""


def test_non_digit_pop_index_ignores_entry_and_all_later() -> None:
    result = read(GOOD, "2a" + GOOD2[1:], GOOD3)
    assert [pop.index for pop in result.pops] == [1]
    assert rules(result) == [("cpsp-index", 2, Effect.FOLLOWING)]
    assert result.problems[0].field == "POP Index"
    assert str(result.problems[0]).startswith("T.pbk:2: POP Index: ")


def test_missing_country_ignores_only_that_entry() -> None:
    result = read(GOOD, "2,,0,Seattle,206,5550199,9600,56000,0,0,", GOOD3)
    assert [pop.index for pop in result.pops] == [1, 3]
    assert rules(result) == [("cpsp-country-missing", 2, Effect.ENTRY)]


def test_non_numeric_country_ignores_all_entries() -> None:
    result = read(GOOD, "2,US,0,Seattle,206,5550199,9600,56000,0,0,", GOOD3)
    assert result.pops == []
    assert rules(result) == [("cpsp-country", 2, Effect.ALL)]


def test_non_numeric_region_ignores_all_entries() -> None:
    result = read(GOOD, "2,1,WA,Seattle,206,5550199,9600,56000,0,0,")
    assert result.pops == []
    assert rules(result) == [("cpsp-region", 2, Effect.ALL)]


def test_region_past_the_region_file_is_processed_without_region() -> None:
    result = read("2,1,3,Seattle,206,5550199,9600,56000,0,0,", region_count=2)
    assert result.pops[0].region == 0
    assert rules(result) == [("cpsp-region-range", 1, Effect.FIELD)]


def test_long_pop_name_shifts_fields_and_ignores_later_entries() -> None:
    name = "N" * 31 + "425"
    result = read(GOOD, f"2,1,0,{name},5550199,9600,56000,0,0,0,", GOOD3)
    assert [pop.index for pop in result.pops] == [1, 2]
    pop = result.pops[1]
    assert pop.name == "N" * 31 and pop.area == "425" and pop.access == "5550199"
    assert rules(result) == [("cpsp-name-length", 2, Effect.FOLLOWING)]


def test_long_area_code_shifts_fields_and_ignores_later_entries() -> None:
    result = read(GOOD, "2,1,0,Seattle,123456789012,9600,56000,0,0,0,", GOOD3)
    assert [pop.index for pop in result.pops] == [1, 2]
    assert result.pops[1].area == "12345678901" and result.pops[1].access == "2"
    assert rules(result) == [("cpsp-area-length", 2, Effect.FOLLOWING)]


def test_non_numeric_area_code_is_ignored() -> None:
    result = read("2,1,0,Seattle,20A,5550199,9600,56000,0,0,", GOOD3)
    assert result.pops[0].area == "" and len(result.pops) == 2
    assert rules(result) == [("cpsp-area-digits", 1, Effect.FIELD)]


def test_long_access_number_shifts_fields_and_ignores_later_entries() -> None:
    number = "5" * 41 + "9600"
    result = read(f"2,1,0,Seattle,206,{number},56000,0,0,0,", GOOD3)
    assert [pop.index for pop in result.pops] == [2]
    assert result.pops[0].access == "5" * 41 and result.pops[0].min_speed == 9600
    assert rules(result) == [("cpsp-access-length", 1, Effect.FOLLOWING)]


def test_missing_access_number_is_read_with_a_warning() -> None:
    result = read("2,1,0,Seattle,206,,9600,56000,0,0,")
    assert len(result.pops) == 1
    assert rules(result) == [("cpsp-access-missing", 1, Effect.WARNING)]


def test_access_number_with_other_characters_is_still_read() -> None:
    result = read("2,1,0,Seattle,206,555-CALL,9600,56000,0,0,")
    assert result.pops[0].access == "555-CALL"
    assert rules(result) == [("cpsp-access-chars", 1, Effect.WARNING)]


def test_non_numeric_minimum_speed_ignores_all_entries() -> None:
    result = read(GOOD, "2,1,0,Seattle,206,5550199,fast,56000,0,0,")
    assert result.pops == [] and rules(result) == [("cpsp-min-speed", 2, Effect.ALL)]


def test_non_numeric_maximum_speed_ignores_all_entries() -> None:
    result = read(GOOD, "2,1,0,Seattle,206,5550199,9600,56k,0,0,")
    assert result.pops == [] and rules(result) == [("cpsp-max-speed", 2, Effect.ALL)]


def test_negative_reserved_flag_ignores_all_entries() -> None:
    result = read(GOOD, "2,1,0,Seattle,206,5550199,9600,56000,-1,0,")
    assert result.pops == [] and rules(result) == [("cpsp-reserved", 2, Effect.ALL)]
    assert "negative" in result.problems[0].message


def test_negative_or_non_numeric_pop_flag_ignores_all_entries() -> None:
    for bad in ("-4", "x"):
        result = read(GOOD, f"2,1,0,Seattle,206,5550199,9600,56000,0,{bad},")
        assert result.pops == [] and rules(result) == [("cpsp-flag", 2, Effect.ALL)]


def test_sign_on_bit_set_ignores_the_entry() -> None:
    result = read(GOOD, "2,1,0,Seattle,206,5550199,9600,56000,0,97,", GOOD3)
    assert [pop.index for pop in result.pops] == [1, 3]
    assert rules(result) == [("cpsp-flag-sign-on", 2, Effect.ENTRY)]


def test_long_dun_name_keeps_the_first_50_characters() -> None:
    result = read(GOOD + "D" * 60, GOOD2)
    assert result.pops[0].dun == "D" * 50 and len(result.pops) == 2
    assert rules(result) == [("cpsp-dun-length", 1, Effect.FIELD)]


def test_non_ascii_entry_is_reported() -> None:
    data = "2,1,0,Zürich,44,5550199,9600,56000,0,0,\r\n".encode("latin-1")
    result = parse_pbk(data)
    assert [p.rule for p in result.problems] == ["cpsp-ascii"]
    assert result.document.render() == data
