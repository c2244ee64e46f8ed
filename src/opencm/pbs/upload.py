"""The release upload: ``PUT /admin/books/{BOOK}/releases/{VERSION}`` with a tar of the files.

The body is an uncompressed tar (``application/x-tar``) of a release's files with flat names:
``full.cab``, ``delta-<B>.cab`` and a ``.minisig`` for each. This module only unpacks and checks
it; publishing goes through :func:`opencm.phonebook.store.publish_release` (atomic). The tar may
also carry ``pba.pub``, the PBA's public key, which a book's first upload registers. The check is
:func:`check_release`: every cab signed by the book's registered key for this book, version, kind
and base, and no version jump the release does not explain.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write
from opencm.phonebook.limits import MAX_UPDATES
from opencm.phonebook.release import verify_release_file
from opencm.signing import load_public_key

#: Bounds on an upload (a 65,000-POP phone book compresses to a few MB).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 64
_FILE_NAME = re.compile(r"^(full|delta-([0-9]{1,10}))\.cab(\.minisig)?$")
#: The PBA's public key: registered by a book's first upload, then every upload is checked by it.
KEY_FILE = "pba.pub"


def unpack_release(body: bytes) -> dict[str, bytes]:
    """The files of an uploaded tar; raises InputError naming what is wrong."""
    if len(body) > MAX_UPLOAD_BYTES:
        raise InputError(f"the upload is larger than {MAX_UPLOAD_BYTES} bytes", field="body")
    try:
        archive = tarfile.open(fileobj=io.BytesIO(body), mode="r:")  # noqa: SIM115 closed below
    except (tarfile.TarError, EOFError) as error:
        raise InputError(f"not an uncompressed tar archive ({error})", field="body") from error
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        for count, member in enumerate(archive, start=1):
            if count > MAX_MEMBERS:
                raise InputError(f"more than {MAX_MEMBERS} files in the archive", field="body")
            name = member.name
            if name.startswith("./"):
                name = name[2:]
            if "/" in name or "\\" in name or name in ("", ".", ".."):
                raise InputError(f"{member.name!r}: release files have flat names", field="body")
            if not member.isfile():
                raise InputError(f"{name!r} is not a regular file", field="body")
            if not _FILE_NAME.match(name) and name != KEY_FILE:
                raise InputError(
                    f"{name!r} is not a release file (full.cab, delta-<N>.cab, *.minisig)",
                    field="body",
                )
            if name in files:
                raise InputError(f"{name!r} appears twice", field="body")
            total += member.size
            if total > MAX_UPLOAD_BYTES:
                raise InputError("the files add up to more than the upload limit", field="body")
            handle = archive.extractfile(member)
            if handle is None:
                raise InputError(f"{name!r} cannot be read", field="body")
            files[name] = handle.read()
    return files


def registered_key(store_dir: Path, book: str) -> bytes | None:
    """The public key registered for ``book`` (at its first upload), or None."""
    try:
        return (store_dir / book / KEY_FILE).read_bytes()
    except FileNotFoundError:
        return None


def check_release(
    store_dir: Path,
    book: str,
    version: int,
    files: dict[str, bytes],
    current: int | None,
    offered: bytes | None,
) -> bytes | None:
    """Verify an uploaded release before anything of it is stored.

    Every cab must carry a valid signature by the book's PBA key, signed for this book, version,
    kind and base. The key is the one registered for the book; a book without one registers the
    ``pba.pub`` its first upload carries (``offered``; it must carry one). The version may skip
    ahead only as far as the release itself explains: one more than the current, or any version
    whose release has a delta from the current one. Raises :class:`RefusedError` (HTTP 409);
    returns the key to register, if this upload registers one.
    """
    registered = registered_key(store_dir, book)
    if registered is None and offered is None:
        raise RefusedError(
            f"no PBA key is registered for {book}: its first upload must include {KEY_FILE} "
            "(opencm phonebook post sends it)"
        )
    key = load_public_key(registered if registered is not None else offered or b"")
    if (
        registered is not None
        and offered is not None
        and load_public_key(offered).to_base64() != key.to_base64()
    ):
        raise RefusedError(f"{book} is registered to another PBA key than the one sent")
    for name, data in files.items():
        match = _FILE_NAME.match(name)
        if match is None or name.endswith(".minisig"):
            continue
        base = int(match.group(2)) if match.group(2) else None
        signature = files.get(name + ".minisig", b"")
        kind = "full" if base is None else "delta"
        verify_release_file(data, signature, key, book, kind, version=version, base=base)
    if current is None:
        if version > MAX_UPDATES:
            raise RefusedError(f"version {version} is beyond the {MAX_UPDATES} updates a book has")
    elif version > current + 1 and f"delta-{current}.cab" not in files:
        raise RefusedError(
            f"{book} is at version {current}; version {version} skips releases and carries no "
            f"delta from {current} to explain them"
        )
    return offered if registered is None else None


def register_key(store_dir: Path, book: str, key: bytes) -> None:
    atomic_write(store_dir / book / KEY_FILE, key, mode=0o644)
