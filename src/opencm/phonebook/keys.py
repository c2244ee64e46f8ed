"""The Phone Book Administrator's signing key pair, kept in its workspace.

Every release is signed with the secret key (minisign); clients verify with the public key a kit
ships (``[phonebook] public_key``). The secret key is written mode 0600 and never replaced
unless asked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import minisign

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write
from opencm.signing import generate_keypair, load_secret_key

SECRET_NAME = "pba.key"
PUBLIC_NAME = "pba.pub"


@dataclass(frozen=True)
class KeyPaths:
    secret: Path
    public: Path


def key_paths(workspace: Path) -> KeyPaths:
    return KeyPaths(workspace / SECRET_NAME, workspace / PUBLIC_NAME)


def make_keypair(workspace: Path, *, replace: bool = False) -> KeyPaths:
    """A new key pair in ``workspace``; an existing key is refused unless ``replace``."""
    workspace.mkdir(parents=True, exist_ok=True)
    paths = key_paths(workspace)
    if not replace:
        for path in (paths.secret, paths.public):
            if path.exists():
                raise RefusedError("already exists; refusing to replace a key", path=path)
    secret, public = generate_keypair()
    atomic_write(paths.secret, secret, mode=0o600)
    os.chmod(paths.secret, 0o600)
    atomic_write(paths.public, public, mode=0o644)
    return paths


def signing_key(workspace: Path, key_path: Path | None = None) -> minisign.SecretKey:
    """The secret key releases are signed with: ``key_path``, else the workspace's."""
    path = key_path or key_paths(workspace).secret
    if not path.exists():
        raise InputError("no signing key; run 'opencm phonebook keygen' first", path=path)
    return load_secret_key(path)


__all__ = [
    "PUBLIC_NAME",
    "SECRET_NAME",
    "KeyPaths",
    "key_paths",
    "make_keypair",
    "signing_key",
]
