"""The release upload: ``PUT /admin/books/{BOOK}/releases/{VERSION}`` with a tar of the files.

The body is an uncompressed tar (``application/x-tar``) of a release's files with flat names:
``full.cab``, ``delta-<B>.cab`` and a ``.minisig`` for each. This module only unpacks and checks
it; publishing goes through :func:`opencm.phonebook.store.publish_release` (atomic). The server
has no public key of its own (clients verify), but it reads each signature's trusted comment and
refuses files that were signed for another book, version or kind: that catches posting the wrong
folder.
"""

from __future__ import annotations

import io
import re
import tarfile

import minisign

from opencm.errors import InputError
from opencm.signing import parse_trusted_comment

#: Bounds on an upload (a 65,000-POP phone book compresses to a few MB).
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 64
_FILE_NAME = re.compile(r"^(full|delta-([0-9]{1,10}))\.cab(\.minisig)?$")


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
            if not _FILE_NAME.match(name):
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


def check_signed_for(files: dict[str, bytes], book: str, version: int) -> None:
    """Each cab's signature must say it is this book, this version and this kind."""
    for name, data in files.items():
        if not name.endswith(".minisig"):
            continue
        cab = name[: -len(".minisig")]
        try:
            comment = minisign.Signature.from_bytes(data).trusted_comment
        except (minisign.Error, ValueError) as error:
            raise InputError(f"{name}: not a minisign signature ({error})", field="body") from error
        signed = parse_trusted_comment(comment)
        match = _FILE_NAME.match(cab)
        base = match.group(2) if match else None
        wanted = {"book": book, "version": str(version), "kind": "delta" if base else "full"}
        if base:
            wanted["base"] = str(int(base))
        if signed.purpose != "opencm-phonebook":
            raise InputError(f"{name}: signed for {signed.purpose!r}", field="body")
        for key, value in wanted.items():
            if signed.get(key) != value:
                raise InputError(
                    f"{name}: signed {key}={signed.get(key)}, expected {key}={value}", field="body"
                )
