"""Unpacking what administrators download: CMAK cabinets, IExpress ``.exe``, Azure's ``.zip``.

Cabinets are read by Debian's ``cabextract`` (Windows builds compress with LZX, which opencm's
own cabinet reader does not do). An IExpress self-extractor is a Windows program with the
cabinet appended as a resource: opencm finds the ``MSCF`` signature, checks the CFHEADER
fields (reserved words zero, version 1.3, a size that fits) and hands that slice to
cabextract. Every member name is checked before anything is written: no absolute paths, no
``..``, no links, bounded sizes and counts.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from opencm.errors import InputError

MAX_MEMBERS = 2000
MAX_TOTAL = 256 * 1024 * 1024
CAB_MAGIC = b"MSCF"


def _check_member(name: str, source: Path) -> str:
    text = name.replace("\\", "/")
    pure = PurePosixPath(text)
    if (
        not text
        or text.startswith("/")
        or PureWindowsPath(name).drive
        or ".." in pure.parts
        or "\x00" in text
    ):
        raise InputError(f"refusing the archive member {name!r}: it leaves the folder",
                         path=source)  # fmt: skip
    return text


def find_cabinets(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each plausible cabinet inside ``data`` (an IExpress ``.exe``)."""
    found: list[tuple[int, int]] = []
    start = 0
    while (offset := data.find(CAB_MAGIC, start)) >= 0:
        start = offset + 4
        header = data[offset : offset + 36]
        if len(header) < 36:
            break
        (_, reserved1, size, reserved2, files_offset, reserved3, minor, major, folders, files) = (
            struct.unpack("<4sIIIIIBBHH", header[:30])
        )
        if reserved1 or reserved2 or reserved3 or (major, minor) != (1, 3):
            continue
        if size < 36 or offset + size > len(data) or files_offset >= size or not files:
            continue
        if not folders:
            continue
        found.append((offset, size))
    return found


def cab_member_names(data: bytes, source: Path) -> list[str]:
    """The CFFILE names of a cabinet, read from its header (MS-CAB), each checked."""
    if len(data) < 36 or not data.startswith(CAB_MAGIC):
        raise InputError("not a readable cabinet: no MSCF header", path=source)
    (files_offset,) = struct.unpack_from("<I", data, 16)
    (count,) = struct.unpack_from("<H", data, 28)
    names: list[str] = []
    position = files_offset
    for _ in range(min(count, MAX_MEMBERS + 1)):
        end = data.find(b"\x00", position + 16)
        if position + 16 > len(data) or end < 0:
            raise InputError("not a readable cabinet: the file table is cut short", path=source)
        raw = data[position + 16 : end]
        (attributes,) = struct.unpack_from("<H", data, position + 14)
        name = raw.decode("utf-8" if attributes & 0x80 else "latin-1", errors="replace")
        names.append(_check_member(name, source))
        position = end + 1
    return names


def extract_cab(cab: Path, into: Path) -> list[Path]:
    """Extract a cabinet with cabextract after checking every member name."""
    cab_member_names(cab.read_bytes(), cab)
    if shutil.which("cabextract") is None:
        raise InputError("cabextract is not installed (Debian: apt install cabextract)", path=cab)
    listing = subprocess.run(
        ["cabextract", "-q", "-l", str(cab)], capture_output=True, text=True, timeout=120
    )
    if listing.returncode != 0:
        raise InputError(
            f"not a readable cabinet: {listing.stderr.strip() or listing.stdout.strip()}", path=cab
        )
    total = 0
    names: list[str] = []
    for line in listing.stdout.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        total += int(parts[0].strip())
        names.append(_check_member(parts[2].strip(), cab))
    if len(names) > MAX_MEMBERS or total > MAX_TOTAL:
        raise InputError(f"the cabinet is too large ({len(names)} files, {total} bytes)", path=cab)
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["cabextract", "-q", "-d", str(into), str(cab)], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise InputError(f"cabextract failed: {done.stderr.strip()}", path=cab)
    extracted = [p for p in into.rglob("*") if p.is_file() or p.is_symlink()]
    for path in extracted:
        if path.is_symlink() or not path.resolve().is_relative_to(into.resolve()):
            raise InputError(f"refusing {path.name}: a link in the cabinet", path=cab)
    return extracted


def extract_iexpress(exe: Path, data: bytes, into: Path) -> list[Path]:
    """The profile cabinet inside an IExpress self-extractor."""
    cabinets = find_cabinets(data)
    if not cabinets:
        raise InputError("no cabinet (MSCF) inside: not a CMAK/IExpress package", path=exe)
    last_error: InputError | None = None
    for index, (offset, size) in enumerate(cabinets):
        cab = into.parent / f"{into.name}-embedded-{index}.cab"
        cab.write_bytes(data[offset : offset + size])
        try:
            return extract_cab(cab, into)
        except InputError as error:
            last_error = error
            shutil.rmtree(into, ignore_errors=True)
    assert last_error is not None
    raise InputError(f"the embedded cabinet cannot be read: {last_error.message}", path=exe)


def extract_zip(archive: Path, into: Path) -> list[Path]:
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise InputError(f"not a readable zip file: {error}", path=archive) from None
    with handle:
        members = handle.infolist()
        if len(members) > MAX_MEMBERS or sum(m.file_size for m in members) > MAX_TOTAL:
            raise InputError("the zip file is too large", path=archive)
        written: list[Path] = []
        for member in members:
            name = _check_member(member.filename, archive)
            if member.is_dir():
                continue
            if (member.external_attr >> 16) & 0o170000 == 0o120000:
                raise InputError(f"refusing the link {name!r} in the zip", path=archive)
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(handle.read(member))
            except (
                zipfile.BadZipFile,
                OSError,
                RuntimeError,
                ValueError,
                EOFError,
                zlib.error,
            ) as error:
                raise InputError(f"cannot read {name} from the zip: {error}",
                                 path=archive) from None  # fmt: skip
            written.append(target)
    return written


__all__ = ["extract_cab", "extract_iexpress", "extract_zip", "find_cabinets"]
