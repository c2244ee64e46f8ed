"""``opencm kit new``: the wizard, its flags, and ``--spec``; the kit then builds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from opencm.kit.build import build_kit
from opencm.kit.spec import load_spec
from opencm.profile.ini import IniFile
from tests.kit.conftest import run_cli, tree, write_kit


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """Files on the administrator's machine, outside any kit."""
    return write_kit(tmp_path / "admin-files")


def test_no_input_builds_the_kit_from_flags(
    sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = tmp_path / "newkit"
    code, out, err = run_cli(
        capsys,
        "kit", "new", str(kit), "--no-input",
        "--name", "Fabrikam Remote", "--short", "FABRIKAM", "--profile-version", "4",
        "--type", "dialup", "--type", "double", "--redial-count", "7", "--no-auto-reconnect",
        "--dun", "Fabrikam Dial",
        "--vpn", "Main", "vpn.fabrikam.example", "wireguard", str(sources / "files/contoso.ovpn"),
        "--vpn", "NM", "nm.fabrikam.example", "networkmanager", "Fabrikam (NM)",
        "--phonebook-dir", str(sources / "pb"), "--phonebook-name", "CONTOSO",
        "--pbs-url", "http://127.0.0.1:9/pb", "--pba-key", str(sources / "keys/pba.pub"),
        "--action", '{point="pre-tunnel", program="' + str(sources / "files/routes.sh")
        + '", include=true, interactive=false, run_for="tunnel-only", description="routes"}',
        "--monitored", "/usr/bin/xclock",
        "--help-file", str(sources / "files/help.html"),
        "--file", str(sources / "files/ca.crt"),
    )  # fmt: skip
    assert code == 0, err
    assert "Created" in out
    assert tree(kit) == {
        "kit.toml",
        "files/contoso.ovpn",
        "files/routes.sh",
        "files/help.html",
        "files/ca.crt",
        "phonebook/CONTOSO.pbk",
        "phonebook/CONTOSO.pbr",
        "phonebook/CONTOSO.ver",
        "keys/pba.pub",
    }
    spec = load_spec(kit)
    assert (spec.short_name, spec.version, spec.connection_types) == (
        "FABRIKAM",
        4,
        ["dialup", "double"],
    )
    assert [a.flags for a in spec.actions] == [0x1 | 0x10 | 0x20, 0]
    result = build_kit(kit)
    cms = IniFile.load(result.cms_path)
    assert cms.get("Pre-Tunnel Actions", "0") == "FABRIKAM\\routes.sh"
    assert cms.get("Pre-Tunnel Actions", "0&Flags") == "49"
    assert cms.get("Auto Applications", "0") == "/usr/bin/xclock"
    assert cms.get("opencm", "Link&Main") == "wireguard"
    assert cms.get("opencm", "Connection&NM") == "Fabrikam (NM)"
    assert cms.get("Connection Manager", "Direct") == "0"
    assert cms.get("Connection Manager", "RedialCount") == "7"
    assert cms.get("Connection Manager", "AutoReconnect") == "0"
    assert cms.get("Connection Manager", "DUN") == "Fabrikam Dial"
    assert cms.get("Connection Manager", "TunnelDUN") == "FABRIKAM Tunnel"


def test_no_input_without_a_name_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "kit", "new", str(tmp_path / "k"), "--no-input")
    assert code == 2
    assert "--name and --short are required" in err
    assert not (tmp_path / "k").exists()


def test_spec_file_copies_what_it_names(
    sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = tmp_path / "fromspec"
    code, _, err = run_cli(capsys, "kit", "new", str(kit), "--spec", str(sources / "kit.toml"))
    assert code == 0, err
    built = build_kit(kit)
    reference = build_kit(sources)
    assert tree(built.root) == tree(reference.root)
    assert built.cms_path.read_bytes() == reference.cms_path.read_bytes()
    code, _, err = run_cli(capsys, "kit", "new", str(kit), "--spec", str(sources / "kit.toml"))
    assert code == 2 and "a kit already exists here" in err


def test_the_wizard_asks_like_cmak(sources: Path, tmp_path: Path) -> None:
    kit = tmp_path / "wizard"
    answers = [
        "Woodgrove VPN",  # service name
        "WOODGROVE1",  # short name: too long, asked again
        "WOODGRV",
        "vpn",  # not a connection type: asked again
        "direct",  # connection types
        "Main", "vpn.woodgrove.example", "openvpn",
        str(sources / "files/nope.ovpn"),  # no such file: asked again
        str(sources / "files/contoso.ovpn"),
        "Backup", "nm.woodgrove.example",
        "pptp",  # not a link the registry offers: asked again
        "networkmanager", "Woodgrove (NM)",  # it reads Connection&, not a config file
        "",  # no more servers
        "y", "post-connect", "y", str(sources / "files/routes.sh"), "%ServiceName%",
        "to update your routing table", "n", "all",
        "n",  # no more actions
        "",  # no monitored application
        "",  # icon
        str(sources / "files/help.html"),
        "",  # additional files
        "",  # components
    ]  # fmt: skip
    result = CliRunner().invoke(cli, ["kit", "new", str(kit)], input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "must be 1-8 letters" in result.output
    assert "choose among direct, dialup, double" in result.output
    assert "does not exist" in result.output
    spec = load_spec(kit)
    assert spec.short_name == "WOODGRV"
    assert spec.vpn[0].config == "files/contoso.ovpn"
    assert (spec.vpn[1].link, spec.vpn[1].connection, spec.vpn[1].config) == (
        "networkmanager",
        "Woodgrove (NM)",
        None,
    )
    assert "ikev2" in result.output  # the registry's links are the choices
    assert [(a.point.value, a.program, a.flags) for a in spec.actions] == [
        ("post-connect", "files/routes.sh", 0x10 | 0x20)
    ]
    assert spec.help_file == "files/help.html"
    build_kit(kit)


def test_a_missing_file_named_in_a_flag_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        capsys,
        "kit", "new", str(tmp_path / "k"), "--no-input", "--name", "X", "--short", "X",
        "--vpn", "Main", "vpn.example", "openvpn", str(tmp_path / "missing.ovpn"),
    )  # fmt: skip
    assert code == 2
    assert "missing.ovpn is not a file" in err and "vpn[0].config" in err
    shutil.rmtree(tmp_path / "k", ignore_errors=True)
