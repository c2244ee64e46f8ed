"""POP filtering by the profile's [ISP] Mask/Match filters and [Service Types]."""

from __future__ import annotations

import pytest

from opencm.profile.ini import IniFile
from opencm.profile.isp import read_isp_filters

# The block every real .cms carries (research/cm-formats.md §1.6).
REAL_ISP = b"""[ISP]\r
Mask&SignOn=0x0001\r
Match&SignOn=0x0000\r
Mask&SignUp=0x0002\r
Match&SignUp=0x0002\r
Mask&Modem=0x0004\r
Match&Modem=0x0000\r
Mask&ISDN=0x0008\r
Match&ISDN=0x0000\r
Mask&MultiCast=0x0020\r
Match&MultiCast=0x0000\r
Mask&Surcharge=0x0040\r
Match&Surcharge=0x0040\r
Mask&MultiCastModem=0x0024\r
Match&MultiCastModem=0x0000\r
Mask&MultiCastISDN=0x0028\r
Match&MultiCastISDN=0x0000\r
Mask&NosurchargeSignon=0x0041\r
Match&NosurchargeSignon=0x0000\r
Mask&SurchargeSignon=0x0041\r
Match&SurchargeSignon=0x0040\r
FilterA&=NosurchargeSignon\r
FilterB&=SurchargeSignon\r
[Service Types]\r
Modem=Modem\r
ISDN=ISDN\r
Modem MultiCast=MultiCastModem\r
ISDN MultiCast=MultiCastISDN\r
"""

FILTERS = read_isp_filters(IniFile.parse(REAL_ISP))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (0, "A"),  # sign-on, modem, ISDN, multicast, no surcharge
        (0x40, "B"),  # surcharge
        (96, "B"),  # MS-CPSP's own example: not multicast + surcharge
        (0x01, None),  # "not sign on": in neither list
        (0x41, None),
        (0x04, "A"),  # not a modem POP still passes the sign-on/surcharge lists
    ],
)
def test_lists_a_and_b(flags: int, expected: str | None) -> None:
    assert FILTERS.which_list(flags) == expected


@pytest.mark.parametrize(
    ("service_type", "flags", "passes"),
    [
        ("Modem", 0x00, True),
        ("modem", 0x04, False),  # bit 2 set means "not modem"
        ("ISDN", 0x08, False),
        ("Modem MultiCast", 0x00, True),
        ("Modem MultiCast", 0x20, False),
        ("ISDN MultiCast", 0x04, True),
    ],
)
def test_service_types(service_type: str, flags: int, passes: bool) -> None:
    assert FILTERS.service_type_passes(service_type, flags) is passes


def test_unknown_service_type_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        FILTERS.service_type_passes("Carrier Pigeon", 0)


def test_profile_without_filters_offers_every_pop() -> None:
    bare = read_isp_filters(IniFile.parse(b"[ISP]\r\nPBFile=x.pbk\r\n"))
    assert all(bare.which_list(flags) == "A" for flags in range(256))
