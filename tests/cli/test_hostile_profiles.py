"""Profiles that once ended in a traceback: each now gets a message and an exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.profile.test_model import install_contoso


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # stdout is a pipe, as in `opencm … | jq`: nothing may depend on a terminal's encoding.
    return subprocess.run(
        [sys.executable, "-m", "opencm", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


def edited_profile(root: Path, old: bytes, new: bytes) -> Path:
    cmp = install_contoso(root)
    cms = root / "contoso" / "Contoso.cms"
    data = cms.read_bytes()
    assert old in data
    cms.write_bytes(data.replace(old, new, 1))
    (root / "contoso" / "CONTOSO.pbk").write_bytes(b"1,1,1,Seattle,206,5550100,0,0,0,0,0\r\n")
    return cmp


def assert_clean_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("region_file", "message"),
    [
        (b"CONTOSO\\nope.pbr", "No such file or directory"),
        (b"CONTOSO\\folder.pbr", "Is a directory"),
    ],
)
def test_pops_with_an_unreadable_region_file(
    tmp_path: Path, region_file: bytes, message: str
) -> None:
    cmp = edited_profile(tmp_path, b"RegionFile=", b"RegionFile=" + region_file)
    (tmp_path / "contoso" / "folder.pbr").mkdir()
    result = run("pops", str(cmp), cwd=tmp_path)
    assert_clean_failure(result, "cannot read the region file ([ISP] RegionFile)", message)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"PBFile=CONTOSO", b"PBFile=CON\0TOSO"),
        (b"RegionFile=", b"RegionFile=a\0b.pbr"),
    ],
)
def test_pops_with_a_nul_in_a_path(tmp_path: Path, old: bytes, new: bytes) -> None:
    cmp = edited_profile(tmp_path, old, new)
    result = run("pops", str(cmp), cwd=tmp_path)
    assert_clean_failure(result, "contains a NUL character", "Contoso.cms")


@pytest.mark.parametrize("program", ["a" * 300, "CONTOSO\\" + "a" * 300, "/bin/" + "a" * 300])
def test_a_program_name_longer_than_the_system_allows(tmp_path: Path, program: str) -> None:
    cmp = edited_profile(
        tmp_path,
        b"[Pre-Connect Actions]\r\n",
        b"[Pre-Connect Actions]\r\n0=" + program.encode() + b" x\r\n",
    )
    plan = run("actions", "plan", str(cmp), "--json", cwd=tmp_path)
    assert plan.returncode in (0, 1) and "Traceback" not in plan.stderr, plan.stderr
    ran = run("actions", "run", "pre-connect", str(cmp), cwd=tmp_path)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert "not found" in ran.stdout + ran.stderr


def test_a_lone_surrogate_in_a_utf16_profile_prints_on_a_pipe(tmp_path: Path) -> None:
    cmp = install_contoso(tmp_path)
    cms = tmp_path / "contoso" / "Contoso.cms"
    text = (
        cms.read_bytes().decode("cp1252").replace("ServiceName=Contoso VPN", "ServiceName=VPN X", 1)
    )
    encoded = b"\xff\xfe" + text.encode("utf-16-le")
    at = encoded.index("X".encode("utf-16-le"), 2)
    cms.write_bytes(encoded[:at] + b"\x00\xd8" + encoded[at + 2 :])  # a high surrogate alone
    shown = run("profile", "show", "--json", str(cmp), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["service_name"] == "VPN \ud800"
    plain = run("profile", "show", str(cmp), cwd=tmp_path)
    assert plain.returncode == 0 and plain.stdout.startswith("VPN \\ud800 ")
