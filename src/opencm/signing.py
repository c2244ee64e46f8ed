"""Signatures for everything opencm publishes (phone-book releases, profile packages).

The format is minisign's, so ``minisign -V`` checks opencm's signatures too. What a signature
*means* travels in its signed trusted comment as ``PURPOSE key=value key=value…`` (for example
``opencm-phonebook book=WORLD version=7 kind=delta base=5``); verifiers compare those fields with
what they expected, which is how a replayed older release or a file for another book is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import minisign

from opencm.errors import InputError, RefusedError


@dataclass(frozen=True)
class SignedFields:
    """What a verified signature vouches for: its purpose and its key=value fields."""

    purpose: str
    fields: Mapping[str, str]

    def get(self, key: str) -> str | None:
        return self.fields.get(key)


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as minisign files: (secret key, public key).

    The secret key is not password-protected: it is meant for build machines and is written
    with mode 0600 by the caller.
    """
    pair = minisign.KeyPair.generate()
    return bytes(pair.secret_key), bytes(pair.public_key)


def _read(source: bytes | str | Path, what: str) -> tuple[bytes, str | Path | None]:
    if isinstance(source, bytes):
        return source, None
    try:
        return Path(source).read_bytes(), source
    except OSError as error:
        raise InputError(f"cannot read {what}: {error.strerror}", path=source) from error


def load_secret_key(source: bytes | str | Path) -> minisign.SecretKey:
    data, path = _read(source, "secret key")
    try:
        return minisign.SecretKey.from_bytes(data)
    except (minisign.Error, ValueError) as error:
        raise InputError(f"not a minisign secret key ({error})", path=path) from error


def load_public_key(source: bytes | str | Path) -> minisign.PublicKey:
    data, path = _read(source, "public key")
    try:
        if data.lstrip().startswith(b"untrusted comment:"):
            return minisign.PublicKey.from_bytes(data)
        return minisign.PublicKey.from_base64(data.decode("ascii").strip())
    except (minisign.Error, ValueError, UnicodeDecodeError) as error:
        raise InputError(f"not a minisign public key ({error})", path=path) from error


def format_trusted_comment(purpose: str, fields: Mapping[str, str | int]) -> str:
    for key, value in fields.items():
        text = str(value)
        if not key.isidentifier() or " " in text or "=" in text or "\n" in text:
            raise ValueError(f"field {key}={text!r} cannot travel in a trusted comment")
    return " ".join([purpose, *(f"{key}={value}" for key, value in fields.items())])


def parse_trusted_comment(comment: str) -> SignedFields:
    purpose, *pairs = comment.split()
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if sep:
            fields[key] = value
    return SignedFields(purpose, fields)


def sign(
    data: bytes,
    secret_key: minisign.SecretKey,
    purpose: str,
    fields: Mapping[str, str | int],
) -> bytes:
    """Sign ``data``; returns the bytes of a ``.minisig`` file."""
    comment = format_trusted_comment(purpose, fields)
    signature = secret_key.sign(data, trusted_comment=comment)
    return bytes(signature)


def verify(
    data: bytes,
    signature: bytes,
    public_key: minisign.PublicKey,
    *,
    purpose: str,
    expect: Mapping[str, str | int] | None = None,
    what: str = "data",
) -> SignedFields:
    """Check ``signature`` over ``data`` and that it vouches for ``purpose`` and ``expect``.

    Raises :class:`~opencm.errors.RefusedError` naming what did not match; nothing signed by
    another key, altered, or meant for something else gets through.
    """
    try:
        parsed = minisign.Signature.from_bytes(signature)
    except (minisign.Error, ValueError) as error:
        raise RefusedError(f"{what}: the signature is malformed ({error})") from error
    try:
        public_key.verify(data, parsed)
    except (minisign.Error, ValueError) as error:
        raise RefusedError(
            f"{what}: signature check failed (altered, or signed by another key)"
        ) from error
    signed = parse_trusted_comment(parsed.trusted_comment)
    if signed.purpose != purpose:
        raise RefusedError(f"{what}: signed for {signed.purpose!r}, expected {purpose!r}")
    for key, wanted in (expect or {}).items():
        got = signed.get(key)
        if got != str(wanted):
            raise RefusedError(f"{what}: signed {key}={got}, expected {key}={wanted}")
    return signed
