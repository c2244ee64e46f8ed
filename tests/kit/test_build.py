"""``opencm kit build``: the service-profile files in CMAK's shape, and hand edits that survive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencm.actions.api import ActionPoint
from opencm.errors import InputError
from opencm.kit.build import build_kit
from opencm.kit.spec import load_spec
from opencm.profile.ini import IniFile
from opencm.profile.model import ConnectionType, load_profile
from tests.kit.conftest import run_cli, tree

EXPECTED_FILES = {
    "CONTOSO.cmp",
    "CONTOSO/CONTOSO.cms",
    "CONTOSO/CONTOSO.inf",
    "CONTOSO/CONTOSO.pbk",
    "CONTOSO/CONTOSO.pbr",
    "CONTOSO/CONTOSO.ver",
    "CONTOSO/contoso.ovpn",
    "CONTOSO/routes.sh",
    "CONTOSO/help.html",
    "CONTOSO/ca.crt",
}
CMAK_SECTIONS = [
    "Profile Format",
    "Connection Manager",
    "ISP",
    "Service Types",
    "Animated Logo",
    "Animation Actions",
    *(point.section for point in ActionPoint),
    "Menu Options",
    "opencm",
]


def test_build_writes_the_installed_layout(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    assert tree(result.root) == EXPECTED_FILES
    assert set(result.files) == EXPECTED_FILES
    assert result.conflicts == []
    assert (result.root / "CONTOSO" / "routes.sh").stat().st_mode & 0o111
    assert (result.root / "CONTOSO" / "CONTOSO.pbk").read_bytes() == (
        kit_dir / "pb" / "CONTOSO.pbk"
    ).read_bytes()


def test_cmp_and_cms_have_cmaks_shape(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    cmp = result.cmp_path.read_bytes()
    assert cmp == b"[Profile Format]\r\nVersion=5\r\n\r\n[Connection Manager]\r\n" + (
        b"CMSFile=CONTOSO\\CONTOSO.cms\r\n"
    )
    cms = IniFile.load(result.cms_path)
    assert cms.sections() == CMAK_SECTIONS
    for section in ("Animated Logo", "Pre-Dial Actions", "On-Error Actions", "Menu Options"):
        assert cms.content_lines(section) == []
    get = cms.get
    assert get("Connection Manager", "ServiceName") == "Contoso VPN"
    assert get("Connection Manager", "DUN") == "Contoso VPN"
    assert get("Connection Manager", "TunnelDUN") == "CONTOSO Tunnel"
    assert get("Connection Manager", "TunnelAddress") == "vpn.contoso.example"
    assert [get("Connection Manager", k) for k in ("Dialup", "Direct", "Tunnel")] == ["1"] * 3
    assert get("Connection Manager", "RedialCount") == "3"
    assert get("Connection Manager", "AutoReconnect") == "1"
    assert get("Connection Manager", "HelpFile") == "CONTOSO\\help.html"
    assert get("ISP", "PBFile") == "CONTOSO\\CONTOSO.pbk"
    assert get("ISP", "RegionFile") == "CONTOSO\\CONTOSO.pbr"
    assert get("ISP", "Mask&SurchargeSignon") == "0x0041"
    assert get("ISP", "Match&SurchargeSignon") == "0x0040"
    assert get("ISP", "FilterA&") == "NosurchargeSignon"
    assert get("Service Types", "ISDN MultiCast") == "MultiCastISDN"
    assert [(e.key, e.value) for e in cms.entries("Connect Actions")] == [
        ("0", "CONTOSO\\routes.sh %ServiceName% %Profile%"),
        ("0&Flags", "48"),  # non-interactive 0x10 | included 0x20, as in the real Azure line
        ("0&Description", "to update your routing table"),
    ]
    assert [(e.key, e.value) for e in cms.entries("Pre-Init Actions")] == [
        ("0", "logger -t opencm starting"),
        ("0&Flags", "8"),
        ("0&Description", "log the start"),
    ]
    ours = {e.key: e.value for e in cms.entries("opencm")}
    pba_key = (kit_dir / "keys" / "pba.pub").read_text().splitlines()[1]
    assert ours == {
        "ProfileVersion": "2",
        "PhoneBookURL": "http://127.0.0.1:8080/pbserver/pbserver.dll",
        "PhoneBookKey": pba_key,
        "VpnServer0": "Main",
        "Address&Main": "vpn.contoso.example",
        "Link&Main": "openvpn",
        "Config&Main": "CONTOSO\\contoso.ovpn",
        "VpnServer1": "Backup",
        "Address&Backup": "backup.contoso.example",
        "Link&Backup": "networkmanager",
        "Connection&Backup": "Contoso backup",
        # A double-dial kit without a [dialup] table leaves the modem to each user.
        "ModemDevice": "ask",
        "ModemBaud": "115200",
        "ModemInit": "ATZ",
        "ModemCarrier": "auto",
    }
    assert get("Connection Manager", "UseSameUserName") == "0"


def test_default_flags_and_descriptions_follow_the_custom_actions_keys(kit_dir: Path) -> None:
    """Custom actions keys: the default ``&Flags`` (0) does not appear, and the description
    defaults to the program's name."""
    spec = kit_dir / "kit.toml"
    spec.write_text(
        spec.read_text()
        + '\n[[action]]\npoint = "disconnect"\nprogram = "/usr/bin/logger"\n'
        + 'parameters = "-t opencm bye"\n'
    )
    cms = IniFile.load(build_kit(kit_dir).cms_path)
    assert [(e.key, e.value) for e in cms.entries("Disconnect Actions")] == [
        ("0", "/usr/bin/logger -t opencm bye"),
        ("0&Description", "logger"),
    ]


