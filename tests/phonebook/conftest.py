"""Shared fixtures: admin key pairs and a tool check for the real cab tools."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import minisign
import pytest

from opencm.signing import generate_keypair, load_public_key, load_secret_key


@dataclass(frozen=True)
class Keys:
    secret: minisign.SecretKey
    public: minisign.PublicKey
    secret_bytes: bytes
    public_bytes: bytes


def make_keys() -> Keys:
    secret, public = generate_keypair()
    return Keys(load_secret_key(secret), load_public_key(public), secret, public)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return make_keys()


@pytest.fixture(scope="session")
def other_keys() -> Keys:
    return make_keys()


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt install {name})")
    return path
