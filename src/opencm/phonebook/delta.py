"""The delta file ``<BOOK>.dlt``: opencm's own format for "the changes from version B to V".

Microsoft never published what its Delta.cab holds, so this format is opencm's. ASCII, CR LF::

    opencm-phonebook-delta/1
    book=WORLD
    base=5
    version=7
    base-pbk-sha256=<hex>     the base book this delta applies to (checked before applying)
    base-pbr-sha256=<hex>
    pbk-sha256=<hex>          the book it produces (checked after applying)
    pbr-sha256=<hex>
                              (an empty line ends the header)
    -,<index>                 POP <index> is deleted
    +,<pbk line>              a POP is added (a whole MS-CPSP entry; its index is the key)
    *,<pbk line>              POP <index> is replaced by this entry
    R,<count>                 the region file changed: the next <count> lines are its names

Operations are sorted by POP index. The books on both sides are canonical (:func:`format_pbk`:
sorted by index, CR LF), so applying a delta is a merge by index and the result is byte for
byte the full book of ``version``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from opencm.errors import InputError, RefusedError
from opencm.phonebook.pbr import format_pbr, parse_pbr
from opencm.phonebook.versionfile import sha256

FORMAT = "opencm-phonebook-delta/1"
_HEADER_KEYS = (
    "book",
    "base",
    "version",
    "base-pbk-sha256",
    "base-pbr-sha256",
    "pbk-sha256",
    "pbr-sha256",
)


@dataclass
class Delta:
    book: str
    base: int
    version: int
    base_pbk_sha256: str
    base_pbr_sha256: str
    pbk_sha256: str
    pbr_sha256: str
    deleted: list[int] = field(default_factory=list)
    added: dict[int, str] = field(default_factory=dict)
    changed: dict[int, str] = field(default_factory=dict)
    regions: list[str] | None = None

    @property
    def operations(self) -> int:
        return len(self.deleted) + len(self.added) + len(self.changed)


def _lines(pbk: bytes) -> list[str]:
    """A canonical book's lines (no terminators)."""
    lines = pbk.decode("latin-1").split("\r\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _key(line: str) -> str:
    return line.partition(",")[0]


def build_delta(
    book: str, base: int, version: int, base_pbk: bytes, base_pbr: bytes, pbk: bytes, pbr: bytes
) -> Delta:
    """The delta from a canonical base book to a canonical new book.

    Whole lines are compared as sets (in C); only the few lines that differ are looked at:
    an index among the new lines only is added, among the old lines only is deleted, among
    both is changed (POP indexes are unique within a book).
    """
    old_lines = set(base_pbk.split(b"\r\n"))
    new_lines = set(pbk.split(b"\r\n"))
    old_lines.discard(b"")
    new_lines.discard(b"")
    came = {_key(line): line for line in (b.decode("latin-1") for b in new_lines - old_lines)}
    gone = {_key(line.decode("latin-1")) for line in old_lines - new_lines}
    delta = Delta(book, base, version, sha256(base_pbk), sha256(base_pbr), sha256(pbk), sha256(pbr))
    delta.deleted = sorted(int(key) for key in gone.difference(came))
    for key, line in came.items():
        (delta.changed if key in gone else delta.added)[int(key)] = line
    if base_pbr != pbr:
        delta.regions = parse_pbr(pbr).names
    return delta


def format_delta(delta: Delta) -> bytes:
    header = [
        FORMAT,
        f"book={delta.book}",
        f"base={delta.base}",
        f"version={delta.version}",
        f"base-pbk-sha256={delta.base_pbk_sha256}",
        f"base-pbr-sha256={delta.base_pbr_sha256}",
        f"pbk-sha256={delta.pbk_sha256}",
        f"pbr-sha256={delta.pbr_sha256}",
        "",
    ]
    operations: list[tuple[int, str]] = [(index, f"-,{index}") for index in delta.deleted]
    operations += [(index, "+," + line) for index, line in delta.added.items()]
    operations += [(index, "*," + line) for index, line in delta.changed.items()]
    operations.sort(key=lambda item: item[0])
    body = [text for _, text in operations]
    if delta.regions is not None:
        body += [f"R,{len(delta.regions)}", *delta.regions]
    return ("\r\n".join(header + body) + "\r\n").encode("latin-1")


def parse_delta(data: bytes, path: str | Path | None = None) -> Delta:
    lines = data.decode("latin-1").split("\r\n")
    if not lines or lines[0] != FORMAT:
        raise InputError(f"not an {FORMAT} file", path=path, line=1)
    header: dict[str, str] = {}
    number = 1
    for number, line in enumerate(lines[1:], start=2):
        if line == "":
            break
        key, sep, value = line.partition("=")
        if not sep or key not in _HEADER_KEYS:
            raise InputError(f"unexpected header line {line!r}", path=path, line=number)
        header[key] = value
    missing = [key for key in _HEADER_KEYS if key not in header]
    if missing:
        raise InputError(f"the header lacks {', '.join(missing)}", path=path)
    try:
        delta = Delta(
            header["book"],
            int(header["base"]),
            int(header["version"]),
            header["base-pbk-sha256"],
            header["base-pbr-sha256"],
            header["pbk-sha256"],
            header["pbr-sha256"],
        )
    except ValueError as error:
        raise InputError("base and version must be numbers", path=path) from error
    body = lines[number:]
    if body and body[-1] == "":
        body.pop()
    position = 0
    while position < len(body):
        line = body[position]
        line_no = number + position + 1
        op, _, rest = line.partition(",")
        try:
            if op == "-":
                delta.deleted.append(int(rest))
            elif op in "+*" and op:
                index = int(rest[: rest.index(",")])
                (delta.added if op == "+" else delta.changed)[index] = rest
            elif op == "R":
                count = int(rest)
                delta.regions = body[position + 1 : position + 1 + count]
                if len(delta.regions) != count:
                    raise InputError("the region list is cut short", path=path, line=line_no)
                position += count
            else:
                raise InputError(f"unknown operation {op!r}", path=path, line=line_no)
        except ValueError as error:
            raise InputError(f"malformed operation {line!r}", path=path, line=line_no) from error
        position += 1
    return delta


def apply_delta(delta: Delta, base_pbk: bytes, base_pbr: bytes) -> tuple[bytes, bytes]:
    """The new (pbk, pbr) from the base book; refuses a base the delta was not made for."""
    if sha256(base_pbk) != delta.base_pbk_sha256 or sha256(base_pbr) != delta.base_pbr_sha256:
        raise RefusedError(
            f"the installed {delta.book} book is not version {delta.base} as this delta "
            "expects (a full update is needed)"
        )
    # The base is canonical (its digest matched), so its lines are sorted by index: each
    # operation finds its place by binary search instead of indexing the whole book.
    lines = _lines(base_pbk)

    def position(index: int) -> tuple[int, bool]:
        at = bisect.bisect_left(lines, index, key=lambda line: int(_key(line)))
        return at, at < len(lines) and int(_key(lines[at])) == index

    for index, line in delta.changed.items():
        at, found = position(index)
        if not found:
            raise InputError(f"the delta changes POP {index}, which the base lacks")
        lines[at] = line
    for index in sorted(delta.deleted, reverse=True):
        at, found = position(index)
        if not found:
            raise InputError(f"the delta deletes POP {index}, which the base lacks")
        del lines[at]
    for index, line in sorted(delta.added.items()):
        at, found = position(index)
        if found:
            raise InputError(f"the delta adds POP {index}, which the base has")
        lines.insert(at, line)
    pbk = ("\r\n".join(lines) + "\r\n" if lines else "").encode("latin-1")
    pbr = base_pbr if delta.regions is None else format_pbr(delta.regions)
    if sha256(pbk) != delta.pbk_sha256 or sha256(pbr) != delta.pbr_sha256:
        raise RefusedError(
            f"the {delta.book} book built from the delta does not match version {delta.version}"
        )
    return pbk, pbr
