"""The version file ``<BOOK>.ver``: opencm's own format (Microsoft never published one).

The first line is the version number alone, so anything that reads "the first integer in the
file" (Microsoft-era clients, :func:`opencm.kit.install.read_version_file`) gets the version.
The lines after it are ``key=value`` pairs describing the book the version stands for::

    7
    format=opencm-phonebook-version/1
    book=WORLD
    pops=65000
    regions=12
    pbk-sha256=<hex>
    pbr-sha256=<hex>

The digests let a client check that a delta applied to its book produced exactly the released
book. A file holding only a number (as older tools write) is accepted with no digests.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError

FORMAT = "opencm-phonebook-version/1"
_FIRST_INTEGER = re.compile(rb"\s*([0-9]+)")


@dataclass(frozen=True)
class VersionInfo:
    version: int
    book: str | None = None
    pops: int | None = None
    regions: int | None = None
    pbk_sha256: str | None = None
    pbr_sha256: str | None = None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_version_info(book: str, version: int, pbk: bytes, pbr: bytes, pops: int) -> VersionInfo:
    regions_line = pbr.split(b"\r\n", 1)[0]
    regions = int(regions_line) if regions_line.isdigit() else 0
    return VersionInfo(version, book, pops, regions, sha256(pbk), sha256(pbr))


def format_version_file(info: VersionInfo) -> bytes:
    lines = [str(info.version), f"format={FORMAT}"]
    for key, value in (
        ("book", info.book),
        ("pops", info.pops),
        ("regions", info.regions),
        ("pbk-sha256", info.pbk_sha256),
        ("pbr-sha256", info.pbr_sha256),
    ):
        if value is not None:
            lines.append(f"{key}={value}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def first_integer(data: bytes) -> int | None:
    match = _FIRST_INTEGER.match(data)
    return int(match.group(1)) if match else None


def parse_version_file(data: bytes, path: str | Path | None = None) -> VersionInfo:
    version = first_integer(data)
    if version is None:
        raise InputError("a version file must start with the version number", path=path, line=1)
    fields: dict[str, str] = {}
    for line in data.decode("latin-1").splitlines()[1:]:
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()

    def number(key: str) -> int | None:
        value = fields.get(key)
        return int(value) if value is not None and value.isdigit() else None

    return VersionInfo(
        version,
        fields.get("book"),
        number("pops"),
        number("regions"),
        fields.get("pbk-sha256"),
        fields.get("pbr-sha256"),
    )
