"""``opencm import``: every source shape through the real command, and the kits it writes."""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from opencm.kit.build import build_kit
from opencm_lab.lab import generate_pki
from tests.kit.conftest import run_cli
from tests.windows_profiles import (
    AZURE_GATEWAY,
    AZURE_SHORT,
    ras_book,
    write_azure_zip,
    write_cab,
    write_iexpress,
    write_windows_profile,
)

PRIVATE = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"
STATIC = "-----BEGIN OpenVPN Static key V1-----\nab\n-----END OpenVPN Static key V1-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def run_import(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_cli(capsys, "import", *args, "--json")
    assert "Traceback" not in err
    return code, (json.loads(out) if out.strip() else {}), err


def items(report: dict[str, Any], outcome: str) -> dict[str, str]:
    return {i["what"]: i["detail"] for i in report["items"] if i["outcome"] == outcome}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- .ovpn ---------------------------------------------------------------------------------


def test_ovpn_inline_and_referenced_files_no_paths_owned_options_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = tmp_path / "admin"
    (admin / "keys").mkdir(parents=True)
    (admin / "keys" / "client.key").write_text(PRIVATE)
    (admin / "ta.key").write_text(
        "-----BEGIN OpenVPN Static key V1-----\nab\n-----END OpenVPN Static key V1-----\n"
    )
    ovpn = admin / "client.ovpn"
    ovpn.write_text(
        "client\ndev tun\nproto udp\nremote vpn.example.net 1194\n"
        f"<ca>\n{CERT}</ca>\n<cert>\n{CERT}</cert>\n"
        f"key {admin / 'keys' / 'client.key'}\n"  # absolute
        "tls-auth ta.key 1\n"  # relative to the .ovpn
        "script-security 2\nup /etc/openvpn/update-resolv-conf\ndown /etc/openvpn/down.sh\n"
        "management 127.0.0.1 7505\ndaemon\nlog /var/log/openvpn.log\n"
        "auth-user-pass /etc/openvpn/creds.txt\nplugin /usr/lib/x.so\n"
    )
    kit = tmp_path / "kit"
    code, report, err = run_import(capsys, str(ovpn), "--out", str(kit))
    assert code == 0, err
    assert report["kind"] == "ovpn" and report["complete"]
    dropped = items(report, "dropped")
    assert set(dropped) >= {
        "script-security",
        "up",
        "down",
        "management",
        "daemon",
        "log",
        "plugin",
    }
    assert "opencm runs programs only as custom actions" in dropped["up"]
    assert "no path is shipped" in items(report, "carried")["key"]
    assert "asks for the user name" in items(report, "mapped")["auth-user-pass"]
    spec = tomllib.loads((kit / "kit.toml").read_text())
    [server] = spec["vpn"]
    assert (server["address"], server["link"]) == ("vpn.example.net", "openvpn")
    config = kit / server["config"]
    text = config.read_text()
    assert str(admin) not in text and "/etc/" not in text and "/var/" not in text
    assert "<key>\n-----BEGIN PRIVATE KEY-----" in text and "<tls-auth>" in text
    assert "key-direction 1" in text and "auth-user-pass\n" in text
    assert mode(config) == 0o600  # it holds the private key
    # The kit builds, and the private key stays 0600 in the build.
    built = build_kit(kit)
    shipped = next(built.root.rglob("*.ovpn"))
    assert mode(shipped) == 0o600


def test_ovpn_with_an_unreadable_referenced_file_is_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ovpn = tmp_path / "c.ovpn"
    ovpn.write_text("client\nremote 192.0.2.1\nca missing-ca.crt\n")
    code, report, _ = run_import(capsys, str(ovpn), "--out", str(tmp_path / "kit"))
    assert code == 1 and not report["complete"]
    assert "missing-ca.crt cannot be read" in items(report, "needed")["ca"]


# --- WireGuard -----------------------------------------------------------------------------


def test_wireguard_conf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "wg0.conf"
    conf.write_text(
        "[Interface]\nPrivateKey = aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=\n"
        "Address = 10.9.0.2/24\nDNS = 10.9.0.1\nPostUp = iptables -A FORWARD\n\n"
        "[Peer]\nPublicKey = aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd28=\n"
        "Endpoint = wg.example.net:51820\nAllowedIPs = 10.9.0.0/24\n"
    )
    kit = tmp_path / "kit"
    code, report, err = run_import(capsys, str(conf), "--out", str(kit))
    assert code == 0, err
    assert "PostUp" in items(report, "dropped") and "DNS" in items(report, "mapped")
    spec = tomllib.loads((kit / "kit.toml").read_text())
    [server] = spec["vpn"]
    assert (server["address"], server["link"]) == ("wg.example.net", "wireguard")
    shipped = kit / server["config"]
    assert "PostUp" not in shipped.read_text() and mode(shipped) == 0o600


