"""A dial-up entry without DialNumbers dials the phone book's POPs, as `opencm pops` lists them."""

from __future__ import annotations

from pathlib import Path

from opencm.session.config import session_config
from tests.phonebook.test_select import profile_with_book


def numbers(root: Path, *keys: str) -> list[str]:
    profile = profile_with_book(root, opencm=["ModemDevice=/dev/ttyS9", *keys])
    (entry,) = session_config(profile).dial_entries
    return entry.settings["numbers"].split(";")


def test_the_chosen_pop_then_its_alternates_with_the_dial_prefix(tmp_path: Path) -> None:
    keys = ("PopCountry=1", "PopRegion=Washington", "PopIndex=2", "DialPrefix=9,")
    assert numbers(tmp_path, *keys) == ["9,4255550002", "9,4255550001"]


def test_without_choices_the_first_pop_of_list_a_and_its_region(tmp_path: Path) -> None:
    assert numbers(tmp_path) == ["4255550001", "4255550002"]


def test_service_type_leaves_out_pops_that_do_not_offer_it(tmp_path: Path) -> None:
    keys = ("PopServiceType=Modem", "PopRegion=Washington")
    assert numbers(tmp_path, *keys) == ["4255550001"]  # POP 2 is flagged not-modem


def test_dial_numbers_win_over_the_phone_book(tmp_path: Path) -> None:
    assert numbers(tmp_path, "DialNumbers=123;456") == ["123", "456"]
