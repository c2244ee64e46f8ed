"""Crash-safe file writes: nothing is ever left half-written.

Every file opencm writes for a user goes through :func:`atomic_write`: the data goes to a
temporary file in the same directory, is flushed to disk, and is renamed over the target, so a
reader (or a power cut) sees either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, rename).

    The new file keeps the old file's permission bits unless ``mode`` is given.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    # Imported here: tempfile pulls in random, shutil and the compression modules (~5 ms), a
    # cost every ``opencm`` start would pay though most commands never write a file.
    import tempfile

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(directory)


#: Markers of secret key material in files a profile ships: PEM private keys (any algorithm,
#: encrypted or not), OpenVPN static keys (tls-auth, tls-crypt, tls-crypt-v2), WireGuard
#: private keys and PKCS#12 bundles are recognised by content or name.
_SECRET_MARKERS = (
    b"PRIVATE KEY-----",
    b"-----BEGIN OpenVPN Static key",
    b"-----BEGIN OpenVPN tls-crypt-v2 client key",
)
_SECRET_SUFFIXES = (".p12", ".pfx", ".key")


def holds_secret(name: str, data: bytes) -> bool:
    """True when a shipped file holds a private key: it must stay mode 0600 wherever opencm
    writes it (a kit, a build, an installed profile)."""
    if name.lower().endswith(_SECRET_SUFFIXES) or any(m in data for m in _SECRET_MARKERS):
        return True
    # WireGuard configs: ``PrivateKey = …`` in [Interface].
    return any(
        line.strip().lower().replace(b" ", b"").startswith(b"privatekey=")
        for line in data.splitlines()
    )


def shipped_mode(name: str, data: bytes, *, executable: bool) -> int:
    """The mode a profile file gets: 0600 for secrets, else 0755 or 0644."""
    if holds_secret(name, data):
        return 0o700 if executable else 0o600
    return 0o755 if executable else 0o644