# --- Windows profiles ----------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Any:
    return generate_pki(tmp_path / "pki", server_name=AZURE_GATEWAY)


def ikev2_profile(root: Path) -> Any:
    return write_windows_profile(
        root, book=ras_book("contoso-vnet", strategy=14, device="WAN Miniport (IKEv2)")
    )


def check_ikev2_kit(kit: Path, report: dict[str, Any], ca: str = "ca.crt") -> None:
    spec = tomllib.loads((kit / "kit.toml").read_text())
    assert spec["service"]["short"] == AZURE_SHORT  # the GUID short name is kept
    assert spec["service"]["redial_count"] == 99
    [server] = spec["vpn"]
    assert (server["link"], server["address"]) == ("ikev2", AZURE_GATEWAY)
    config = (kit / server["config"]).read_text()
    assert "auth = eap-tls" in config and f"ca = {ca}" in config
    [action] = spec["action"]
    assert (action["point"], action["program"]) == ("post-connect", "cmroute.dll")
    assert action["parameters"].startswith("SetRoutes /Profile %PROFILE% /STATIC_FILE_NAME")
    assert "files/routes.txt" in spec["files"]["additional"]
    assert f"files/{ca}" in spec["files"]["additional"]
    assert mode(kit / "files" / "client.key") == 0o600
    assert "cmroute.SetRoutes" in " ".join(items(report, "mapped").values())
    assert report["link"] == "ikev2"


def test_profile_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], pki: Any) -> None:
    profile = ikev2_profile(tmp_path / "Cm")
    kit = tmp_path / "kit"
    code, report, err = run_import(
        capsys, str(profile.root), "--out", str(kit), "--ca", str(pki.ca_cert),
        "--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key),
    )  # fmt: skip
    assert code == 0, err
    check_ikev2_kit(kit, report)
    # The logon dialog's banner is carried like the icons (opencm-gui shows it).
    assert items(report, "carried")["Logo"] == "azurevpnbanner.bmp"
    assert tomllib.loads((kit / "kit.toml").read_text())["files"]["logo"] == (
        "files/azurevpnbanner.bmp"
    )


def test_cab_and_iexpress_exe(tmp_path: Path, capsys: pytest.CaptureFixture[str], pki: Any) -> None:
    profile = ikev2_profile(tmp_path / "Cm")
    cab = write_cab(profile.root, tmp_path / "profile.cab")
    exe = write_iexpress(cab, tmp_path / "VpnClientSetupAmd64.exe")
    for source, kind in ((cab, "cab"), (exe, "iexpress")):
        kit = tmp_path / f"kit-{kind}"
        code, report, err = run_import(
            capsys, str(source), "--out", str(kit), "--ca", str(pki.ca_cert),
            "--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key),
        )  # fmt: skip
        assert code == 0, err
        assert report["kind"] == kind
        check_ikev2_kit(kit, report)
        # Members are named inside the archive, not in a scratch folder that is gone.
        paths = {item["path"] for item in report["items"] if item["path"]}
        assert f"{source}!routes.txt" in paths
        assert all(p.startswith((f"{source}!", str(pki.directory))) for p in paths)


def test_the_azure_sstp_profile_as_it_is_maps_to_the_sstp_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pki: Any
) -> None:
    profile = write_windows_profile(tmp_path / "Cm")  # VpnStrategy=5, SSTP, EAP-TLS
    kit = tmp_path / "kit"
    code, report, _ = run_import(capsys, str(profile.cmp), "--out", str(kit))
    assert code == 1 and report["link"] == "sstp"  # the user's certificate is needed
    mapped = items(report, "mapped")["RAS entry 'contoso-vnet'"]
    assert "sstp link to azuregateway" in mapped and "needs PPP in the kernel (/dev/ppp)" in mapped
    assert "--client-cert" in items(report, "needed")["client certificate"]
    [server] = tomllib.loads((kit / "kit.toml").read_text())["vpn"]
    assert server["link"] == "sstp"
    config = (kit / server["config"]).read_text()
    assert f"server = {AZURE_GATEWAY}" in config and "auth = eap-tls" in config


