"""Upload tokens for ``PUT /admin/books/…``, stored hashed in ``DATA/tokens.json`` (mode 0600).

A token is ``opencm-pbs_<id>_<secret>`` with 32 random bytes of secret; only its SHA-256 is kept.
(A plain hash is enough here: the secret is random and long, not a password that could be
guessed, so a slow password hash would add nothing.) The file is read on every upload, so a
``token revoke`` takes effect at once in every worker and replica sharing the data folder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from opencm.errors import InputError
from opencm.fsutil import atomic_write

TOKENS_FILE = "tokens.json"
PREFIX = "opencm-pbs"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    created: str
    sha256: str

    def public(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "created": self.created}


def _path(data_dir: Path) -> Path:
    return data_dir / TOKENS_FILE


def list_tokens(data_dir: Path) -> list[TokenInfo]:
    path = _path(data_dir)
    try:
        raw = json.loads(path.read_text("utf-8"))
        return [TokenInfo(**entry) for entry in raw["tokens"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"unreadable token file ({error})", path=path) from error


def _save(data_dir: Path, tokens: list[TokenInfo]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    body = {"format": "opencm-pbs-tokens/1", "tokens": [t.__dict__ for t in tokens]}
    atomic_write(_path(data_dir), (json.dumps(body, indent=2) + "\n").encode(), mode=0o600)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(data_dir: Path, name: str) -> tuple[TokenInfo, str]:
    """Create a token; returns its record and the secret token (shown once, never stored)."""
    if not _NAME.match(name):
        raise InputError("a token name is 1-64 letters, digits or . _ @ -", field="name")
    tokens = list_tokens(data_dir)
    if any(t.name == name for t in tokens):
        raise InputError(f"a token named {name!r} exists; revoke it first", field="name")
    token_id = secrets.token_hex(4)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = TokenInfo(token_id, name, created, _digest(token))
    _save(data_dir, [*tokens, info])
    return info, token


def revoke_token(data_dir: Path, id_or_name: str) -> TokenInfo:
    tokens = list_tokens(data_dir)
    match = [t for t in tokens if id_or_name in (t.id, t.name)]
    if not match:
        raise InputError(f"no token with id or name {id_or_name!r}", field="token")
    _save(data_dir, [t for t in tokens if t not in match])
    return match[0]


def check_token(data_dir: Path, presented: str) -> TokenInfo | None:
    """The token's record if ``presented`` is a valid token, else None (constant-time compare)."""
    try:
        tokens = list_tokens(data_dir)
    except InputError:
        return None
    digest = _digest(presented)
    found = None
    for info in tokens:
        if hmac.compare_digest(info.sha256, digest):
            found = info
    return found
