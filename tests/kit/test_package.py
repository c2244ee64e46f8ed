"""The signed package: verified before use, refused when tampered, unsigned or unsafe."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from opencm.errors import OpencmError, RefusedError
from opencm.kit.build import build_kit
from opencm.kit.install import install_package
from opencm.kit.package import (
    MANIFEST,
    SHEBANG,
    SIGNATURE,
    STUB,
    build_package,
    launcher_digest,
    read_package,
)
from opencm.signing import sign
from tests.kit.conftest import Keys, Roots, make_keys, run_cli, tree


def make_package(kit_dir: Path, keys: Keys, *, version: int = 2) -> Path:
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


def members(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def rezip(package: Path, contents: dict[str, bytes], *, symlink: str | None = None) -> Path:
    """Write a package with these members (the stub's shebang kept), as an attacker could."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in contents.items():
            info = zipfile.ZipInfo(name)
            mode = stat.S_IFLNK | 0o777 if name == symlink else stat.S_IFREG | 0o644
            info.external_attr = mode << 16
            archive.writestr(info, data)
    out = package.with_name("evil.cmpkg.pyz")
    out.write_bytes(b"#!/usr/bin/env python3\n" + buffer.getvalue())
    return out


def test_package_layout_and_manifest(kit_dir: Path, keys: Keys) -> None:
    package = make_package(kit_dir, keys)
    assert package.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.stat(package).st_mode & 0o111
    names = set(members(package))
    built = tree(kit_dir / "build" / "CONTOSO")
    assert names == {"__main__.py", MANIFEST, SIGNATURE} | {f"profile/{p}" for p in built}
    manifest = json.loads(members(package)[MANIFEST])
    assert manifest["short_name"] == "CONTOSO"
    assert manifest["version"] == 2
    assert {f["path"] for f in manifest["files"]} == built
    verified = read_package(package, [keys.public])
    assert (
        verified.files["CONTOSO/CONTOSO.cms"]
        == (kit_dir / "build" / "CONTOSO" / "CONTOSO" / "CONTOSO.cms").read_bytes()
    )
    assert verified.is_executable("CONTOSO/routes.sh")
    assert not verified.is_executable("CONTOSO/CONTOSO.cms")


def test_the_real_minisign_tool_accepts_the_signature(
    kit_dir: Path, keys: Keys, tmp_path: Path
) -> None:
    package = make_package(kit_dir, keys)
    contents = members(package)
    (tmp_path / "manifest.json").write_bytes(contents[MANIFEST])
    (tmp_path / "manifest.json.minisig").write_bytes(contents[SIGNATURE])
    done = subprocess.run(
        ["minisign", "-V", "-m", str(tmp_path / "manifest.json"), "-p", str(keys.public_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "opencm-profile short=CONTOSO version=2" in done.stdout


def _assert_refused_and_nothing_installed(package: Path, keys: Keys, roots: Roots) -> str:
    with pytest.raises(RefusedError) as caught:
        install_package(package, roots.user, trusted_keys=[keys.public])
    assert tree(roots.base) == set()
    return str(caught.value)


def test_one_byte_changed_in_a_member_is_refused(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    package = make_package(kit_dir, keys)
    contents = members(package)
    cms = contents["profile/CONTOSO/CONTOSO.cms"]
    contents["profile/CONTOSO/CONTOSO.cms"] = cms[:-3] + bytes([cms[-3] ^ 1]) + cms[-2:]
    message = _assert_refused_and_nothing_installed(rezip(package, contents), keys, roots)
    assert "'profile/CONTOSO/CONTOSO.cms' does not match its signed hash" in message


def test_a_byte_flipped_in_the_package_file_itself_is_refused(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    package = make_package(kit_dir, keys)
    data = bytearray(package.read_bytes())
    # Inside the deflated .cms: the zip's own CRC or our hash catches it, never unnoticed.
    offset = data.index(b"profile/CONTOSO/CONTOSO.cms") + 60
    data[offset] ^= 0x01
    package.write_bytes(bytes(data))
    with pytest.raises((RefusedError,)):
        install_package(package, roots.user, trusted_keys=[keys.public])
    assert tree(roots.base) == set()


def test_an_edited_manifest_is_refused(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    package = make_package(kit_dir, keys)
    contents = members(package)
    manifest = json.loads(contents[MANIFEST])
    manifest["version"] = 99
    contents[MANIFEST] = json.dumps(manifest).encode()
    message = _assert_refused_and_nothing_installed(rezip(package, contents), keys, roots)
    assert "signature check failed" in message


def test_a_member_added_beside_the_manifest_is_refused(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    package = make_package(kit_dir, keys)
    contents = members(package)
    contents["profile/CONTOSO/extra.sh"] = b"#!/bin/sh\nrm -rf ~\n"
    message = _assert_refused_and_nothing_installed(rezip(package, contents), keys, roots)
    assert "'profile/CONTOSO/extra.sh' is not in the signed manifest" in message


def test_a_signature_from_another_key_is_refused(
    kit_dir: Path, keys: Keys, roots: Roots, tmp_path: Path
) -> None:
    package = make_package(kit_dir, keys)
    other = make_keys(tmp_path / "mallory")
    contents = members(package)
    contents[SIGNATURE] = sign(
        contents[MANIFEST], other.secret, "opencm-profile", {"short": "CONTOSO", "version": 2}
    )
    message = _assert_refused_and_nothing_installed(rezip(package, contents), keys, roots)
    assert "signed by another key" in message


def test_a_signature_swapped_from_another_package_is_refused(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    old = members(make_package(kit_dir, keys, version=1))
    new_package = make_package(kit_dir, keys, version=3)
    contents = members(new_package)
    contents[SIGNATURE] = old[SIGNATURE]
    message = _assert_refused_and_nothing_installed(rezip(new_package, contents), keys, roots)
    assert "signature check failed" in message
    # (An old manifest with its own signature is an older package: see the rollback tests.)


def test_a_signature_for_another_purpose_is_refused(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    package = make_package(kit_dir, keys)
    contents = members(package)
    contents[SIGNATURE] = sign(
        contents[MANIFEST], keys.secret, "opencm-phonebook", {"short": "CONTOSO", "version": 2}
    )
    message = _assert_refused_and_nothing_installed(rezip(package, contents), keys, roots)
    assert "expected 'opencm-profile'" in message


def test_an_unsigned_package_is_refused(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    package = make_package(kit_dir, keys)
    contents = members(package)
    del contents[SIGNATURE]
    message = _assert_refused_and_nothing_installed(rezip(package, contents), keys, roots)
    assert "not signed" in message


def test_no_trusted_key_at_all_is_refused(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    package = make_package(kit_dir, keys)
    with pytest.raises(RefusedError, match="no trusted key"):
        install_package(package, roots.user)
    assert tree(roots.base) == set()


def _signed_with(
    package: Path, keys: Keys, files: dict[str, bytes], *, symlink: str | None = None
) -> Path:
    """A package whose manifest *is* validly signed but names dangerous paths."""
    import hashlib

    manifest = {
        "format": "opencm-profile-package",
        "format_version": 1,
        "short_name": "CONTOSO",
        "service_name": "Contoso VPN",
        "version": 2,
        "files": [
            {
                "path": name.removeprefix("profile/"),
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
            for name, data in files.items()
        ],
        "wheel": None,
        "launcher_sha256": launcher_digest(SHEBANG, files.get(STUB, b"")),
    }
    manifest_bytes = json.dumps(manifest).encode()
    signature = sign(
        manifest_bytes, keys.secret, "opencm-profile", {"short": "CONTOSO", "version": 2}
    )
    return rezip(
        package, {MANIFEST: manifest_bytes, SIGNATURE: signature, **files}, symlink=symlink
    )


CMP = b"[Connection Manager]\r\nCMSFile=CONTOSO\\CONTOSO.cms\r\n"


@pytest.mark.parametrize(
    "evil",
    [
        "profile/../../../.bashrc",
        "profile/CONTOSO/../../escape.sh",
        "/etc/passwd",
        "profile/CONTOSO\\..\\..\\x",
        "profile/OTHER/x.cms",
    ],
)
def test_path_traversal_is_refused_even_when_signed(
    kit_dir: Path, keys: Keys, roots: Roots, evil: str
) -> None:
    package = make_package(kit_dir, keys)
    bad = _signed_with(package, keys, {"profile/CONTOSO.cmp": CMP, evil: b"owned\n"})
    message = _assert_refused_and_nothing_installed(bad, keys, roots)
    assert "unsafe file name" in message or "outside the profile" in message
    assert not (roots.base.parent / ".bashrc").exists()


def test_a_symlink_member_is_refused(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    package = make_package(kit_dir, keys)
    link = "profile/CONTOSO/CONTOSO.pbk"
    bad = _signed_with(
        package, keys, {"profile/CONTOSO.cmp": CMP, link: b"/etc/shadow"}, symlink=link
    )
    message = _assert_refused_and_nothing_installed(bad, keys, roots)
    assert "symlink" in message


def test_cli_refusal_exits_3_without_traceback(
    kit_dir: Path, keys: Keys, roots: Roots, capsys: pytest.CaptureFixture[str]
) -> None:
    package = make_package(kit_dir, keys)
    contents = members(package)
    del contents[SIGNATURE]
    code, _, err = run_cli(
        capsys, "install", str(rezip(package, contents)), "--trust", str(keys.public_path)
    )
    assert code == 3
    assert "not signed" in err and "Traceback" not in err
    code, out, _ = run_cli(
        capsys, "kit", "verify", str(package), "--trust", str(keys.public_path), "--json"
    )
    assert code == 0
    assert json.loads(out)["version"] == 2


def test_running_the_package_hands_over_to_opencm(kit_dir: Path, keys: Keys, roots: Roots) -> None:
    package = make_package(kit_dir, keys)
    env = {**os.environ, **roots.env, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    done = subprocess.run(
        [str(package), "--user", "--trust", str(keys.public_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Installed Contoso VPN (CONTOSO) version 2" in done.stdout
    assert (roots.user.profiles_dir / "CONTOSO.cmp").is_file()


def test_running_the_package_without_opencm_says_so(
    kit_dir: Path, keys: Keys, tmp_path: Path
) -> None:
    package = make_package(kit_dir, keys)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    # -S: no site-packages, so opencm cannot be imported; PATH has no opencm either.
    done = subprocess.run(
        [sys.executable, "-S", str(package)],
        capture_output=True,
        text=True,
        env={"PATH": str(empty), "HOME": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 2
    assert "opencm is not installed here" in done.stderr
    assert "pip install opencm" in done.stderr


def test_a_carried_wheel_is_signed_with_the_rest(
    kit_dir: Path, keys: Keys, roots: Roots, tmp_path: Path
) -> None:
    wheel = tmp_path / "opencm-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip stands in for the wheel
    result = build_kit(kit_dir)
    package = kit_dir / "build" / "CONTOSO.cmpkg.pyz"
    build_package(
        result.root,
        short_name="CONTOSO",
        service_name="Contoso VPN",
        version=2,
        secret_key=keys.secret,
        out=package,
        wheel=wheel,
    )
    contents = members(package)
    assert contents[f"wheel/{wheel.name}"] == wheel.read_bytes()
    assert json.loads(contents[MANIFEST])["wheel"]["path"] == wheel.name
    read_package(package, [keys.public])
    # Without opencm, the stub offers to install the wheel it carries.
    empty = tmp_path / "empty-path"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-S", str(package)],
        capture_output=True,
        text=True,
        env={"PATH": str(empty), "HOME": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 2
    assert "--install-opencm" in done.stderr
    # A swapped wheel is caught like any other member.
    contents[f"wheel/{wheel.name}"] = b"PK\x05\x06" + bytes(17) + b"\x01"
    message = _assert_refused_and_nothing_installed(rezip(package, contents), keys, roots)
    assert "does not match its signed hash" in message


def test_packages_are_reproducible(kit_dir: Path, keys: Keys, tmp_path: Path) -> None:
    first = make_package(kit_dir, keys).read_bytes()
    (kit_dir / "build").rename(tmp_path / "old-build")
    assert make_package(kit_dir, keys).read_bytes() == first


def test_a_zip_bomb_is_refused_before_it_is_unpacked(
    kit_dir: Path, keys: Keys, roots: Roots, monkeypatch: pytest.MonkeyPatch
) -> None:
    import opencm.kit.package as package_module

    # The real bound is 512 MiB; a 1 MiB bound shows the same check without the wait.
    monkeypatch.setattr(package_module, "MAX_TOTAL_SIZE", 2**20)
    package = make_package(kit_dir, keys)
    contents = members(package)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
        # 2 MiB of zeros deflate to a few kilobytes.
        archive.writestr("profile/CONTOSO/zeros.bin", bytes(2 * 2**20))
    bomb = package.with_name("bomb.cmpkg.pyz")
    bomb.write_bytes(buffer.getvalue())
    assert bomb.stat().st_size < 2**17
    message = _assert_refused_and_nothing_installed(bomb, keys, roots)
    assert "too large" in message


def test_a_replaced_launcher_is_refused_by_verify_and_install(
    kit_dir: Path, keys: Keys, roots: Roots, capsys: pytest.CaptureFixture[str]
) -> None:
    # __main__.py and the line in front of the zip are what runs when a user executes the
    # package: both are covered by the signature, so a swap is caught by every verification.
    package = make_package(kit_dir, keys)
    contents = members(package)
    evil_stub = rezip(package, {**contents, STUB: b"import os; os.system('id > /tmp/owned')\n"})
    message = _assert_refused_and_nothing_installed(evil_stub, keys, roots)
    assert "launcher" in message
    evil_line = package.with_name("line.cmpkg.pyz")
    evil_line.write_bytes(b"#!/bin/sh -c 'id'\n" + package.read_bytes()[len(SHEBANG) :])
    message = _assert_refused_and_nothing_installed(evil_line, keys, roots)
    assert "launcher" in message
    pub = str(keys.public_path)
    code, _, err = run_cli(capsys, "kit", "verify", str(evil_stub), "--trust", pub)
    assert code == 3 and "launcher" in err
    assert run_cli(capsys, "kit", "verify", str(package), "--trust", pub)[0] == 0


def test_a_zip_feature_python_cannot_read_is_a_clean_refusal(
    kit_dir: Path, keys: Keys, roots: Roots
) -> None:
    # Found by the fuzz campaign: a central-directory entry asking for zip version 8.4 made
    # zipfile raise NotImplementedError, a traceback for `opencm install`.
    data = bytearray(make_package(kit_dir, keys).read_bytes())
    entry = data.index(b"PK\x01\x02")
    data[entry + 6 : entry + 8] = (84).to_bytes(2, "little")
    odd = kit_dir / "odd.cmpkg.pyz"
    odd.write_bytes(bytes(data))
    with pytest.raises(OpencmError, match=r"not a zip: zip file version 8\.4"):
        install_package(odd, roots.user, trusted_keys=[keys.public])
    assert tree(roots.base) == set()
