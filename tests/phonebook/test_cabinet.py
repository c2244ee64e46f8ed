"""The cabinet writer against the real tools, and the guarded reader against hostile cabs."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencm.errors import InputError
from opencm.phonebook.cabinet import Limits, checksum, read_cab, write_cab
from tests.phonebook.conftest import need_tool

MEMBERS = {
    "WORLD.pbk": b"1,1,0,Redmond,425,5550134,9600,56000,0,96,\r\n" * 3000 + os.urandom(40000),
    "WORLD.pbr": b"2\r\nSeattle\r\nHyderabad\r\n",
    "WORLD.ver": b"7\r\n",
}


def test_cabextract_and_gcab_accept_our_cabs(tmp_path: Path) -> None:
    cabextract = need_tool("cabextract")
    gcab = need_tool("gcab")
    cab = tmp_path / "full.cab"
    cab.write_bytes(write_cab(MEMBERS))
    tested = subprocess.run([cabextract, "-t", str(cab)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count(" OK ") == 3
    listed = subprocess.run([gcab, "-l", str(cab)], capture_output=True, text=True, check=True)
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == sorted(MEMBERS)
    out = tmp_path / "out"
    subprocess.run([gcab, "-x", "-C", str(out), str(cab)], check=True, capture_output=True)
    for name, data in MEMBERS.items():
        assert (out / name).read_bytes() == data


def test_reader_reads_gcab_cabs_with_block_history(tmp_path: Path) -> None:
    gcab = need_tool("gcab")
    text = b"".join(b"%d,44,0,London,20,555%04d,0,0,0,0,\r\n" % (i, i) for i in range(20000))
    (tmp_path / "A.pbk").write_bytes(text)
    (tmp_path / "A.ver").write_bytes(b"3\r\n")
    subprocess.run(
        [gcab, "-c", "-z", "g.cab", "A.pbk", "A.ver"], cwd=tmp_path, check=True, capture_output=True
    )
    assert read_cab((tmp_path / "g.cab").read_bytes()) == {"A.pbk": text, "A.ver": b"3\r\n"}


@settings(max_examples=30, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Z]{1,8}\.(pbk|pbr|ver)", fullmatch=True),
        st.binary(max_size=70000),
        max_size=3,
    )
)
def test_write_then_read_returns_the_members(members: dict[str, bytes]) -> None:
    assert read_cab(write_cab(members)) == members


@pytest.mark.parametrize(
    "name", [b"../evil.pbk", b"..\\evil.pbk", b"/etc/passwd", b"C:evil", b"sub/x.pbk", b".."]
)
def test_reader_refuses_path_traversal(name: bytes) -> None:
    cab = _patched_name(name)
    with pytest.raises(InputError, match="not a plain file name"):
        read_cab(cab)


def _patched_name(name: bytes) -> bytes:
    # Rebuild the cab by hand so offsets stay right: header, folder, file entry, data.
    good = write_cab({"X": b"data"})
    header = bytearray(good[:36])
    folder = bytearray(good[36:44])
    entry = good[44:60]
    data = good[62:]
    delta = len(name) - 1
    struct.pack_into("<I", header, 8, len(good) + delta)
    start = struct.unpack_from("<I", folder, 0)[0]
    struct.pack_into("<I", folder, 0, start + delta)
    return bytes(header) + bytes(folder) + entry + name + b"\0" + data


def test_reader_refuses_size_bombs_before_inflating() -> None:
    bomb = write_cab({"A.pbk": b"\0" * 5_000_000})
    assert len(bomb) < 100_000
    with pytest.raises(InputError, match="over the limit"):
        read_cab(bomb, limits=Limits(max_file_size=1_000_000))
    with pytest.raises(InputError, match="more than the size limit"):
        read_cab(write_cab({"A": b"1" * 600, "B": b"2" * 600}), limits=Limits(max_total_size=1000))
    with pytest.raises(InputError, match="members, at most"):
        read_cab(write_cab({f"F{i}": b"" for i in range(20)}))


def test_reader_refuses_a_lying_block_size() -> None:
    cab = bytearray(write_cab({"A.pbk": b"\0" * 100_000}))
    data_start = struct.unpack_from("<I", cab, 36)[0]
    struct.pack_into("<I", cab, data_start, 0)  # no checksum, so only the size check can catch
    struct.pack_into("<H", cab, data_start + 6, 100)  # claims 100 bytes, inflates to 32 KiB
    with pytest.raises(InputError, match="wrong size"):
        read_cab(bytes(cab))


def test_reader_refuses_corruption_and_other_formats() -> None:
    cab = bytearray(write_cab(MEMBERS))
    cab[-10] ^= 0xFF
    with pytest.raises(InputError, match="checksum"):
        read_cab(bytes(cab))
    with pytest.raises(InputError, match="not a Microsoft cabinet"):
        read_cab(b"PK\3\4" + b"\0" * 60)
    with pytest.raises(InputError):
        read_cab(write_cab(MEMBERS)[:200])


def test_checksum_of_tail_bytes() -> None:
    assert checksum(b"\x01\x02\x03\x04\x05\x06\x07") == 0x04030201 ^ 0x050607


def test_reader_refuses_a_name_flagged_utf8_that_is_not() -> None:
    cab = bytearray(_patched_name(b"caf\xe9.pbk"))
    struct.pack_into("<H", cab, 44 + 14, 0x20 | 0x80)  # archive + "name is UTF-8"
    with pytest.raises(InputError, match="flagged UTF-8 but is not"):
        read_cab(bytes(cab))
    struct.pack_into("<H", cab, 44 + 14, 0x20)  # without the flag it is Latin-1, as Windows reads
    assert read_cab(bytes(cab)) == {"café.pbk": b"data"}


def test_reader_bounds_a_folder_by_its_members_declared_sizes() -> None:
    # One small member placed far into a long, highly compressible folder: reading it would
    # inflate everything before it. The sizes the members declare bound what is inflated.
    cab = bytearray(write_cab({"A": b"\0" * 3_000_000, "B": b"x"}))
    assert len(cab) < 50_000
    entry_a = 44
    entry_b = entry_a + 16 + len(b"A\0")
    struct.pack_into("<I", cab, entry_a, 1)  # A now declares 1 byte
    with pytest.raises(InputError, match="starts past the data its members declare"):
        read_cab(bytes(cab))
    struct.pack_into("<I", cab, entry_b + 4, 1)  # B right after A: a sane layout reads
    assert read_cab(bytes(cab)) == {"A": b"\0", "B": b"\0"}
