"""Dialing rules, the POP a user chooses (saved in their .cmp), favorites, and `opencm pops`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from opencm.errors import InputError
from opencm.phonebook.dialing import DialingRules, choose_numbers, rules_from, save_choice
from opencm.profile.ini import IniFile
from opencm.profile.model import load_profile
from opencm.profile.usersettings import UserSettings, overlay_path
from opencm.session.config import session_config
from tests.phonebook.test_select import profile_with_book

REDMOND = DialingRules(country=1, area_code="425", outside_line="9,")


@pytest.mark.parametrize(
    ("rules", "pop", "dialed"),
    [
        (REDMOND, (1, "425", "555-0001"), "9,5550001"),  # local: the access number alone
        (REDMOND, (1, "(503)", "555 0003"), "9,15035550003"),  # long distance: 1 + area
        (REDMOND, (44, "20", "7946 0004"), "9,011442079460004"),  # international: 011 + 44
        (DialingRules(country=44, area_code="20"), (44, "20", "79460004"), "79460004"),
        (DialingRules(country=44, area_code="161"), (44, "20", "79460004"), "02079460004"),
        (DialingRules(country=44), (1, "425", "5550001"), "0014255550001"),
        (DialingRules(country=1, area_code="425", calling_card="*70,"), (1, "425", "5550001"),
         "*70,5550001"),
        (DialingRules(), (1, "425", "555-0001"), "4255550001"),  # no location: as written
    ],
)  # fmt: skip
def test_dialing_rules(rules: DialingRules, pop: tuple[int, str, str], dialed: str) -> None:
    assert rules.number_for(*pop) == dialed


def test_bad_rule_values_name_the_key() -> None:
    with pytest.raises(InputError) as error:
        rules_from({"OutsideLine": "9;ATH"})
    assert error.value.field == "OutsideLine"
    with pytest.raises(InputError, match="tone or pulse"):
        rules_from({"DialMode": "rotary"})


def test_chosen_pop_is_saved_in_the_users_cmp_and_dialed_with_the_rules(tmp_path: Path) -> None:
    profile = profile_with_book(tmp_path, opencm=["ModemDevice=/dev/ttyS9"])
    saved = save_choice(
        profile, country=44, rules={"DialCountry": "1", "DialAreaCode": "425", "DialMode": "pulse"}
    )
    assert saved == profile.cmp_path
    cmp = IniFile.load(saved)
    assert cmp.get("opencm", "PopCountry") == "44" and cmp.get("opencm", "PopName") == "London"
    (entry,) = session_config(load_profile(saved)).dial_entries
    assert entry.settings["numbers"] == "011442079460004"
    assert entry.settings["dial_mode"] == "pulse"
    assert session_config(load_profile(saved)).dial_macros() == {"PopName": "London"}


def test_a_number_written_into_the_cmp_wins_and_is_read_at_each_dial(tmp_path: Path) -> None:
    """What a pre-dial action does (Microsoft's "Custom Actions": a program to change the
    telephone number): the session reads the number again when it dials."""
    profile = profile_with_book(tmp_path, opencm=["ModemDevice=/dev/ttyS9"])
    config = session_config(profile)
    assert config.entries_for("dial")[0].settings["numbers"] == "4255550001;4255550002"
    cmp = IniFile.load(profile.cmp_path)  # type: ignore[arg-type]
    cmp.set("opencm", "PhoneNumber", "5554321")
    cmp.save()
    assert config.entries_for("dial")[0].settings["numbers"] == "5554321"
    assert config.dial_macros() == {}  # no POP behind a typed number


def test_favorites_switch_the_pop_and_set_current_favorite(tmp_path: Path) -> None:
    profile = profile_with_book(tmp_path, opencm=["ModemDevice=/dev/ttyS9"])
    save_choice(profile, country=44, favorite="Travel")
    save_choice(profile, region="Oregon", favorite="Home")
    assert choose_numbers(load_profile(profile.cmp_path)).numbers == ("5035550003",)  # type: ignore[arg-type]
    save_choice(profile, favorite="Travel")
    current = choose_numbers(load_profile(profile.cmp_path))  # type: ignore[arg-type]
    assert current.numbers == ("2079460004",) and current.favorite == "Travel"
    assert UserSettings(profile).favorites() == ["Travel", "Home"]
    with pytest.raises(InputError, match=r"no favorite named 'Work'.*Travel, Home"):
        save_choice(profile, favorite="Work")


def test_a_cmp_the_user_cannot_write_keeps_their_values_in_their_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() == 0:
        monkeypatch.setattr(os, "access", lambda path, mode: False)  # root writes anything
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    profile = profile_with_book(tmp_path / "p", opencm=["ModemDevice=/dev/ttyS9"])
    cmp_before = profile.cmp_path.read_bytes()  # type: ignore[union-attr]
    os.chmod(profile.cmp_path, 0o444)  # type: ignore[arg-type]
    saved = save_choice(profile, region="Oregon")
    assert saved == overlay_path(profile) and (saved.stat().st_mode & 0o777) == 0o600
    assert profile.cmp_path.read_bytes() == cmp_before  # type: ignore[union-attr]
    assert choose_numbers(profile).numbers == ("5035550003",)
    # What `opencm connect` sends the root daemon, which does not read the user's home.
    assert UserSettings(profile).overlay_values() == {"PopRegion": "Oregon", "PopIndex": "3",
                                                      "PopName": "Portland"}  # fmt: skip


def test_pops_choose_through_the_cli(tmp_path: Path) -> None:
    profile = profile_with_book(tmp_path, opencm=["ModemDevice=/dev/ttyS9"])
    cmp = str(profile.cmp_path)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["pops", cmp, "--choose", "--region", "Oregon", "--my-country", "1", "--my-area-code",
         "425", "--outside-line", "9,", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["dial_order"] == ["9,15035550003"]
    assert document["pop"]["name"] == "Portland"
    listed = runner.invoke(cli, ["pops", cmp, "--json"]).output
    listing = json.loads(listed[listed.index("{") :])  # after the book's warning
    assert listing["dial_order"][0] == "9,5550001"  # Seattle is local from 425
    for args, words in (
        (["--outside-line", "9,"], "need --choose"),
        (["--choose", "--outside-line", "9;ATH"], "not a dialing prefix"),
        (["--choose", "--country", "33"], "no POP matches"),
    ):
        refused = subprocess.run(
            [sys.executable, "-m", "opencm", "pops", cmp, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert refused.returncode == 2 and words in refused.stderr, refused.stderr
