"""Microsoft cabinet files (MS-CAB): a writer for phone-book cabs and a guarded reader.

The writer makes one folder, MSZIP-compressed in 32 KiB blocks each deflated on its own (the
simplest valid MSZIP: no block depends on its predecessor), with checksums; ``cabextract -t``
and ``gcab -l`` accept the result. It is our own rather than cabarchive's because it has to be
quick on a 65,000-POP book: zlib's default level (as gcab), blocks deflated on all cores, and
a checksum folded with big-integer XOR instead of a Python loop over words.

The reader is for downloaded data, so it trusts nothing: flat member names only (no path
separators, no ``..``, no drive letters), bounded member count and sizes checked before any
block is inflated, every block inflated with an output cap, checksums verified, only the
"none" and MSZIP compressions (LZX and Quantum are refused with a clear error).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from opencm.errors import InputError

_HEADER = struct.Struct("<4sIIIIIBBHHHHH")
_FOLDER = struct.Struct("<IHH")
_FILE = struct.Struct("<IIHHHH")
_DATA = struct.Struct("<IHH")
_BLOCK = 0x8000
_PARALLEL_FROM = 8  # blocks; below this, threads cost more than they save
_COMPRESS_NONE = 0
_COMPRESS_MSZIP = 1
_FLAG_PREV = 0x1
_FLAG_NEXT = 0x2
_FLAG_RESERVE = 0x4
_ATTR_ARCHIVE = 0x20
_ATTR_NAME_IS_UTF = 0x80
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$")


@dataclass(frozen=True)
class Limits:
    """Bounds for reading an untrusted cabinet (size-bomb protection)."""

    max_files: int = 16
    max_file_size: int = 64 * 1024 * 1024
    max_total_size: int = 128 * 1024 * 1024


DEFAULT_LIMITS = Limits()


def checksum(data: bytes | memoryview, seed: int = 0) -> int:
    """The MS-CAB checksum: XOR of little-endian 32-bit words, odd tail bytes big-endian."""
    words = len(data) // 4
    value = int.from_bytes(data[: words * 4], "little")
    # Fold the number in halves: XOR of the halves keeps the XOR of all 32-bit words.
    while words > 1:
        half = words // 2
        high_words = words - half
        value = (value >> (high_words * 32)) ^ (value & ((1 << (high_words * 32)) - 1))
        words = high_words
    tail = data[(len(data) // 4) * 4 :]
    extra = 0
    for byte in tail:
        extra = (extra << 8) | byte
    return seed ^ value ^ extra


def _dos_datetime(moment: datetime) -> tuple[int, int]:
    date = ((moment.year - 1980) << 9) | (moment.month << 5) | moment.day
    time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    return date, time


def write_cab(
    files: Mapping[str, bytes],
    *,
    timestamp: datetime | None = None,
    level: int = 6,
) -> bytes:
    """A single-folder MSZIP cabinet holding ``files`` (flat names) in the given order."""
    for name in files:
        if not _SAFE_NAME.match(name):
            raise InputError(f"{name!r} cannot be a cabinet member name", field="cab")
    date, time = _dos_datetime(timestamp or datetime(2000, 1, 1))
    stream = b"".join(files.values())
    if len(stream) > 0x7FFF0000:
        raise InputError("more than 2 GiB cannot go into one cabinet folder", field="cab")
    view = memoryview(stream)
    chunks = [view[start : start + _BLOCK] for start in range(0, len(stream), _BLOCK)]

    def deflate(chunk: memoryview) -> bytes:
        return zlib.compress(chunk, level, wbits=-zlib.MAX_WBITS)

    if len(chunks) >= _PARALLEL_FROM:
        # Blocks are independent and zlib releases the GIL: use the machine's cores.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            deflated = list(pool.map(deflate, chunks))
    else:
        deflated = [deflate(chunk) for chunk in chunks]
    blocks: list[bytes] = []
    for chunk, raw in zip(chunks, deflated, strict=True):
        packed = b"CK" + raw
        header_tail = struct.pack("<HH", len(packed), len(chunk))
        blocks.append(_DATA.pack(checksum(header_tail, checksum(packed)), len(packed), len(chunk)))
        blocks.append(packed)
    entries: list[bytes] = []
    offset = 0
    for name, data in files.items():
        entries.append(_FILE.pack(len(data), offset, 0, date, time, _ATTR_ARCHIVE))
        entries.append(name.encode("ascii") + b"\0")
        offset += len(data)
    files_offset = _HEADER.size + _FOLDER.size
    data_offset = files_offset + sum(len(part) for part in entries)
    total = data_offset + sum(len(part) for part in blocks)
    header = _HEADER.pack(b"MSCF", 0, total, 0, files_offset, 0, 3, 1, 1, len(files), 0, 0, 0)
    folder = _FOLDER.pack(data_offset, len(blocks) // 2, _COMPRESS_MSZIP)
    return b"".join([header, folder, *entries, *blocks])


def _check_member_name(name: str) -> None:
    if (
        not name
        or "/" in name
        or "\\" in name
        or ":" in name
        or name in (".", "..")
        or any(ord(char) < 32 for char in name)
    ):
        raise InputError(f"refusing cabinet member {name!r}: not a plain file name", field="cab")


def read_cab(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """The members of a cabinet, by name; refuses anything unsafe or malformed."""
    try:
        return _read_cab(memoryview(data), limits)
    except struct.error as error:
        raise InputError(f"truncated cabinet ({error})", field="cab") from error


def _read_cab(view: memoryview, limits: Limits) -> dict[str, bytes]:
    if len(view) < _HEADER.size:
        raise InputError("too short to be a cabinet", field="cab")
    (sig, _, size, _, files_offset, _, _minor, major, n_folders, n_files, flags, _, _) = (
        _HEADER.unpack_from(view, 0)
    )
    if sig != b"MSCF" or major != 1:
        raise InputError("not a Microsoft cabinet (no MSCF 1.x header)", field="cab")
    if size > len(view):
        raise InputError(f"the cabinet says {size} bytes but {len(view)} arrived", field="cab")
    if flags & (_FLAG_PREV | _FLAG_NEXT):
        raise InputError("multi-part cabinets are not accepted", field="cab")
    position = _HEADER.size
    folder_reserve = data_reserve = 0
    if flags & _FLAG_RESERVE:
        header_reserve, folder_reserve, data_reserve = struct.unpack_from("<HBB", view, position)
        position += 4 + header_reserve
    if n_files > limits.max_files:
        raise InputError(f"{n_files} members, at most {limits.max_files} accepted", field="cab")
    folders: list[tuple[int, int, int]] = []
    for _ in range(n_folders):
        start, blocks, compression = _FOLDER.unpack_from(view, position)
        if compression & 0xF not in (_COMPRESS_NONE, _COMPRESS_MSZIP):
            raise InputError(
                f"compression type {compression & 0xF} (LZX/Quantum) is not supported",
                field="cab",
            )
        folders.append((start, blocks, compression & 0xF))
        position += _FOLDER.size + folder_reserve
    members: list[tuple[str, int, int, int]] = []
    position = files_offset
    total = 0
    seen: set[str] = set()
    for _ in range(n_files):
        length, offset, folder, _, _, attributes = _FILE.unpack_from(view, position)
        position += _FILE.size
        end = bytes(view[position : position + 512]).find(b"\0")
        if end < 0:
            raise InputError("a member name is not terminated", field="cab")
        raw_name = bytes(view[position : position + end])
        position += end + 1
        try:
            name = raw_name.decode("utf-8" if attributes & _ATTR_NAME_IS_UTF else "latin-1")
        except UnicodeDecodeError as error:
            raise InputError(
                f"member name {raw_name!r} is flagged UTF-8 but is not ({error.reason})",
                field="cab",
            ) from error
        _check_member_name(name)
        if name.casefold() in seen:
            raise InputError(f"member {name!r} appears twice", field="cab")
        seen.add(name.casefold())
        if length > limits.max_file_size:
            raise InputError(f"member {name} is {length} bytes, over the limit", field="cab")
        total += length
        if total > limits.max_total_size:
            raise InputError("the members add up to more than the size limit", field="cab")
        if folder >= len(folders):
            raise InputError(f"member {name} names a folder that does not exist", field="cab")
        members.append((name, length, offset, folder))
    streams: dict[int, bytes] = {}
    for number, (start, blocks, compression) in enumerate(folders):
        inside = [(offset, length) for _, length, offset, folder in members if folder == number]
        needed = max((offset + length for offset, length in inside), default=0)
        # Members lie back to back in their folder: a member placed far past the others would
        # make a small cabinet inflate to gigabytes before anything is refused, so the folder's
        # data may not reach beyond the sizes its members declare.
        if needed > sum(length for _, length in inside):
            raise InputError(
                f"folder {number}: a member starts past the data its members declare"
                f" ({needed} bytes needed for {sum(length for _, length in inside)})",
                field="cab",
            )
        streams[number] = _inflate_folder(view, start, blocks, compression, data_reserve, needed)
    result: dict[str, bytes] = {}
    for name, length, offset, folder in members:
        stream = streams[folder]
        if offset + length > len(stream):
            raise InputError(f"member {name} reaches past its folder's data", field="cab")
        result[name] = stream[offset : offset + length]
    return result


def _inflate_folder(
    view: memoryview, position: int, blocks: int, compression: int, reserve: int, needed: int
) -> bytes:
    out: list[bytes] = []
    produced = 0
    history = b""
    for _ in range(blocks):
        if produced >= needed:
            break
        stored_sum, packed_size, plain_size = _DATA.unpack_from(view, position)
        position += _DATA.size + reserve
        packed = view[position : position + packed_size]
        position += packed_size
        if len(packed) != packed_size or plain_size > _BLOCK:
            raise InputError("a data block is truncated or oversized", field="cab")
        if stored_sum:
            header_tail = struct.pack("<HH", packed_size, plain_size)
            if checksum(header_tail, checksum(packed)) != stored_sum:
                raise InputError("a data block fails its checksum", field="cab")
        if compression == _COMPRESS_NONE:
            plain = bytes(packed)
        else:
            if bytes(packed[:2]) != b"CK":
                raise InputError("an MSZIP block lacks its CK signature", field="cab")
            # MSZIP blocks may use the previous block as their dictionary.
            inflater = (
                zlib.decompressobj(-zlib.MAX_WBITS, zdict=history)
                if history
                else (zlib.decompressobj(-zlib.MAX_WBITS))
            )
            try:
                plain = inflater.decompress(packed[2:], _BLOCK + 1)
            except zlib.error as error:
                raise InputError(f"a data block does not inflate ({error})", field="cab") from error
        if len(plain) != plain_size:
            raise InputError("a data block inflates to the wrong size", field="cab")
        history = plain
        out.append(plain)
        produced += len(plain)
    data = b"".join(out)
    if len(data) < needed:
        raise InputError("the cabinet's data ends early", field="cab")
    return data
