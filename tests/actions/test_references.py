"""``profile check`` says what ``actions plan`` and ``connect`` will: one finding per thing the
profile names and cannot have, each with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from opencm.actions.check import check_profile
from opencm.profile.model import load_profile
from tests.actions.conftest import make_profile
from tests.kit.conftest import run_cli
from tests.windows_profiles import ras_book, write_windows_profile


def messages(cmp: Path) -> list[str]:
    return [str(problem) for problem in check_profile(load_profile(cmp))]


def test_the_azure_profile_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write_windows_profile(tmp_path / "Cm")
    code, out, _ = run_cli(capsys, "profile", "check", str(profile.cmp))
    assert code == 1
    [finding] = out.splitlines()
    assert finding.startswith(f"{profile.cms}:29: error: no link for its tunnel: [opencm]")
    assert "RAS entry 'contoso-vnet': VpnStrategy=5: sstp" in finding
    assert "run `opencm import`" in finding


def test_a_ras_book_where_a_dial_up_profile_expects_pops(tmp_path: Path) -> None:
    profile = make_profile(tmp_path, {"ISP": ["PBFile=CONTOSO\\CONTOSO.pbk"]})
    (tmp_path / "CONTOSO" / "CONTOSO.pbk").write_bytes(ras_book("e"))
    [finding] = messages(tmp_path / "CONTOSO.cmp")
    assert finding == (
        f"{profile.cms_path}:8: error: [ISP] PBFile is a RAS phone book (VPN/dial-up entries)"
        " where this dial-up profile expects an MS-CPSP POP phone book"
    )


def test_missing_files_a_windows_library_and_a_bad_route_line(tmp_path: Path) -> None:
    profile = make_profile(
        tmp_path,
        {
            "Connect Actions": [
                r"0=CONTOSO\cmproxy.dll,SetProxy /x",
                r"1=CONTOSO\cmroute.dll,SetRoutes /STATIC_FILE_NAME routes.txt",
            ],
        },
        extra="Icon=CONTOSO\\missing.ico",
    )
    routes = tmp_path / "CONTOSO" / "routes.txt"
    routes.write_text("ADD 10.0.0.0 MASK 255.0.0.0 default\n")
    cms = profile.cms_path
    assert messages(tmp_path / "CONTOSO.cmp") == [
        f"{cms}:7: error: [Connection Manager] Icon=CONTOSO\\missing.ico names a file that is"
        " not in the profile",
        f"{cms}:9: error: [Connect Actions] cmproxy.dll,SetProxy: a Windows library with no"
        " Linux replacement (no .so beside it, no built-in)",
        f"{routes}:1: error: expected `ADD DEST MASK mask gateway|default METRIC n|default"
        " [IF n|default]`, found 4 word(s) after ADD",
    ]


def test_shipped_config_with_an_absolute_path_and_a_readable_key(tmp_path: Path) -> None:
    config = tmp_path / "CONTOSO" / "main.ovpn"
    profile = make_profile(
        tmp_path,
        {"opencm": ["VpnServer0=Main", "Link&Main=openvpn", "Config&Main=CONTOSO\\main.ovpn"]},
    )
    config.write_text(
        "client\nremote 192.0.2.1\nca /etc/openvpn/ca.crt\n"
        "<key>\n-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n</key>\n"
    )
    config.chmod(0o644)
    found = messages(tmp_path / "CONTOSO.cmp")
    assert found == [
        f"{config}: error: holds key material but is mode 0644: others can read it (chmod 600)",
        f"{config}:3: warning: ca names the absolute path /etc/openvpn/ca.crt: the profile works"
        " only on a machine where it exists (`opencm import` carries the file instead)",
    ]
    config.chmod(0o600)
    assert len(messages(tmp_path / "CONTOSO.cmp")) == 1
    assert profile.cms_path.exists()


def test_a_link_config_naming_files_the_kit_lacks_fails_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`opencm import` of an IKEv2 Windows profile without --ca/--client-cert writes a kit whose
    link config names gateway-ca.crt, client.crt and client.key; building it as it is must not
    say "Built" with exit 0: that profile could never connect."""
    profile = write_windows_profile(
        tmp_path / "win", book=ras_book("CONTOSO", strategy=7, device="WAN Miniport (IKEv2)")
    )
    kit = tmp_path / "kit"
    code, out, err = run_cli(capsys, "import", str(profile.cmp), "--out", str(kit))
    assert code == 1 and "needed" in out, (out, err)
    assert f"Next: give what is needed, then opencm kit build {kit} --key ADMIN.key" in out
    code, out, err = run_cli(capsys, "kit", "build", str(kit))
    assert code == 1, (out, err)
    config = next((kit / "build").rglob("*.ikev2"))
    for key, name in (("ca", "gateway-ca.crt"), ("cert", "client.crt"), ("key", "client.key")):
        assert f"{key} names {name}, which is not in the profile" in err + out
    # With the files beside the config, the same profile is clean of these findings.
    for name in ("gateway-ca.crt", "client.crt", "client.key"):
        (config.parent / name).write_text("-\n")
    (config.parent / "client.key").chmod(0o600)
    built = next((kit / "build").glob("*/*.cmp"))
    assert not [m for m in messages(built) if "is not in the profile (beside" in m]
