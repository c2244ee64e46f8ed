"""POP selection on the client: [ISP] filters, country/region/service type, the dial order."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from opencm.errors import InputError
from opencm.kit.build import ISP_FILTERS, SERVICE_TYPES
from opencm.phonebook.select import dial_numbers, read_offered, select
from opencm.profile.isp import read_isp_filters
from opencm.profile.model import ServiceProfile
from tests.actions.conftest import make_profile
from tests.kit.conftest import run_cli

#: Flags: 0x01 not sign-on (in neither list), 0x04 not modem, 0x40 surcharge (list B).
PBK = (
    "1,1,1,Seattle,425,555-0001,2400,56000,0,0,\r\n"
    "2,1,1,Seattle ISDN,425,555-0002,0,0,0,4,\r\n"
    "3,1,2,Portland,503,555-0003,0,0,0,0,\r\n"
    "4,44,3,London,20,7946 0004,0,0,0,0,\r\n"
    "5,1,1,Seattle surcharge,425,555-0005,0,0,0,64,\r\n"
    "6,1,1,Sign-up only,425,555-0006,0,0,0,1,\r\n"
)
PBR = "3\r\nWashington\r\nOregon\r\nLondon\r\n"


def profile_with_book(root: Path, pbk: str = PBK, *, opencm: Sequence[str] = ()) -> ServiceProfile:
    """A profile with the real CMAK [ISP] block, CONTOSO.pbk/.pbr and ``opencm`` keys."""
    isp = [f"Mask&{n}={mask}\r\nMatch&{n}={match}" for n, mask, match in ISP_FILTERS]
    isp += [
        "FilterA&=NosurchargeSignon",
        "FilterB&=SurchargeSignon",
        r"PBFile=CONTOSO\CONTOSO.pbk",
        r"RegionFile=CONTOSO\CONTOSO.pbr",
    ]
    types = [f"{label}={name}" for label, name in SERVICE_TYPES]
    profile = make_profile(root, {"ISP": isp, "Service Types": types, "opencm": list(opencm)})
    (root / "CONTOSO" / "CONTOSO.pbk").write_bytes(pbk.encode())
    (root / "CONTOSO" / "CONTOSO.pbr").write_bytes(PBR.encode())
    return profile


def indices(profile: ServiceProfile, **choices: object) -> list[int]:
    view = read_offered(profile)
    chosen = select(view.pops, read_isp_filters(profile.cms), **choices)  # type: ignore[arg-type]
    return [offered.pop.index for offered in chosen]


def test_isp_filters_split_the_book_into_lists_a_and_b(tmp_path: Path) -> None:
    profile = profile_with_book(tmp_path)
    assert indices(profile) == [1, 2, 3, 4]  # the sign-up-only POP is in neither list
    assert indices(profile, lists="B") == [5]
    assert indices(profile, lists="AB") == [1, 2, 3, 4, 5]


def test_country_region_and_service_type(tmp_path: Path) -> None:
    profile = profile_with_book(tmp_path)
    assert indices(profile, country=1) == [1, 2, 3]
    assert indices(profile, region="washington") == [1, 2]
    assert indices(profile, region="2") == [3]
    assert indices(profile, service_type="Modem") == [1, 3, 4]  # POP 2 is flagged not-modem
    assert indices(profile, service_type="modem", country=44) == [4]
    with pytest.raises(InputError, match="offers: Modem, ISDN, Modem MultiCast, ISDN MultiCast"):
        indices(profile, service_type="Carrier pigeon")


def test_dial_order_is_the_chosen_pop_then_its_alternates_in_the_same_region(
    tmp_path: Path,
) -> None:
    profile = profile_with_book(tmp_path)
    view = read_offered(profile)
    chosen = select(view.pops, read_isp_filters(profile.cms), country=1)
    assert dial_numbers(chosen) == ["4255550001", "4255550002"]
    assert dial_numbers(chosen, first=2) == ["4255550002", "4255550001"]
    assert dial_numbers(chosen, first=3) == ["5035550003"]
    with pytest.raises(InputError, match="no POP with index 9"):
        dial_numbers(chosen, first=9)


def test_cli_json_and_a_malformed_line_is_reported_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = PBK.replace("3,1,2,Portland", "3,,2,Portland")  # no country: the entry is ignored
    profile_with_book(tmp_path, broken)
    code, out, err = run_cli(
        capsys, "pops", str(tmp_path / "CONTOSO.cmp"), "--country", "1", "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert [pop["index"] for pop in document["pops"]] == [1, 2]
    assert document["pops"][0]["number"] == "+1 (425) 555-0001"
    assert document["pops"][0]["region_name"] == "Washington"
    assert document["dial_order"] == ["4255550001", "4255550002"]
    assert "CONTOSO.pbk:3" in err and "country code is missing" in err


def test_cli_profile_without_phone_book_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_profile(tmp_path, {})
    code, _, err = run_cli(capsys, "pops", str(tmp_path / "CONTOSO.cmp"))
    assert code == 2
    assert "CONTOSO.cms: this profile has no phone book" in err
