"""Shared fixtures for the kit tests: a kit folder on disk, admin keys, isolated install roots."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import minisign
import pytest

from opencm.cli.main import main
from opencm.kit.roots import Scope, all_users_scope, user_scope
from opencm.signing import generate_keypair, load_public_key, load_secret_key

KIT_TOML = """\
[service]
name = "Contoso VPN"
short = "CONTOSO"
version = 2
connection_types = ["direct", "double"]
redial_count = 3

[[vpn]]
name = "Main"
address = "vpn.contoso.example"
link = "openvpn"
config = "files/contoso.ovpn"

[[vpn]]
name = "Backup"
address = "backup.contoso.example"
link = "networkmanager"
connection = "Contoso backup"

[phonebook]
name = "CONTOSO"
dir = "pb"
pbs_url = "http://127.0.0.1:8080/pbserver/pbserver.dll"
public_key = "keys/pba.pub"

[[action]]
point = "post-connect"
program = "files/routes.sh"
parameters = "%ServiceName% %Profile%"
description = "to update your routing table"
include = true
interactive = false

[[action]]
point = "pre-init"
program = "logger"
parameters = "-t opencm starting"
description = "log the start"
run_for = "tunnel"

[files]
help = "files/help.html"
additional = ["files/ca.crt"]
"""


@dataclass
class Keys:
    secret_path: Path
    public_path: Path

    @property
    def secret(self) -> minisign.SecretKey:
        return load_secret_key(self.secret_path)

    @property
    def public(self) -> minisign.PublicKey:
        return load_public_key(self.public_path)


def make_keys(folder: Path, name: str = "admin") -> Keys:
    folder.mkdir(parents=True, exist_ok=True)
    secret, public = generate_keypair()
    keys = Keys(folder / f"{name}.key", folder / f"{name}.pub")
    keys.secret_path.write_bytes(secret)
    keys.public_path.write_bytes(public)
    return keys


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "admin-keys")


def write_kit(folder: Path, toml: str = KIT_TOML, *, book_version: int = 3) -> Path:
    """A kit folder with every file KIT_TOML names."""
    (folder / "files").mkdir(parents=True)
    (folder / "pb").mkdir()
    (folder / "keys").mkdir()
    (folder / "files" / "contoso.ovpn").write_text("client\nremote 127.0.0.1 1194\n")
    routes = folder / "files" / "routes.sh"
    routes.write_text("#!/bin/sh\nexit 0\n")
    routes.chmod(0o755)
    (folder / "files" / "help.html").write_text("<p>Call the help desk.</p>\n")
    (folder / "files" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (folder / "pb" / "CONTOSO.pbk").write_bytes(b"1,1,Seattle,1,1,206,5550100,0,0,0,0,0,0\r\n")
    (folder / "pb" / "CONTOSO.pbr").write_bytes(b"Washington\r\n")
    (folder / "pb" / "CONTOSO.ver").write_bytes(f"{book_version}\r\n".encode())
    _, public = generate_keypair()
    (folder / "keys" / "pba.pub").write_bytes(public)
    (folder / "kit.toml").write_text(textwrap.dedent(toml))
    return folder


@pytest.fixture
def kit_dir(tmp_path: Path) -> Path:
    return write_kit(tmp_path / "kit")


@dataclass
class Roots:
    base: Path
    env: dict[str, str]

    @property
    def user(self) -> Scope:
        return user_scope(self.env)

    @property
    def all_users(self) -> Scope:
        return all_users_scope(self.env)


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Roots]:
    """Every install root moved under tmp_path, for the library and the CLI alike."""
    base = tmp_path / "roots"
    env = {
        "HOME": str(base / "home"),
        "XDG_DATA_HOME": str(base / "home" / "data"),
        "XDG_CONFIG_HOME": str(base / "home" / "config"),
        "OPENCM_SYSTEM_CONFIG_DIR": str(base / "etc" / "opencm"),
        "OPENCM_SYSTEM_STATE_DIR": str(base / "var" / "lib" / "opencm"),
        "OPENCM_SYSTEM_APPLICATIONS_DIR": str(base / "usr" / "share" / "applications"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield Roots(base, env)


def tree(folder: Path) -> set[str]:
    """Every file and symlink under ``folder``, as relative POSIX paths."""
    if not folder.exists():
        return set()
    return {
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()
    }


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``opencm ARGS`` in-process with the real entry point; (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        main(list(args))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    else:  # pragma: no cover - main always exits
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def is_root() -> bool:
    return os.geteuid() == 0
