"""Logon/boot custom actions: off until a root-owned allow list says otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from opencm.actions.logon import check_logon, logon_allowed
from opencm.kit.build import build_kit
from opencm.profile.model import load_profile
from tests.kit.conftest import run_cli

#: The uid the allow list must belong to in these tests: root when we are root (CI), else us.
OWNER = 0 if os.geteuid() == 0 else os.getuid()
UNIT = Path(__file__).parents[2] / "data" / "systemd" / "opencm-connect@.service"


@pytest.fixture
def allow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "etc-opencm"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    path = folder / "logon-actions.allow"
    monkeypatch.setenv("OPENCM_LOGON_ALLOW", str(path))
    monkeypatch.setenv("OPENCM_SYSTEM_ACTIONS_DIR", str(tmp_path / "system-actions"))
    return path


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def test_logon_actions_are_off_without_an_allow_list(kit_dir: Path, allow_file: Path) -> None:
    profile = load_profile(build_kit(kit_dir).cmp_path)
    program = profile.service_dir / "routes.sh"
    decision = check_logon("CONTOSO", profile.service_dir, program, owner_uid=OWNER)
    assert not decision.allowed
    assert "off" in decision.reason
    assert not logon_allowed(profile, program, owner_uid=OWNER)


def test_allowed_programs_at_their_location_only(
    kit_dir: Path, allow_file: Path, tmp_path: Path
) -> None:
    profile = load_profile(build_kit(kit_dir).cmp_path)
    routes = profile.service_dir / "routes.sh"
    system_program = tmp_path / "system-actions" / "proxy-off"
    system_program.parent.mkdir()
    _write(system_program, "#!/bin/sh\n", mode=0o755)
    _write(
        allow_file,
        "# PROFILE PROGRAM LOCATION\ncontoso routes.sh 1\nCONTOSO proxy-off 0  # system folder\n",
    )
    assert logon_allowed(profile, routes, owner_uid=OWNER)
    assert logon_allowed(profile, system_program, owner_uid=OWNER)
    # Same name, other place: a routes.sh in the system folder, proxy-off in the profile folder.
    assert not logon_allowed(profile, tmp_path / "system-actions" / "routes.sh", owner_uid=OWNER)
    assert not logon_allowed(profile, profile.service_dir / "proxy-off", owner_uid=OWNER)
    # Another profile gets nothing from CONTOSO's entries.
    assert not logon_allowed("OTHER", system_program, owner_uid=OWNER)
    # A symlink is judged by what it points at.
    link = tmp_path / "innocent"
    link.symlink_to(routes)
    assert logon_allowed(profile, link, owner_uid=OWNER)
    link2 = profile.service_dir / "elsewhere.sh"
    shutil.copy(routes, tmp_path / "evil.sh")
    link2.symlink_to(tmp_path / "evil.sh")
    _write(allow_file, "CONTOSO elsewhere.sh 1\n")
    assert not logon_allowed(profile, tmp_path / "evil.sh", owner_uid=OWNER)
    assert not logon_allowed(profile, link2, owner_uid=OWNER)


def test_an_allowed_program_others_could_change_is_refused(kit_dir: Path, allow_file: Path) -> None:
    profile = load_profile(build_kit(kit_dir).cmp_path)
    routes = profile.service_dir / "routes.sh"
    _write(allow_file, "CONTOSO routes.sh 1\n")
    assert logon_allowed(profile, routes, owner_uid=OWNER)
    routes.chmod(0o777)
    decision = check_logon("CONTOSO", profile.service_dir, routes, owner_uid=OWNER)
    assert not decision.allowed
    assert "routes.sh is writable by group or others" in decision.reason


def test_an_allow_list_others_could_change_is_refused(kit_dir: Path, allow_file: Path) -> None:
    profile = load_profile(build_kit(kit_dir).cmp_path)
    routes = profile.service_dir / "routes.sh"
    _write(allow_file, "CONTOSO routes.sh 1\n", mode=0o664)
    decision = check_logon("CONTOSO", profile.service_dir, routes, owner_uid=OWNER)
    assert not decision.allowed and "writable by group or others" in decision.reason
    _write(allow_file, "CONTOSO routes.sh 1\n", mode=0o644)
    allow_file.parent.chmod(0o777)
    decision = check_logon("CONTOSO", profile.service_dir, routes, owner_uid=OWNER)
    assert not decision.allowed and "folder of" in decision.reason
    allow_file.parent.chmod(0o755)
    assert logon_allowed(profile, routes, owner_uid=OWNER)


def test_an_allow_list_not_owned_by_root_is_refused(kit_dir: Path, allow_file: Path) -> None:
    profile = load_profile(build_kit(kit_dir).cmp_path)
    routes = profile.service_dir / "routes.sh"
    _write(allow_file, "CONTOSO routes.sh 1\n")
    if os.geteuid() == 0:
        os.chown(allow_file, 65534, 65534)  # nobody
    # The default owner is root: a list owned by anyone else is not trusted.
    decision = check_logon("CONTOSO", profile.service_dir, routes)
    assert not decision.allowed
    assert "must be owned by uid 0" in decision.reason


def test_a_malformed_allow_list_allows_nothing(kit_dir: Path, allow_file: Path) -> None:
    profile = load_profile(build_kit(kit_dir).cmp_path)
    _write(allow_file, "CONTOSO routes.sh 1\nCONTOSO routes.sh 2\n")
    decision = check_logon(
        "CONTOSO", profile.service_dir, profile.service_dir / "routes.sh", owner_uid=OWNER
    )
    assert not decision.allowed
    assert ":2:" in decision.reason and "LOCATION 0" in decision.reason


def test_logon_cli_allow_list_deny(
    kit_dir: Path, allow_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = load_profile(build_kit(kit_dir).cmp_path)
    routes = profile.service_dir / "routes.sh"
    assert not logon_allowed(profile, routes, owner_uid=OWNER)
    code, _, err = run_cli(capsys, "logon", "allow", "CONTOSO", "routes.sh")
    assert code == 0, err
    assert oct(allow_file.stat().st_mode & 0o777) == "0o644"
    assert logon_allowed(profile, routes, owner_uid=OWNER)
    code, out, _ = run_cli(capsys, "logon", "list", "--json")
    assert code == 0
    assert '"program": "routes.sh"' in out and '"location": 1' in out
    code, _, _ = run_cli(capsys, "logon", "deny", "CONTOSO", "routes.sh")
    assert code == 0
    assert not logon_allowed(profile, routes, owner_uid=OWNER)
    code, _, err = run_cli(capsys, "logon", "allow", "CONTOSO", "../../bin/sh")
    assert code == 2 and "must be a file name" in err


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    shutil.copy(UNIT, tmp_path / UNIT.name)
    instance = tmp_path / "opencm-connect@CONTOSO.service"
    instance.symlink_to(UNIT.name)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(instance)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # warnings count as failures here
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/env opencm connect %I --unattended --foreground --logon" in text
    # The check is real: a broken unit fails it.
    (tmp_path / UNIT.name).write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    broken = subprocess.run(
        ["systemd-analyze", "verify", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert "restart specifier" in broken.stderr