def test_azure_zip_prefers_openvpn_then_ikev2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pki: Any
) -> None:
    profile = ikev2_profile(tmp_path / "Cm")
    exe = write_iexpress(write_cab(profile.root, tmp_path / "p.cab"), tmp_path / "setup.exe")
    ovpn = (
        f"client\nremote {AZURE_GATEWAY} 443\nproto tcp\ndev tun\n<ca>\n{CERT}</ca>\n"
        "<cert>\n$CLIENTCERTIFICATE\n</cert>\n<key>\n$PRIVATEKEY\n</key>\n"
    )
    root = pki.ca_cert.read_bytes()
    both = write_azure_zip(tmp_path / "both.zip", exe, ovpn=ovpn, root_cert=root,
                           vpn_type="IkeV2, OpenVPN")  # fmt: skip
    code, report, err = run_import(capsys, str(both), "--out", str(tmp_path / "k1"),
                                   "--client-cert", str(pki.client_cert),
                                   "--client-key", str(pki.client_key))  # fmt: skip
    assert code == 0, err
    assert report["link"] == "openvpn" and "preferred over IKEv2" in report["link_because"]
    shipped = next((tmp_path / "k1" / "files").glob("*.ovpn"))
    assert "$PRIVATEKEY" not in shipped.read_text() and mode(shipped) == 0o600

    only_ike = write_azure_zip(tmp_path / "ike.zip", exe, root_cert=pki.ca_cert.read_bytes())
    code, report, err = run_import(capsys, str(only_ike), "--out", str(tmp_path / "k2"),
                                   "--client-cert", str(pki.client_cert),
                                   "--client-key", str(pki.client_key))  # fmt: skip
    assert code == 0, err
    assert report["link"] == "ikev2" and "no OpenVPN flavour" in report["link_because"]
    check_ikev2_kit(tmp_path / "k2", report, ca="VpnServerRoot.cer")  # from Generic/


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("x.bin", b"\x00\x01garbage", "expected a Windows CM profile"),
        ("x.cab", b"MSCF" + b"\x00" * 40, "not a readable cabinet"),
        ("x.exe", b"MZ" + b"\x00" * 100, "no cabinet (MSCF) inside"),
        ("x.zip", b"PK\x03\x04broken", "not a readable zip file"),
        ("x.ovpn", b"client\n<ca>\nnever closed\n", "the <ca> block is never closed"),
        ("wg.conf", b"[Interface]\nPrivateKey = x\n", "needs an Address"),
    ],
)
def test_bad_sources_exit_2_with_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes, message: str
) -> None:
    source = tmp_path / name
    source.write_bytes(data)
    code, out, err = run_cli(capsys, "import", str(source), "--out", str(tmp_path / "kit"))
    assert code == 2, out + err
    assert f"opencm: error: {source}" in err and message in err
    assert "Traceback" not in err


def test_a_cab_member_leaving_the_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "evil.cms").write_text("x")
    subprocess.run(["gcab", "-c", str(tmp_path / "bad.cab"), "a/evil.cms"], cwd=tmp_path,
                   check=True)  # fmt: skip
    data = (tmp_path / "bad.cab").read_bytes()
    assert b"a\\evil.cms" in data
    data = data.replace(b"a\\evil.cms", b"..\\evil.cm")  # same length: a valid cabinet
    (tmp_path / "bad.cab").write_bytes(data)
    code, _, err = run_cli(
        capsys, "import", str(tmp_path / "bad.cab"), "--out", str(tmp_path / "k")
    )
    assert code == 2 and "leaves the folder" in err, err
    assert not (tmp_path / "evil.cm").exists() and not (tmp_path / "evil.c").exists()


def test_out_must_be_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ovpn = tmp_path / "c.ovpn"
    ovpn.write_text("client\nremote 192.0.2.1\n")
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "mine.txt").write_text("x")
    code, _, err = run_cli(capsys, "import", str(ovpn), "--out", str(tmp_path / "kit"))
    assert code == 2 and "not empty" in err
    assert os.listdir(tmp_path / "kit") == ["mine.txt"]


@pytest.mark.parametrize("shape", ["folder", "cmp", "cab", "exe"])
def test_install_of_a_windows_profile_says_use_import_before_any_trust_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: str
) -> None:
    profile = write_windows_profile(tmp_path / "Cm")
    cab = write_cab(profile.root, tmp_path / "p.cab")
    target = {
        "folder": profile.root,
        "cmp": profile.cmp,
        "cab": cab,
        "exe": write_iexpress(cab, tmp_path / "setup.exe"),
    }[shape]
    # No trusted key anywhere: the answer must still be about the input, not the trust.
    code, _, err = run_cli(capsys, "install", str(target))
    assert code == 2, err
    assert "not a package: use `opencm import`" in err and "trusted key" not in err


def test_connect_on_the_windows_profile_as_it_is_names_its_ras_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = ikev2_profile(tmp_path / "Cm")
    code, _, err = run_cli(capsys, "connect", str(profile.cmp), "--foreground", "--unattended")
    assert code == 2, err
    assert "VpnServer0 is missing" in err
    assert "RAS entry 'contoso-vnet': VpnStrategy=14: ikev2" in err
    assert "run `opencm import`" in err
