"""The parsers a hostile file or request reaches, each with the one rule every input must obey.

A surface takes bytes and either accepts them or refuses them with an
:class:`~opencm.errors.OpencmError` (a message naming the file, line or field). Any other
exception is a traceback a user would see, and a finding. Inputs are real seed files (a Windows
profile, an MS-CPSP phone book, a signed cab, a signed package, a real PBS query) mutated byte by
byte, so most of them get past the first check and reach the deep parts of each parser.

Used by ``tests/fuzz/test_fuzz.py`` (a bounded run in the suite) and ``tests/fuzz/campaign.py``
(a long run with figures: inputs per surface, findings, hangs).
"""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import minisign
from hypothesis import strategies as st

from opencm.errors import OpencmError
from opencm.kit.package import read_package
from opencm.pbs.query import PbsQuery, QueryError, parse_query
from opencm.phonebook.cabinet import read_cab, write_cab
from opencm.phonebook.importer import plan_csv, plan_pba, plan_pbk
from opencm.phonebook.pbk import parse_pbk
from opencm.phonebook.pbr import parse_pbr
from opencm.profile.ini import IniFile

FIXTURES = Path(__file__).resolve().parents[1] / "profile" / "fixtures"

PBK = (
    b"1,1,1,Seattle,206,5550100,9600,56000,0,96,ISP\r\n"
    b"2,1,2,Redmond,425,5550134,9600,56000,2,0,\r\n"
    b"3,44,0,London,20,79460000,0,0,1,0,\r\n"
)
PBR = b"2\r\nWashington\r\nOregon\r\n"
CSV = b"id,country,region,city,area,number,flags\r\n1,1,1,Seattle,206,5550100,0\r\n"
PBA = b"1, 1, 1, Seattle, 206, 5550100, 9600, 56000, 0, 0, ISP\r\n"
QUERY = b"osarch=0&ostype=2&lcid=1033&osver=6.1&cmver=7.2&pb=CONTOSO&pbver=3&cmsver=1"


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few byte-level edits: flips, inserts, deletions, repeats, truncation."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "truncate", "set"]))
        if edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        elif edit == "repeat":
            data[at:at] = bytes(data[at : at + draw(st.integers(1, 64))]) * draw(st.integers(2, 50))
        elif edit == "truncate":
            del data[at:]
        else:
            data[at] = draw(st.sampled_from(b"\0\r\n,=[];%&\\/.\xff\xfe\x80"))
    return bytes(data)


def inputs(seed: bytes) -> st.SearchStrategy[bytes]:
    """Mostly mutations of a real input, sometimes bytes from nowhere."""
    return st.one_of(mutated(seed), mutated(seed), mutated(seed), st.binary(max_size=512))


def _refused_or_accepted(call: Callable[[], object]) -> None:
    try:
        call()
    except OpencmError as error:
        assert str(error), "an error without a message"


# -- surfaces ---------------------------------------------------------------------------------


def profile_surface(data: bytes) -> None:
    """A .cms as a user's command sees it: show, check, plan, pops, through ``opencm``'s own
    entry point in process, printing to a strict UTF-8 pipe as ``opencm … | jq`` would."""
    from opencm.cli.main import main

    folder = Path(tempfile.mkdtemp(prefix="opencm-fuzz-"))
    try:
        (folder / "FUZZ").mkdir()
        (folder / "FUZZ.cmp").write_bytes(b"[Connection Manager]\r\nCMSFile=FUZZ\\FUZZ.cms\r\n")
        (folder / "FUZZ" / "FUZZ.cms").write_bytes(data)
        for args in (
            ["profile", "show", "--json"],
            ["profile", "check"],
            ["actions", "plan", "--json"],
            ["pops", "--json"],
        ):
            out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
            err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main([*args, str(folder / "FUZZ.cmp")])
                except SystemExit as exit_:
                    assert exit_.code in (0, 1, 2, 3, None), (args, exit_.code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ini_surface(data: bytes) -> None:
    """Parse, look up and write back: an unchanged file renders to the same bytes."""

    def run() -> None:
        ini = IniFile.parse(data)
        for section in ini.sections()[:20]:
            for entry in ini.entries(section)[:20]:
                ini.get(section, entry.key)
                ini.get_int(section, entry.key, 0)
        assert ini.render() == data

    _refused_or_accepted(run)


def pbk_surface(data: bytes) -> None:
    _refused_or_accepted(lambda: parse_pbk(data, "fuzz.pbk", region_count=2))


def pbr_surface(data: bytes) -> None:
    _refused_or_accepted(lambda: parse_pbr(data, "fuzz.pbr"))


def import_surface(data: bytes) -> None:
    """The PBA importer's three formats (what `opencm phonebook import` plans)."""
    path = Path("fuzz.txt")
    text = data.decode("latin-1")
    _refused_or_accepted(lambda: plan_pba(text, path, ["Washington"], lambda n: None))
    _refused_or_accepted(lambda: plan_csv(text, path, ["Washington"], lambda n: None))
    _refused_or_accepted(lambda: plan_pbk(data, path, ["Washington"]))


def cab_surface(data: bytes) -> None:
    _refused_or_accepted(lambda: read_cab(data))


def query_surface(data: bytes) -> None:
    """The PBS request line's query: a query or a 400/414 answer, never an exception."""
    answer = parse_query(data)
    assert isinstance(answer, PbsQuery | QueryError)
    if isinstance(answer, QueryError):
        assert answer.status in (400, 414)


@functools.cache
def _signed_package() -> tuple[bytes, dict[str, bytes], minisign.PublicKey]:
    from tests.kit.conftest import make_keys, write_kit
    from tests.kit.test_install import package_of

    folder = Path(tempfile.mkdtemp(prefix="opencm-fuzz-kit-"))
    keys = make_keys(folder / "keys")
    package = package_of(write_kit(folder / "kit"), keys, 2)
    files = read_package(package, [keys.public]).files
    return package.read_bytes(), files, keys.public


def package_surface(data: bytes) -> None:
    """A tampered package is refused; one that verifies carries exactly the signed files."""
    _, files, public = _signed_package()
    with tempfile.NamedTemporaryFile(suffix=".cmpkg.pyz") as handle:
        handle.write(data)
        handle.flush()
        try:
            verified = read_package(handle.name, [public])
        except OpencmError:
            return
        assert verified.files == files


@dataclass(frozen=True)
class Surface:
    name: str
    check: Callable[[bytes], None]
    strategy: Callable[[], st.SearchStrategy[bytes]]


def _profile_seed() -> bytes:
    return (FIXTURES / "contoso.cms").read_bytes()


SURFACES = (
    Surface("profile (show/check/plan/pops)", profile_surface, lambda: inputs(_profile_seed())),
    Surface("ini (parse/get/render)", ini_surface, lambda: inputs(_profile_seed())),
    Surface("MS-CPSP .pbk", pbk_surface, lambda: inputs(PBK)),
    Surface("MS-CPSP .pbr", pbr_surface, lambda: inputs(PBR)),
    Surface("PBA/CSV/.pbk import", import_surface, lambda: st.one_of(inputs(PBA), inputs(CSV))),
    Surface(
        "cabinet",
        cab_surface,
        lambda: inputs(write_cab({"FUZZ.pbk": PBK * 50, "FUZZ.pbr": PBR, "FUZZ.ver": b"3\r\n"})),
    ),
    Surface("PBS query", query_surface, lambda: inputs(QUERY)),
    Surface("kit package", package_surface, lambda: inputs(_signed_package()[0])),
)
