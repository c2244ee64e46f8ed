"""A dial-up entry without DialNumbers dials the phone book's POPs, as `opencm pops` lists them."""

from __future__ import annotations

from pathlib import Path

from opencm.kit.build import ISP_FILTERS, SERVICE_TYPES
from opencm.session.config import session_config
from tests.actions.conftest import make_profile
from tests.phonebook.test_select import PBK, PBR


def _profile(root: Path, *choices: str) -> Path:
    isp = [f"Mask&{n}={mask}\r\nMatch&{n}={match}" for n, mask, match in ISP_FILTERS]
    isp += ["FilterA&=NosurchargeSignon", "FilterB&=SurchargeSignon", r"PBFile=CONTOSO\C.pbk"]
    make_profile(
        root,
        {
            "ISP": isp,
            "Service Types": [f"{label}={name}" for label, name in SERVICE_TYPES],
            "opencm": ["ModemDevice=/dev/ttyS9", *choices],
        },
    )
    (root / "CONTOSO" / "C.pbk").write_bytes(PBK.encode())
    (root / "CONTOSO" / "C.pbr").write_bytes(PBR.encode())
    return root / "CONTOSO.cmp"


def numbers(cmp: Path) -> list[str]:
    from opencm.profile.model import load_profile

    (entry,) = session_config(load_profile(cmp)).dial_entries
    return entry.settings["numbers"].split(";")


def test_the_chosen_pop_then_its_alternates_with_the_dial_prefix(tmp_path: Path) -> None:
    cmp = _profile(tmp_path, "PopCountry=1", "PopRegion=Washington", "PopIndex=2", "DialPrefix=9,")
    assert numbers(cmp) == ["9,4255550002", "9,4255550001"]


def test_without_choices_the_first_pop_of_list_a_and_its_region(tmp_path: Path) -> None:
    assert numbers(_profile(tmp_path)) == ["4255550001", "4255550002"]


def test_service_type_leaves_out_pops_that_do_not_offer_it(tmp_path: Path) -> None:
    cmp = _profile(tmp_path, "PopServiceType=Modem", "PopRegion=Washington")
    assert numbers(cmp) == ["4255550001"]  # POP 2 is flagged not-modem


def test_dial_numbers_win_over_the_phone_book(tmp_path: Path) -> None:
    assert numbers(_profile(tmp_path, "DialNumbers=123;456")) == ["123", "456"]
