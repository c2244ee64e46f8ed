"""Property: whatever an administrator adds by hand, a rebuild keeps it, byte for byte."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencm.kit.build import build_kit
from opencm.profile.ini import IniFile
from tests.kit.conftest import write_kit

SECTIONS = ["Connection Manager", "ISP", "Connect Actions", "Menu Options", "opencm", "Custom"]
# Keys the kit never writes: names with a prefix no CMAK key has.
KEYS = st.from_regex(r"Hand[A-Za-z0-9]{1,8}", fullmatch=True)
VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters=";\"'"),
    max_size=20,
).map(str.strip)
EDITS = st.lists(st.tuples(st.sampled_from(SECTIONS), KEYS, VALUES), max_size=8)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One kit, built once; every example copies it (a build per example is the slow part)."""
    folder = tmp_path_factory.mktemp("kit-template")
    build_kit(write_kit(folder / "kit"))
    return folder / "kit"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS, comment=st.booleans())
def test_hand_added_keys_survive_any_rebuild(
    template: Path, edits: list[tuple[str, str, str]], comment: bool
) -> None:
    work = Path(tempfile.mkdtemp(prefix="run-", dir=template.parent))
    try:
        kit = work / "kit"
        shutil.copytree(template, kit, symlinks=True)
        cms_path = kit / "build" / "CONTOSO" / "CONTOSO" / "CONTOSO.cms"
        cms = IniFile.load(cms_path)
        expected: dict[tuple[str, str], str] = {}
        for section, key, value in edits:
            if (section, key.casefold()) not in {(s, k.casefold()) for s, k in expected}:
                cms.set(section, key, value)
                expected[(section, key)] = value
        cms.save()
        if comment:
            cms_path.write_bytes(cms_path.read_bytes() + b"; trailing note\r\n")
        edited = cms_path.read_bytes()

        result = build_kit(kit)

        assert result.conflicts == []
        # Nothing the kit controls changed, so the rebuild leaves the file exactly as edited.
        assert cms_path.read_bytes() == edited
        rebuilt = IniFile.load(cms_path)
        for (section, key), value in expected.items():
            assert rebuilt.get(section, key) == value
    finally:
        shutil.rmtree(work, ignore_errors=True)
