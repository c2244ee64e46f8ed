"""install / list / uninstall into temporary roots, and the re-install rules."""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from opencm.errors import DiskFullError, RefusedError
from opencm.kit.build import build_kit
from opencm.kit.install import gui_command, install_package, read_version_file, uninstall
from opencm.kit.package import build_package
from opencm.profile.ini import IniFile
from opencm.profile.model import load_profile
from tests.kit.conftest import Keys, Roots, make_keys, run_cli, tree

PROFILE_FILES = {
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


def package_of(kit_dir: Path, keys: Keys, version: int) -> Path:
    spec = kit_dir / "kit.toml"
    text = spec.read_text()
    current = next(line for line in text.splitlines() if line.startswith("version = "))
    spec.write_text(text.replace(current, f"version = {version}"))
    result = build_kit(kit_dir)
    out = kit_dir / "build" / f"CONTOSO-{version}.cmpkg.pyz"
    build_package(
        result.root,
        short_name="CONTOSO",
        service_name="Contoso VPN",
        version=version,
        secret_key=keys.secret,
        out=out,
    )
    return out


def test_user_install_list_uninstall_with_exact_trees(
    kit_dir: Path, keys: Keys, roots: Roots, capsys: pytest.CaptureFixture[str]
) -> None:
    package = package_of(kit_dir, keys, 2)
    code, out, err = run_cli(
        capsys, "install", str(package), "--user", "--trust", str(keys.public_path), "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    data = Path(roots.env["XDG_DATA_HOME"])
    assert tree(roots.base) == {
        *(f"home/data/opencm/Cm/{p}" for p in PROFILE_FILES),
        "home/data/opencm/installed/CONTOSO.json",
        "home/data/applications/opencm-contoso.desktop",
    }
    cmp = data / "opencm" / "Cm" / "CONTOSO.cmp"
    assert result["cmp"] == str(cmp)
    assert result["scope"] == "user"
    assert (data / "opencm/Cm/CONTOSO/routes.sh").stat().st_mode & 0o111
    assert load_profile(cmp).service_name == "Contoso VPN"
    desktop = (data / "applications/opencm-contoso.desktop").read_text()
    assert f"Exec={gui_command()} --profile {cmp}\n" in desktop
    assert "Name=Contoso VPN\n" in desktop

    code, out, _ = run_cli(capsys, "list", "--json")
    assert code == 0
    assert [(p["short_name"], p["version"], p["scope"], p["cmp"]) for p in json.loads(out)] == [
        ("CONTOSO", 2, "user", str(cmp))
    ]

    code, out, _ = run_cli(capsys, "uninstall", "CONTOSO", "--user", "--json")
    assert code == 0
    assert set(json.loads(out)["removed"]) == PROFILE_FILES
    assert tree(roots.base) == set()
    code, out, _ = run_cli(capsys, "list", "--json")
    assert json.loads(out) == []


def test_all_users_install_uses_the_system_roots_and_system_keys_only(
    kit_dir: Path, keys: Keys, roots: Roots, capsys: pytest.CaptureFixture[str]
) -> None:
    package = package_of(kit_dir, keys, 2)
    # A key only this user trusts does not vouch for a system-wide install…
    user_keys = Path(roots.env["XDG_CONFIG_HOME"]) / "opencm" / "trusted-keys"
    user_keys.mkdir(parents=True)
    shutil.copy(keys.public_path, user_keys / "admin.pub")
    code, _, err = run_cli(capsys, "install", str(package), "--all-users")
    assert code == 3 and "no trusted key" in err
    # …a key in the system's trusted-keys folder does.
    system_keys = Path(roots.env["OPENCM_SYSTEM_CONFIG_DIR"]) / "trusted-keys"
    system_keys.mkdir(parents=True)
    shutil.copy(keys.public_path, system_keys / "admin.pub")
    code, _, err = run_cli(capsys, "install", str(package), "--all-users")
    assert code == 0, err
    assert tree(roots.base) == {
        "home/config/opencm/trusted-keys/admin.pub",
        "etc/opencm/trusted-keys/admin.pub",
        *(f"etc/opencm/Cm/{p}" for p in PROFILE_FILES),
        "var/lib/opencm/installed/CONTOSO.json",
        "usr/share/applications/opencm-contoso.desktop",
    }
    code, out, _ = run_cli(capsys, "list", "--json")
    assert [p["scope"] for p in json.loads(out)] == ["all-users"]
    code, _, _ = run_cli(capsys, "uninstall", "CONTOSO", "--all-users")
    assert code == 0
    assert tree(roots.base) == {
        "home/config/opencm/trusted-keys/admin.pub",
        "etc/opencm/trusted-keys/admin.pub",
    }


def test_user_scope_trusts_its_own_key_folder(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    package = package_of(kit_dir, keys, 2)
    user_keys = Path(roots.env["XDG_CONFIG_HOME"]) / "opencm" / "trusted-keys"
    user_keys.mkdir(parents=True)
    shutil.copy(keys.public_path, user_keys / "admin.pub")
    result = install_package(package, roots.user)
    assert result.record.signer == keys.public_path.read_text().splitlines()[1]


def test_uninstall_leaves_what_the_user_added(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    cm = roots.user.profiles_dir
    (cm / "CONTOSO" / "notes.txt").write_text("mine\n")
    (cm / "OTHER.cmp").write_text("[Connection Manager]\r\n")
    result = uninstall("contoso", roots.user)
    assert result.left == ["CONTOSO"]
    assert tree(cm) == {"CONTOSO/notes.txt", "OTHER.cmp"}


def test_reinstall_keeps_user_data_and_replaces_the_rest(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    cm = roots.user.profiles_dir
    # What the user and the client did since: a saved user name in the .cmp, saved
    # credentials beside the profile, and a phone book updated through PBS to version 7.
    cmp = IniFile.load(cm / "CONTOSO.cmp")
    cmp.set("Connection Manager", "UserName", "alice")
    cmp.set("Connection Manager", "SavePassword", "1")
    cmp.save()
    (cm / "CONTOSO" / "credentials.json").write_text('{"user": "alice"}\n')
    (cm / "CONTOSO" / "CONTOSO.pbk").write_bytes(b"updated through PBS\r\n")
    (cm / "CONTOSO" / "CONTOSO.ver").write_bytes(b"7\r\n")

    # The new release: another help text, no more ca.crt, a phone book still at version 3.
    (kit_dir / "files" / "help.html").write_text("<p>New help.</p>\n")
    spec = kit_dir / "kit.toml"
    spec.write_text(spec.read_text().replace('additional = ["files/ca.crt"]', ""))
    result = install_package(package_of(kit_dir, keys, 3), roots.user, trusted_keys=[keys.public])

    assert result.previous_version == 2
    assert result.record.version == 3
    cmp = IniFile.load(cm / "CONTOSO.cmp")
    assert cmp.get("Connection Manager", "UserName") == "alice"
    assert cmp.get("Connection Manager", "SavePassword") == "1"
    assert cmp.get("Connection Manager", "CMSFile") == "CONTOSO\\CONTOSO.cms"
    assert (cm / "CONTOSO" / "credentials.json").read_text() == '{"user": "alice"}\n'
    assert (cm / "CONTOSO" / "CONTOSO.pbk").read_bytes() == b"updated through PBS\r\n"
    assert read_version_file((cm / "CONTOSO" / "CONTOSO.ver").read_bytes()) == 7
    assert (cm / "CONTOSO" / "help.html").read_text() == "<p>New help.</p>\n"
    assert not (cm / "CONTOSO" / "ca.crt").exists()
    assert dict(result.kept)["CONTOSO/CONTOSO.pbk"].startswith("phone book version 7")
    assert tree(cm) == (PROFILE_FILES - {"CONTOSO/ca.crt"}) | {"CONTOSO/credentials.json"}
    assert load_profile(cm / "CONTOSO.cmp").cms.get("opencm", "ProfileVersion") == "3"


def test_reinstall_replaces_a_phone_book_older_than_the_packages(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    book = roots.user.profiles_dir / "CONTOSO"
    (book / "CONTOSO.ver").write_bytes(b"2\r\n")
    (book / "CONTOSO.pbk").write_bytes(b"stale\r\n")
    install_package(package_of(kit_dir, keys, 3), roots.user, trusted_keys=[keys.public])
    assert (book / "CONTOSO.pbk").read_bytes() == (kit_dir / "pb" / "CONTOSO.pbk").read_bytes()
    assert read_version_file((book / "CONTOSO.ver").read_bytes()) == 3


def test_an_older_version_is_refused_unless_forced(
    kit_dir: Path, keys: Keys, roots: Roots, capsys: pytest.CaptureFixture[str]
) -> None:
    older = package_of(kit_dir, keys, 2)
    newer = package_of(kit_dir, keys, 5)
    install_package(newer, roots.user, trusted_keys=[keys.public])
    before = {p: (roots.base / p).read_bytes() for p in tree(roots.base)}
    code, _, err = run_cli(
        capsys, "install", str(older), "--user", "--trust", str(keys.public_path)
    )
    assert code == 3
    assert "version 5 is installed; this package is the older version 2" in err
    assert {p: (roots.base / p).read_bytes() for p in tree(roots.base)} == before
    code, _, err = run_cli(
        capsys, "install", str(older), "--user", "--trust", str(keys.public_path), "--force"
    )
    assert code == 0, err
    record = json.loads((roots.user.records_dir / "CONTOSO.json").read_text())
    assert record["version"] == 2


def test_same_version_reinstall_repairs_a_deleted_file(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    package = package_of(kit_dir, keys, 2)
    install_package(package, roots.user, trusted_keys=[keys.public])
    (roots.user.profiles_dir / "CONTOSO" / "CONTOSO.cms").unlink()
    install_package(package, roots.user, trusted_keys=[keys.public])
    assert tree(roots.user.profiles_dir) == PROFILE_FILES


def test_a_profile_not_installed_by_opencm_is_not_overwritten(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    cm = roots.user.profiles_dir
    (cm / "CONTOSO").mkdir(parents=True)
    (cm / "CONTOSO" / "CONTOSO.cms").write_text("hand-made\n")
    with pytest.raises(RefusedError, match="was not installed by opencm"):
        install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    assert tree(cm) == {"CONTOSO/CONTOSO.cms"}


def test_a_package_signed_by_an_untrusted_key_installs_nothing(
    kit_dir: Path, keys: Keys, roots: Roots, tmp_path: Path
) -> None:
    stranger = make_keys(tmp_path / "stranger")
    with pytest.raises(RefusedError, match="signature check failed"):
        install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[stranger.public])
    assert tree(roots.base) == set()


def test_uninstalling_what_is_not_installed_is_a_clear_error(
    roots: Roots, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "uninstall", "NOPE", "--user")
    assert code == 2
    assert "NOPE is not installed" in err


def test_desktop_entry_quotes_paths_with_spaces(
    kit_dir: Path, keys: Keys, roots: Roots, monkeypatch: pytest.MonkeyPatch
) -> None:
    spaced = roots.base / "my data"
    monkeypatch.setenv("XDG_DATA_HOME", str(spaced))
    roots.env["XDG_DATA_HOME"] = str(spaced)
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    desktop = (spaced / "applications" / "opencm-contoso.desktop").read_text()
    assert f'Exec={gui_command()} --profile "{spaced}/opencm/Cm/CONTOSO.cmp"\n' in desktop


def test_a_failure_while_writing_leaves_the_installed_version_intact(
    kit_dir: Path, keys: Keys, roots: Roots, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    before = {p: (roots.base / p).read_bytes() for p in tree(roots.base)}
    newer = package_of(kit_dir, keys, 3)
    real_chmod = os.chmod
    calls = {"n": 0}

    def failing_chmod(path: str, mode: int) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(28, "No space left on device")
        real_chmod(path, mode)

    monkeypatch.setattr(os, "chmod", failing_chmod)
    with pytest.raises(DiskFullError, match="no space left on the device"):
        install_package(newer, roots.user, trusted_keys=[keys.public])
    assert {p: (roots.base / p).read_bytes() for p in tree(roots.base)} == before


def test_a_symlink_planted_in_the_installed_profile_is_refused_and_nothing_written(
    kit_dir: Path, keys: Keys, roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    victim = tmp_path / "victim.txt"
    victim.write_text("not opencm's\n")
    planted = roots.user.profiles_dir / "CONTOSO" / "CONTOSO.cms"
    planted.unlink()
    planted.symlink_to(victim)
    before = {p: (roots.base / p).read_bytes() for p in tree(roots.base) if p.endswith(".cmp")}
    newer = package_of(kit_dir, keys, 3)
    code, _, err = run_cli(
        capsys, "install", str(newer), "--user", "--trust", str(keys.public_path)
    )
    assert code == 3
    assert str(planted) in err and "symbolic link" in err
    assert "Traceback" not in err
    assert victim.read_text() == "not opencm's\n" and planted.is_symlink()
    assert {p: (roots.base / p).read_bytes() for p in before} == before
    record = json.loads((roots.user.records_dir / "CONTOSO.json").read_text())
    assert record["version"] == 2


def test_end_to_end_through_the_cli(
    kit_dir: Path, roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "admin"
    assert run_cli(capsys, "kit", "keygen", str(prefix))[0] == 0
    assert oct((tmp_path / "admin.key").stat().st_mode & 0o777) == "0o600"
    package = tmp_path / "dist" / "Contoso.cmpkg.pyz"
    package.parent.mkdir()
    code, out, err = run_cli(
        capsys, "kit", "build", str(kit_dir), "--key", str(prefix) + ".key", "--out", str(package)
    )
    assert code == 0, err
    assert f"Package: {package} (signed, version 2)" in out
    trust = str(prefix) + ".pub"
    assert run_cli(capsys, "kit", "verify", str(package), "--trust", trust)[0] == 0
    code, out, err = run_cli(capsys, "install", str(package), "--user", "--trust", trust)
    assert code == 0, err
    assert "Installed Contoso VPN (CONTOSO) version 2" in out
    code, out, _ = run_cli(capsys, "list")
    assert out.startswith("CONTOSO   v2    user")
    assert run_cli(capsys, "uninstall", "CONTOSO", "--user")[0] == 0
    assert tree(roots.base) == set()


def test_an_installed_profile_is_found_by_its_short_name(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    from opencm.kit.install import find_installed_cmp

    assert find_installed_cmp("CONTOSO", [roots.user, roots.all_users]) is None
    install_package(package_of(kit_dir, keys, 2), roots.all_users, trusted_keys=[keys.public])
    system_cmp = roots.all_users.profiles_dir / "CONTOSO.cmp"
    assert find_installed_cmp("contoso", [roots.user, roots.all_users]) == system_cmp
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    user_cmp = roots.user.profiles_dir / "CONTOSO.cmp"
    assert find_installed_cmp("CONTOSO", [roots.user, roots.all_users]) == user_cmp
    assert find_installed_cmp("CONTOSO", [roots.all_users]) == system_cmp
    # What `opencm connect NAME` and a front end call: a path wins, then the scopes in order.
    from opencm.errors import InputError
    from opencm.session.locate import resolve_profile

    assert resolve_profile("CONTOSO", [roots.user, roots.all_users]) == user_cmp
    assert resolve_profile("contoso", [roots.all_users]) == system_cmp
    assert resolve_profile(str(system_cmp), [roots.user]) == system_cmp.resolve()
    with pytest.raises(InputError, match="no such profile"):
        resolve_profile("NOPE", [roots.user, roots.all_users])


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None, reason="needs desktop-file-utils"
)
def test_desktop_entries_pass_desktop_file_validate(tmp_path: Path) -> None:
    import subprocess

    from opencm.kit.install import desktop_entry

    odd = tmp_path / 'my "profiles" $HOME 100%' / "CONTOSO.cmp"
    for name, cmp in (("Contoso VPN", tmp_path / "CONTOSO.cmp"), ('Odd "$name" 100%', odd)):
        entry = tmp_path / "opencm-contoso.desktop"
        entry.write_bytes(desktop_entry(name, cmp))
        done = subprocess.run(
            ["desktop-file-validate", str(entry)], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_a_package_without_a_version_file_keeps_an_updated_book(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    (kit_dir / "pb" / "CONTOSO.ver").unlink()
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    book = roots.user.profiles_dir / "CONTOSO"
    assert not (book / "CONTOSO.ver").exists()
    # The client fetched version 4 from the Phone Book Service since.
    (book / "CONTOSO.pbk").write_bytes(b"from PBS\r\n")
    (book / "CONTOSO.ver").write_bytes(b"4")
    result = install_package(package_of(kit_dir, keys, 3), roots.user, trusted_keys=[keys.public])
    assert (book / "CONTOSO.pbk").read_bytes() == b"from PBS\r\n"
    assert dict(result.kept)["CONTOSO/CONTOSO.pbk"] == (
        "phone book version 4 is newer than the package's 0"
    )


def test_private_keys_stay_0600_through_build_package_and_install(
    kit_dir: Path, roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # client.key is private at its source; tc.key is world-readable there but holds an OpenVPN
    # static key; ca.crt is public. An all-users install must not let local users read keys.
    files = kit_dir / "files"
    (files / "client.key").write_text(
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    )
    (files / "client.key").chmod(0o600)
    (files / "tc.key").write_text("-----BEGIN OpenVPN Static key V1-----\nab\n")
    (files / "tc.key").chmod(0o644)
    toml = kit_dir / "kit.toml"
    toml.write_text(
        toml.read_text().replace(
            'additional = ["files/ca.crt"]',
            'additional = ["files/ca.crt", "files/client.key", "files/tc.key"]',
        )
    )
    prefix = tmp_path / "admin"
    assert run_cli(capsys, "kit", "keygen", str(prefix))[0] == 0
    package = tmp_path / "dist" / "Contoso.cmpkg.pyz"
    package.parent.mkdir()
    code, _, err = run_cli(
        capsys, "kit", "build", str(kit_dir), "--key", str(prefix) + ".key", "--out", str(package)
    )
    assert code == 0, err
    built = kit_dir / "build" / "CONTOSO" / "CONTOSO"
    modes = {n: (built / n).stat().st_mode & 0o777 for n in ("client.key", "tc.key", "ca.crt")}
    assert modes == {"client.key": 0o600, "tc.key": 0o600, "ca.crt": 0o644}
    assert package.stat().st_mode & 0o777 == 0o700  # it carries keys
    with zipfile.ZipFile(package) as archive:
        assert (archive.getinfo("profile/CONTOSO/client.key").external_attr >> 16) & 0o777 == 0o600
        manifest = json.loads(archive.read("opencm-package.json"))
    private = {f["path"] for f in manifest["files"] if f.get("private")}
    assert private == {"CONTOSO/client.key", "CONTOSO/tc.key"}
    trust = str(prefix) + ".pub"
    code, _, err = run_cli(capsys, "install", str(package), "--user", "--trust", trust)
    assert code == 0, err
    installed = roots.user.profiles_dir / "CONTOSO"
    assert (installed / "client.key").stat().st_mode & 0o777 == 0o600
    assert (installed / "tc.key").stat().st_mode & 0o777 == 0o600
    assert (installed / "ca.crt").stat().st_mode & 0o777 == 0o644


def test_connect_as_root_finds_a_per_user_install_with_user_and_says_where_it_looked(
    kit_dir: Path, keys: Keys, roots: Roots, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("root looks up all-users installs only; a user always sees their own")
    install_package(package_of(kit_dir, keys, 2), roots.user, trusted_keys=[keys.public])
    code, _, err = run_cli(capsys, "connect", "CONTOSO", "--foreground", "--unattended")
    assert code == 2
    assert str(roots.all_users.profiles_dir) in err and "add --user" in err
    # With --user the short name resolves to root's own install; the connection then stops
    # at a type the profile does not offer, naming the installed profile it found.
    code, _, err = run_cli(
        capsys, "connect", "CONTOSO", "--user", "--foreground", "--unattended", "--type", "dialup"
    )
    assert code == 2
    assert str(roots.user.profiles_dir / "CONTOSO") in err and "does not offer dialup" in err


def test_the_menu_entry_names_the_desktop_client_by_its_full_path() -> None:
    # A desktop starts menu entries with its own PATH, without a virtual environment's bin:
    # the entry must name the opencm-gui installed beside the Python running opencm.
    command = gui_command()
    beside = Path(sys.executable).parent / "opencm-gui"
    if beside.exists():
        assert command == str(beside)
    assert command == "opencm-gui" or Path(command).is_absolute()
