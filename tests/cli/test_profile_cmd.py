"""``opencm profile``: exit codes, JSON, errors without tracebacks, atomic edits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from tests.profile.test_model import FIXTURES, install_contoso


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it: exit code and streams, no test harness between."""
    return subprocess.run(
        [sys.executable, "-m", "opencm", *args], capture_output=True, text=True, timeout=60
    )


def test_check_reports_problems_with_file_and_line(tmp_path: Path) -> None:
    cmp = install_contoso(tmp_path)
    result = run("profile", "check", str(cmp))
    assert result.returncode == 1
    cms = tmp_path / "contoso" / "Contoso.cms"
    assert result.stdout.splitlines() == [
        # What connect would say too: this Windows-made profile names no opencm link, no files.
        f"{cms}:14: error: no link for its tunnel: [opencm] VpnServer0 is missing",
        f"{cms}:17: warning: [Connection Manager] IdleTimeout='1.1' read as the integer 1",
        f"{cms}:20: error: [ISP] PBFile=CONTOSO\\CONTOSO.pbk names a file that is not in the"
        " profile",
        f"{cms}:32: error: cmroute's route file routes.txt is not in the profile",
        f"{cms}:44: warning: [connection manager] repeats the section at line 4; "
        "only the first is ever read",
        f"{cms}:47: warning: [Connection Manager] repeats the section at line 4; "
        "only the first is ever read",
        f"{cms}:52: warning: key repeats line 51; only the first value is read",
        f"{cms}:53: warning: 'just text without an equals sign' has no '=': not a key",
    ]
    assert "Traceback" not in result.stderr


def test_check_clean_profile_exits_0(tmp_path: Path) -> None:
    cms = tmp_path / "clean.cms"
    cms.write_bytes(
        b"[Connection Manager]\r\nServiceName=Clean\r\nTunnel=1\r\n"
        b"[opencm]\r\nVpnServer0=Main\r\nLink&Main=networkmanager\r\nConnection&Main=C\r\n"
    )
    (tmp_path / "clean.cmp").write_bytes(b"[Connection Manager]\r\nCMSFile=clean.cms\r\n")
    result = run("profile", "check", str(tmp_path / "clean.cmp"), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["problems"] == []


@pytest.mark.parametrize("name", ["missing.cmp", "notes.txt"])
def test_unreadable_profile_exits_2_without_traceback(tmp_path: Path, name: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = run("profile", "check", str(tmp_path / name))
    assert result.returncode == 2
    assert result.stderr.startswith(f"opencm: error: {tmp_path / name}: ")
    assert "Traceback" not in result.stderr


def test_show_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["profile", "show", str(install_contoso(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["service_name"] == "Contoso VPN"
    assert info["files"]["cmp"]["encoding"] == "UTF-16LE with BOM"
    assert info["actions"]["post-connect"] == 1
    assert info["connection_types"] == ["direct"]


def test_get_and_set_round_trip_only_the_touched_line(tmp_path: Path) -> None:
    cms = tmp_path / "contoso.cms"
    original = (FIXTURES / "contoso.cms").read_bytes()
    cms.write_bytes(original)
    assert run("profile", "get", str(cms), "connection manager", "redialdelay").stdout == "5\n"
    result = run("profile", "set", str(cms), "Connection Manager", "RedialDelay", "30")
    assert result.returncode == 0, result.stderr
    assert cms.read_bytes() == original.replace(b"RedialDelay=5\r\n", b"RedialDelay=30\r\n")
    missing = run("profile", "get", str(cms), "Connection Manager", "Nope")
    assert missing.returncode == 1
    assert "is not set" in missing.stderr


@pytest.mark.parametrize(
    ("section", "key", "what"),
    [
        ("a]b", "Key", "section name 'a]b'"),
        ("Connection Manager", "a=b", "key name 'a=b'"),
        ("Connection Manager", ";k", "key name ';k'"),
        ("Connection Manager", "[k]", "key name '[k]'"),
        ("Connection Manager", "  Lead", "key name '  Lead'"),
        (" Sect", "Key", "section name ' Sect'"),
    ],
)
def test_set_refuses_names_that_would_not_read_back(
    tmp_path: Path, section: str, key: str, what: str
) -> None:
    cmp = install_contoso(tmp_path)
    cms = tmp_path / "contoso" / "Contoso.cms"
    before = cms.read_bytes()
    result = run("profile", "set", str(cms), section, key, "value")
    assert result.returncode == 2, result.stderr
    assert what in result.stderr and "Traceback" not in result.stderr
    assert cms.read_bytes() == before
    assert cmp.exists()


def test_show_of_a_profile_with_100000_sections_is_linear(tmp_path: Path) -> None:
    # Listing every section once looked each name up with a scan of all sections: 100,000
    # sections took minutes. Linear, it takes about a second; the suite's timeout is the bound.
    cms = tmp_path / "many.cms"
    cms.write_bytes("".join(f"[S{i}]\r\nK=v{i}\r\n" for i in range(100_000)).encode())
    result = run("profile", "show", "--json", str(cms))
    assert result.returncode == 0, result.stderr
    sections = json.loads(result.stdout)["sections"]
    assert len(sections) == 100_000
    assert sections[-1]["entries"] == [{"key": "K", "value": "v99999", "line": 200_000}]


def test_get_and_set_on_a_cmp_reach_its_cms_and_name_the_file(tmp_path: Path) -> None:
    cmp = install_contoso(tmp_path)
    cms = tmp_path / "contoso" / "Contoso.cms"
    got = run("profile", "get", str(cmp), "Connection Manager", "RedialDelay", "--json")
    assert got.returncode == 0, got.stderr
    document = json.loads(got.stdout)
    assert (document["value"], document["file"]) == ("5", str(cms))
    plain = run("profile", "get", str(cmp), "Connection Manager", "RedialDelay")
    assert plain.stdout == "5\n" and f"(from {cms})" in plain.stderr
    cmp_before = cmp.read_bytes()
    changed = run("profile", "set", str(cmp), "Connection Manager", "RedialDelay", "30")
    assert changed.returncode == 0 and f"in {cms}" in changed.stderr
    assert cmp.read_bytes() == cmp_before  # the key lives in the .cms, and was set there
    assert b"RedialDelay=30\r\n" in cms.read_bytes()
    # A key of the .cmp itself, and a new key, go to the .cmp.
    added = run("profile", "set", str(cmp), "opencm", "PhoneNumber", "5557777")
    assert added.returncode == 0 and f"in {cmp}" in added.stderr
    assert run("profile", "get", str(cmp), "opencm", "PhoneNumber").stdout == "5557777\n"


def test_inf_values_keep_their_quotes_through_get_and_set(tmp_path: Path) -> None:
    inf = tmp_path / "x.inf"
    original = b'[Strings]\r\nServiceName="Contoso VPN"\r\nShortSvcName="CONTOSO"\r\n'
    inf.write_bytes(original)
    value = run("profile", "get", str(inf), "Strings", "ServiceName").stdout.strip()
    assert value == '"Contoso VPN"'
    assert run("profile", "set", str(inf), "Strings", "ServiceName", value).returncode == 0
    assert inf.read_bytes() == original
