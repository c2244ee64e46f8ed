"""No traceback for any file handed to ``opencm import``: mutated profiles and RAS books.

Each example takes a valid Azure-shaped profile, mutates one of its files (bytes flipped,
lines cut, duplicated, reordered or replaced by junk, the file removed or emptied) and imports
it in-process: the result is a kit, or an :class:`OpencmError` naming a file; nothing else.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencm.errors import OpencmError
from opencm.migrate import import_source, write_kit
from opencm.migrate.report import Report
from opencm.profile.rasbook import map_entry, parse_ras
from tests.windows_profiles import AZURE_SHORT, ras_book, write_windows_profile

TARGETS = ("cms", "cmp", "pbk", "routes", "inf")
JUNK = st.sampled_from(
    [
        b"", b"[", b"]", b"=", b"[Connect Actions]", b"0=", b"0&Flags=x", b"\x00\xff\xfe",
        b"VpnStrategy=abc", b"Type=2", b"PhoneNumber=", b"CustomAuthKey=-1", b"ADD",
        b"ADD 1.2.3.4 MASK 255.0.0.0 default METRIC default IF default IF",
        b"PBFile=..\\..\\SENTINEL", b"CMSFile=C:\\x.cms", b"Icon=SENTINEL",
        b"HelpFile=..\\SENTINEL", b"0=SENTINEL", b"0=..\\..\\SENTINEL",
        b"\r", b"\n\n\n", "[\u00e9]".encode(), b"REMOVE_GATEWAY x",
    ]
)  # fmt: skip


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, int, bytes]:
    target = draw(st.sampled_from(TARGETS))
    how = draw(st.sampled_from(["flip", "cut", "junk", "dup", "drop-line", "empty", "remove"]))
    position = draw(st.integers(0, 10_000))
    junk = draw(JUNK)
    return target, how, position, junk


def mutate(data: bytes, how: str, position: int, junk: bytes) -> bytes | None:
    lines = data.splitlines(keepends=True) or [b""]
    at = position % len(lines)
    if how == "flip" and data:
        index = position % len(data)
        return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]
    if how == "cut":
        return data[: position % (len(data) + 1)]
    if how == "junk":
        return b"".join([*lines[:at], junk + b"\r\n", *lines[at:]])
    if how == "dup":
        return b"".join([*lines[: at + 1], lines[at], *lines[at + 1 :]])
    if how == "drop-line":
        return b"".join(lines[:at] + lines[at + 1 :])
    if how == "empty":
        return b""
    return None  # remove the file


def _path(root: Path, target: str) -> Path:
    service = root / AZURE_SHORT
    return {
        "cms": service / f"{AZURE_SHORT}.cms",
        "cmp": root / f"{AZURE_SHORT}.cmp",
        "pbk": service / f"{AZURE_SHORT}.pbk",
        "routes": service / "routes.txt",
        "inf": service / f"{AZURE_SHORT}.inf",
    }[target]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations(), st.booleans())
def test_mutated_profiles_import_or_fail_cleanly(
    mutation: tuple[str, str, int, bytes], ikev2: bool
) -> None:
    target, how, position, junk = mutation
    with tempfile.TemporaryDirectory(prefix="opencm-mut-") as scratch:
        root = Path(scratch) / "Cm"
        outside = Path(scratch) / "SENTINEL"
        outside.write_bytes(b"outside-secret")
        junk = junk.replace(b"SENTINEL", str(outside).encode()) if b"..\\" not in junk else junk
        book = ras_book("vnet", strategy=7, device="WAN Miniport (IKEv2)") if ikev2 else None
        write_windows_profile(root, book=book)
        path = _path(root, target)
        changed = mutate(path.read_bytes(), how, position, junk)
        if changed is None:
            path.unlink()
        else:
            path.write_bytes(changed)
        report = Report(str(root))
        try:
            draft = import_source(root, report)
            write_kit(draft, Path(scratch) / "kit", report)
            # Nothing from outside the profile folder is ever carried into the kit.
            assert all(b"outside-secret" not in data for data in draft.files.values())
        except OpencmError as error:
            assert error.message  # a message for a person, with the file where known
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 20), st.sampled_from([1, 2, 5, 7, 8, 14, 99]))
def test_ras_books_never_raise(noise: bytes, cut: int, strategy: int) -> None:
    data = ras_book("e", strategy=strategy)
    lines = data.splitlines(keepends=True)
    mutated = b"".join([*lines[:cut], noise, *lines[cut:]])
    book = parse_ras(mutated, "x.pbk")
    for entry in book.entries:
        mapping = map_entry(entry)
        assert mapping.reason
