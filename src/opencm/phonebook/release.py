"""A release: the full cab and the delta cabs of one phone-book version, each signed.

File names follow the publish store (:mod:`opencm.phonebook.store`): ``full.cab`` and
``delta-<BASE>.cab``, each with ``<file>.minisig``. The trusted comment of each signature is
``opencm-phonebook book=<NAME> version=<V> kind=full`` or ``... kind=delta base=<B>``.

The delta window: the PBS of "How Connection Manager Works" sends a delta to a client fewer than
five versions behind and a full book otherwise, and PBA makes deltas "the first five times" a book
changes. opencm makes a delta from each of the five previous versions: bases ``max(1, V-5) .. V-1``.
A client more than five versions behind gets the full cab.

Cab members: a full cab holds ``<BOOK>.pbk``, ``<BOOK>.pbr`` and ``<BOOK>.ver``; a delta cab
holds ``<BOOK>.dlt`` (:mod:`opencm.phonebook.delta`) and ``<BOOK>.ver``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import minisign

from opencm.errors import RefusedError
from opencm.phonebook.cabinet import write_cab
from opencm.phonebook.delta import build_delta, format_delta
from opencm.phonebook.limits import DELTA_WINDOW
from opencm.phonebook.versionfile import format_version_file, make_version_info
from opencm.signing import SignedFields, sign, verify

PURPOSE = "opencm-phonebook"
FULL = "full.cab"


@dataclass(frozen=True)
class Snapshot:
    """A released book in canonical form."""

    version: int
    pbk: bytes
    pbr: bytes
    pops: int


def delta_bases(version: int) -> range:
    """The versions a release carries deltas from (oldest first)."""
    return range(max(1, version - DELTA_WINDOW), version)


def delta_name(base: int) -> str:
    return f"delta-{base}.cab"


def version_file(book: str, snapshot: Snapshot) -> bytes:
    info = make_version_info(book, snapshot.version, snapshot.pbk, snapshot.pbr, snapshot.pops)
    return format_version_file(info)


def full_cab(book: str, snapshot: Snapshot, timestamp: datetime | None = None) -> bytes:
    members = {
        f"{book}.pbk": snapshot.pbk,
        f"{book}.pbr": snapshot.pbr,
        f"{book}.ver": version_file(book, snapshot),
    }
    return write_cab(members, timestamp=timestamp)


def delta_cab(
    book: str, base: Snapshot, snapshot: Snapshot, timestamp: datetime | None = None
) -> bytes:
    delta = build_delta(
        book, base.version, snapshot.version, base.pbk, base.pbr, snapshot.pbk, snapshot.pbr
    )
    members = {f"{book}.dlt": format_delta(delta), f"{book}.ver": version_file(book, snapshot)}
    return write_cab(members, timestamp=timestamp)


def signed_fields(book: str, version: int, base: int | None) -> dict[str, str | int]:
    fields: dict[str, str | int] = {"book": book, "version": version}
    if base is None:
        fields["kind"] = "full"
    else:
        fields["kind"] = "delta"
        fields["base"] = base
    return fields


def build_release(
    book: str,
    snapshot: Snapshot,
    previous: Mapping[int, Snapshot],
    secret_key: minisign.SecretKey,
    *,
    timestamp: datetime | None = None,
) -> dict[str, bytes]:
    """All files of a release: ``full.cab``, ``delta-<B>.cab`` and their signatures.

    ``previous`` maps earlier versions to their snapshots; a delta is made for every base in
    the window that it holds.
    """
    version = snapshot.version
    files: dict[str, bytes] = {}
    full = full_cab(book, snapshot, timestamp)
    files[FULL] = full
    files[FULL + ".minisig"] = sign(full, secret_key, PURPOSE, signed_fields(book, version, None))
    for base in delta_bases(version):
        base_snapshot = previous.get(base)
        if base_snapshot is None:
            continue
        cab = delta_cab(book, base_snapshot, snapshot, timestamp)
        name = delta_name(base)
        files[name] = cab
        files[name + ".minisig"] = sign(
            cab, secret_key, PURPOSE, signed_fields(book, version, base)
        )
    return files


def verify_release_file(
    data: bytes,
    signature: bytes,
    public_key: minisign.PublicKey,
    book: str,
    expected_kind: str,
    *,
    version: int | None = None,
    base: int | None = None,
    installed: int | None = None,
) -> SignedFields:
    """Check a downloaded release cab before it is used.

    Refuses (:class:`RefusedError`) a cab altered or signed by another key, one signed for
    another book, kind, version or base, and a replay: a release whose signed version is not
    newer than the ``installed`` one.
    """
    expect: dict[str, str | int] = {"book": book, "kind": expected_kind}
    if version is not None:
        expect["version"] = version
    if expected_kind == "delta" and base is not None:
        expect["base"] = base
    signed = verify(
        data, signature, public_key, purpose=PURPOSE, expect=expect, what=f"{book} {expected_kind}"
    )
    signed_version = signed.get("version") or ""
    if not signed_version.isdigit():
        raise RefusedError(f"{book}: the signature names no version")
    if installed is not None and int(signed_version) <= installed:
        raise RefusedError(
            f"{book}: release {signed_version} is not newer than the installed version "
            f"{installed} (a replayed older release?)"
        )
    return signed