def test_every_built_file_is_crlf_and_round_trips(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    for name in ("CONTOSO.cmp", "CONTOSO/CONTOSO.cms", "CONTOSO/CONTOSO.inf"):
        data = (result.root / name).read_bytes()
        assert data.count(b"\n") == data.count(b"\r\n") > 0, name
        assert IniFile.parse(data).render() == data


def test_built_profile_loads_with_the_profile_model(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    profile = load_profile(result.cmp_path)
    assert profile.cms_path == result.cms_path
    assert profile.short_name == "CONTOSO"
    assert profile.service_name == "Contoso VPN"
    assert profile.supported_types() == [ConnectionType.DIRECT, ConnectionType.DOUBLE]
    assert profile.default_connection_type() is ConnectionType.DIRECT
    phonebook = profile.phonebook_path()
    assert phonebook is not None and phonebook.is_file()
    assert profile.inf is not None
    assert profile.inf.get("Strings", "ShortSvcName") == "CONTOSO"
    assert load_profile(result.root).cms_path == result.cms_path


def test_inf_lists_every_service_file(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    inf = IniFile.load(result.root / "CONTOSO" / "CONTOSO.inf")
    assert inf.get("version", "Signature") == "$chicago$"
    assert inf.get("Strings", "ServiceName") == "Contoso VPN"
    assert inf.get("CMAK Status", "UpdatePhonebook") == "1"
    assert inf.get("CMAK Status", "PhoneName") == "CONTOSO"
    copied = [c.text for c in inf.content_lines("Xnstall.CopyFiles")]
    assert copied[0] == "CONTOSO.cms,,,4"
    assert {c.split(",")[0] for c in copied} == {
        Path(p).name for p in EXPECTED_FILES if p.startswith("CONTOSO/")
    }
    assert [c.text for c in inf.content_lines("Xnstall.CopyFiles.ICM")] == ["CONTOSO.cmp"]
    assert [(e.key, e.value) for e in inf.entries("Extra Files")] == [("0", "ca.crt")]
    assert inf.has_section("Merge Profiles") and inf.entries("Merge Profiles") == []


def test_rebuild_without_changes_changes_nothing(kit_dir: Path) -> None:
    first = build_kit(kit_dir)
    before = {name: (first.root / name).read_bytes() for name in first.files}
    second = build_kit(kit_dir)
    assert second.conflicts == []
    assert {name: (second.root / name).read_bytes() for name in second.files} == before


def _edit(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))


def test_hand_edits_survive_and_conflicts_are_reported(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    cms = result.cms_path
    # Advanced customization: a key the kit does not control, a comment, and a kit key.
    _edit(cms, b"AutoReconnect=1\r\n", b"AutoReconnect=1\r\nHideDomain=1\r\n; site tweak\r\n")
    _edit(cms, b"RedialCount=3\r\n", b"RedialCount=9\r\n")
    # The spec changes a key nobody edited by hand: the rebuild updates it silently.
    spec = (kit_dir / "kit.toml").read_text()
    (kit_dir / "kit.toml").write_text(
        spec.replace("redial_count = 3", "redial_count = 3\nredial_delay = 10")
    )

    rebuilt = build_kit(kit_dir)
    ini = IniFile.load(cms)
    assert ini.get("Connection Manager", "HideDomain") == "1"
    assert b"; site tweak\r\n" in cms.read_bytes()
    assert ini.get("Connection Manager", "RedialDelay") == "10"
    assert ini.get("Connection Manager", "RedialCount") == "9"  # kept
    assert [(c.file, c.section, c.key, c.current, c.wanted) for c in rebuilt.conflicts] == [
        ("CONTOSO/CONTOSO.cms", "Connection Manager", "RedialCount", "9", "3")
    ]
    assert rebuilt.conflicts[0].line == ini.line_of("Connection Manager", "RedialCount")
    assert IniFile.parse(cms.read_bytes()).render() == cms.read_bytes()

    # Reported again on every rebuild until resolved; --overwrite resolves it.
    assert len(build_kit(kit_dir).kept_hand_edits) == 1
    overwritten = build_kit(kit_dir, overwrite=True)
    assert [c.overwritten for c in overwritten.conflicts] == [True]
    ini = IniFile.load(cms)
    assert ini.get("Connection Manager", "RedialCount") == "3"
    assert ini.get("Connection Manager", "HideDomain") == "1"
    assert build_kit(kit_dir).conflicts == []


def test_cli_build_exits_1_and_names_the_line_of_a_kept_hand_edit(
    kit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run_cli(capsys, "kit", "build", str(kit_dir))
    assert code == 0
    cms = kit_dir / "build" / "CONTOSO" / "CONTOSO" / "CONTOSO.cms"
    _edit(cms, b"ServiceName=Contoso VPN", b"ServiceName=Contoso Remote")
    code, _, err = run_cli(capsys, "kit", "build", str(kit_dir))
    assert code == 1
    line = IniFile.load(cms).line_of("Connection Manager", "ServiceName")
    assert f"CONTOSO/CONTOSO.cms:{line}: [Connection Manager] ServiceName hand-edited" in err
    assert "--overwrite" in err


def test_removed_action_keys_are_deleted_unless_hand_edited(kit_dir: Path) -> None:
    build_kit(kit_dir)
    spec = (kit_dir / "kit.toml").read_text()
    start = spec.index('[[action]]\npoint = "pre-init"')
    (kit_dir / "kit.toml").write_text(spec[:start] + spec[spec.index("[files]") :])
    rebuilt = build_kit(kit_dir)
    assert rebuilt.conflicts == []
    assert IniFile.load(rebuilt.cms_path).entries("Pre-Init Actions") == []


def test_a_hand_edited_key_the_kit_would_remove_is_reported(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    _edit(result.cms_path, b"0=logger -t opencm starting", b"0=logger -t site starting")
    spec = (kit_dir / "kit.toml").read_text()
    start = spec.index('[[action]]\npoint = "pre-init"')
    (kit_dir / "kit.toml").write_text(spec[:start] + spec[spec.index("[files]") :])
    rebuilt = build_kit(kit_dir)
    assert [(c.section, c.key, c.current, c.wanted) for c in rebuilt.conflicts] == [
        ("Pre-Init Actions", "0", "logger -t site starting", None)
    ]
    assert "the kit removes it" in str(rebuilt.conflicts[0])
    entries = IniFile.load(rebuilt.cms_path).entries("Pre-Init Actions")
    assert [e.key for e in entries] == ["0"]  # kept; its untouched Flags/Description went


def test_a_hand_added_action_after_the_kits_survives(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    _edit(
        result.cms_path,
        b"0&Description=to update your routing table\r\n",
        b"0&Description=to update your routing table\r\n1=notify-send hello\r\n",
    )
    rebuilt = build_kit(kit_dir)
    assert rebuilt.conflicts == []
    assert IniFile.load(rebuilt.cms_path).get("Connect Actions", "1") == "notify-send hello"


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('short = "CONTOSO"', 'short = "CONTOSO_VPN"', "service.short"),
        ('short = "CONTOSO"', 'short = "12345"', "service.short"),
        ('link = "openvpn"', 'link = "pptp"', "vpn[0].link"),
        ('point = "post-connect"', 'point = "post-disconnect"', "action[0].point"),
        ("redial_count = 3", 'redial_count = "three"', "service.redial_count"),
        ('help = "files/help.html"', 'help = "../help.html"', "files.help"),
        ("version = 2", 'version = 2\ncolour = "blue"', "service.colour"),
        ('name = "Contoso VPN"', 'name = "Contoso \\"VPN\\""', "service.name"),
        ('point = "pre-init"', 'point = "pre-dial"', "action[1].point"),
    ],
)
def test_spec_mistakes_name_the_field(kit_dir: Path, old: str, new: str, field: str) -> None:
    spec = kit_dir / "kit.toml"
    text = spec.read_text()
    if "pre-dial" in new:  # only a profile that dials may have pre-dial actions
        text = text.replace('["direct", "double"]', '["direct"]')
    spec.write_text(text.replace(old, new))
    with pytest.raises(InputError) as caught:
        load_spec(kit_dir)
    assert caught.value.field == field
    assert caught.value.path == spec


def test_missing_kit_file_is_a_clear_error_and_writes_nothing(
    kit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (kit_dir / "files" / "help.html").unlink()
    code, _, err = run_cli(capsys, "kit", "build", str(kit_dir))
    assert code == 2
    assert "files/help.html does not exist in the kit folder" in err
    assert "Traceback" not in err
    assert not (kit_dir / "build" / "CONTOSO").exists()


def test_a_key_deleted_by_hand_is_reported_not_restored(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    _edit(result.cms_path, b"AutoReconnect=1\r\n", b"")
    rebuilt = build_kit(kit_dir)
    assert [(c.key, c.current, c.wanted) for c in rebuilt.conflicts] == [
        ("AutoReconnect", None, "1")
    ]
    assert IniFile.load(result.cms_path).get("Connection Manager", "AutoReconnect") is None
    build_kit(kit_dir, overwrite=True)
    assert IniFile.load(result.cms_path).get("Connection Manager", "AutoReconnect") == "1"


def test_an_empty_section_deleted_by_hand_comes_back(kit_dir: Path) -> None:
    result = build_kit(kit_dir)
    _edit(result.cms_path, b"[Menu Options]\r\n\r\n", b"")
    build_kit(kit_dir)
    assert IniFile.load(result.cms_path).has_section("Menu Options")


def test_build_runs_profile_check_on_the_result(
    kit_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_kit(kit_dir)
    cms = kit_dir / "build" / "CONTOSO" / "CONTOSO" / "CONTOSO.cms"
    _edit(cms, b"AutoReconnect=1\r\n", b"AutoReconnect=1\r\nIdleTimeout=1.5\r\n")
    code, out, _ = run_cli(capsys, "kit", "build", str(kit_dir), "--json")
    assert code == 1
    problems = json.loads(out)["problems"]
    assert [p["line"] for p in problems] == [
        IniFile.load(cms).line_of("Connection Manager", "IdleTimeout")
    ]
    assert "IdleTimeout" in problems[0]["message"]
