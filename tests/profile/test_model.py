"""The profile model: finding the files, Windows paths on Linux, what the .cms says."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from opencm.errors import InputError
from opencm.profile.model import ConnectionType, load_profile, resolve_case_insensitive

FIXTURES = Path(__file__).parent / "fixtures"


def install_contoso(root: Path) -> Path:
    """The installed layout of "How Connection Manager Works", with the case mismatches Windows
    tools leave behind."""
    service = root / "contoso"
    service.mkdir(parents=True)
    (service / "Contoso.cms").write_bytes((FIXTURES / "contoso.cms").read_bytes())
    (service / "CONTOSO.inf").write_bytes((FIXTURES / "contoso.inf").read_bytes())
    (service / "CmRoute.DLL").write_bytes(b"MZ")
    (root / "CONTOSO.cmp").write_bytes((FIXTURES / "utf16.cmp").read_bytes())
    return root / "CONTOSO.cmp"


def test_cmp_leads_to_cms_case_insensitively(tmp_path: Path) -> None:
    cmp = install_contoso(tmp_path)
    profile = load_profile(cmp)
    assert profile.cms_path == tmp_path / "contoso" / "Contoso.cms"
    assert profile.profile_dir == tmp_path
    assert profile.service_dir == tmp_path / "contoso"
    assert profile.service_name == "Contoso VPN"
    assert profile.inf_path == tmp_path / "contoso" / "CONTOSO.inf"
    assert profile.resolve("CONTOSO\\cmroute.dll") == tmp_path / "contoso" / "CmRoute.DLL"


@pytest.mark.parametrize("which", ["cmp", "cms", "folder", "service-folder"])
def test_every_way_of_naming_a_profile_finds_the_same_files(tmp_path: Path, which: str) -> None:
    cmp = install_contoso(tmp_path)
    path = {
        "cmp": cmp,
        "cms": tmp_path / "contoso" / "Contoso.cms",
        "folder": tmp_path,
        "service-folder": tmp_path / "contoso",
    }[which]
    profile = load_profile(path)
    assert profile.cms_path == tmp_path / "contoso" / "Contoso.cms"
    assert profile.cmp_path == cmp
    assert profile.profile_dir == tmp_path


def test_macros_and_connection_types(tmp_path: Path) -> None:
    profile = load_profile(install_contoso(tmp_path))
    macros = profile.base_macros()
    assert macros["ServiceName"] == "Contoso VPN"
    assert macros["Profile"] == str(tmp_path / "CONTOSO.cmp")
    assert macros["TunnelRasEntry"] == "CONTOSO Tunnel"
    assert macros["TunnelServerAddress"] == "vpn.contoso.example"
    assert macros["DialRasPhoneBook"] == str(tmp_path / "contoso" / "CONTOSO.pbk")
    assert "UserPrefix" not in macros  # undefined: actions get NULL
    assert profile.supported_types() == [ConnectionType.DIRECT]
    assert profile.default_connection_type() is ConnectionType.DIRECT


@pytest.mark.parametrize(
    ("keys", "types"),
    [
        ("Dialup=1\r\nTunnel=0", [ConnectionType.DIALUP]),
        ("Dialup=0\r\nDirect=1\r\nTunnel=1", [ConnectionType.DIRECT]),
        ("Dialup=1\r\nDirect=0\r\nTunnel=1", [ConnectionType.DOUBLE]),
        ("Dialup=1\r\nDirect=1\r\nTunnel=1", [ConnectionType.DIRECT, ConnectionType.DOUBLE]),
        ("", [ConnectionType.DIALUP]),
    ],
)
def test_supported_types(tmp_path: Path, keys: str, types: list[ConnectionType]) -> None:
    cms = tmp_path / "x.cms"
    cms.write_bytes(f"[Connection Manager]\r\n{keys}\r\n".encode())
    assert load_profile(cms).supported_types() == types


def test_resolve_keeps_unmatched_components_and_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / "Dir").mkdir()
    assert resolve_case_insensitive(tmp_path, "dir\\Missing.exe") == tmp_path / "Dir/Missing.exe"
    assert resolve_case_insensitive(tmp_path, "/usr/bin/true") == Path("/usr/bin/true")


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_profile(tmp_path / "missing.cmp")
    bad = tmp_path / "bad.cmp"
    bad.write_bytes(b"[Connection Manager]\r\nCMSFile=BAD\\BAD.cms\r\n")
    with pytest.raises(InputError) as caught:
        load_profile(bad)
    assert str(caught.value).startswith(f"{bad}:2: [Connection Manager] CMSFile=BAD\\BAD.cms")
    empty = tmp_path / "empty.cmp"
    empty.write_bytes(codecs.BOM_UTF16_LE + "[Profile Format]\r\n".encode("utf-16-le"))
    with pytest.raises(InputError, match="CMSFile is missing"):
        load_profile(empty)
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.cmp").write_text("")
    (tmp_path / "two" / "b.cmp").write_text("")
    with pytest.raises(InputError, match=r"more than one \.cmp"):
        load_profile(tmp_path / "two")
