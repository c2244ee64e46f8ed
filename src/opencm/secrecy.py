"""Which profile files are secrets, so that they stay 0600 from the kit to the installed profile.

A file is secret when its source is private to its owner (no read bit for group or others) or
when it holds private key material whatever its mode: PEM private keys, OpenVPN static keys
(``tls-auth``/``tls-crypt``), PKCS#12 bundles and WireGuard ``PrivateKey`` lines. The mark is
recorded in the signed package manifest; install also looks at the content, so a package built
before the mark existed still installs its keys 0600.
"""

from __future__ import annotations

import re
import stat

#: Name endings that are key material by convention (``client.key``, ``tc.key``, ``ta.key``).
SECRET_SUFFIXES = (".key", ".p12", ".pfx")
_SECRET_CONTENT = re.compile(
    rb"-----BEGIN (?:[A-Z0-9 ]+ )?PRIVATE KEY-----"
    rb"|-----BEGIN OpenVPN (?:Static key V1|tls-crypt-v2 client key)-----"
    rb"|^\s*PrivateKey\s*=",
    re.MULTILINE,
)
SECRET_MODE = 0o600
SECRET_EXECUTABLE_MODE = 0o700


def looks_secret(name: str, data: bytes) -> bool:
    """True for key material, by name or by content."""
    return name.casefold().endswith(SECRET_SUFFIXES) or _SECRET_CONTENT.search(data) is not None


def is_secret(name: str, data: bytes, source_mode: int) -> bool:
    """True when the source is private to its owner or :func:`looks_secret` says so."""
    private_source = not stat.S_IMODE(source_mode) & (stat.S_IRGRP | stat.S_IROTH)
    return private_source or looks_secret(name, data)


def file_mode(*, executable: bool, secret: bool) -> int:
    """The mode a profile file is written with."""
    if secret:
        return SECRET_EXECUTABLE_MODE if executable else SECRET_MODE
    return 0o755 if executable else 0o644
