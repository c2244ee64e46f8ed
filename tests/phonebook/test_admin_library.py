"""The Phone Book Administrator's workflow through the library, as a desktop front end calls it
(the CLI is a thin layer over the same functions: ``opencm.phonebook.keys``, ``.check``,
``Workspace.release`` and ``.post.post_latest``)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from opencm.errors import InputError, RefusedError
from opencm.phonebook.check import check_phonebook
from opencm.phonebook.keys import key_paths, make_keypair, signing_key
from opencm.phonebook.pbk import Pop
from opencm.phonebook.post import post_latest
from opencm.phonebook.release import verify_release_file
from opencm.phonebook.store import load_current
from opencm.phonebook.workspace import Workspace
from opencm.signing import load_public_key


def no_token() -> str:
    raise AssertionError("a post to a directory must not ask for a token")


def test_keys_release_and_the_four_step_post(tmp_path: Path) -> None:
    root = tmp_path / "pba"
    with pytest.raises(InputError, match="keygen"):
        signing_key(root)  # no key yet: the message says how to make one
    paths = make_keypair(root)
    assert stat.S_IMODE(paths.secret.stat().st_mode) == 0o600
    assert paths == key_paths(root)
    with pytest.raises(RefusedError, match="refusing to replace"):
        make_keypair(root)
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    with Workspace(root) as ws:
        ws.create_book("WORLD")
        with pytest.raises(RefusedError, match="no release yet"):
            post_latest(ws, "WORLD", target=str(store), token=no_token)
        ws.add_pop("WORLD", Pop(index=0, country=1, access="5550100", name="Seattle"))
        with pytest.raises(RefusedError, match="no release yet"):
            ws.export_to("WORLD", tmp_path / "kit", released=True)
        info, _files = ws.release("WORLD", signing_key(root))
        assert info.version == 1
        # What a kit's [phonebook] folder holds: the release, its version file included.
        written = ws.export_to("WORLD", tmp_path / "kit", released=True)
        assert written == ["WORLD.pbk", "WORLD.pbr", "WORLD.ver"]
        assert ws.export_to("WORLD", tmp_path / "work") == ["WORLD.pbk", "WORLD.pbr"]
        assert (tmp_path / "work" / "WORLD.pbk").read_bytes().startswith(b"1,1,")
        with pytest.raises(InputError, match="where to"):
            post_latest(ws, "WORLD", target=None, token=no_token)
        posted = post_latest(ws, "WORLD", target=str(store), token=no_token)
        assert (posted.book, posted.version, posted.target) == ("WORLD", 1, str(store))
        assert ws.book("WORLD").post_target == str(store)  # step 4: the home remembered
        assert ws.book("WORLD").posted_version == 1
        with pytest.raises(RefusedError, match="one home"):
            post_latest(ws, "WORLD", target=str(elsewhere), token=no_token)
        assert not elsewhere.exists()  # step 2 refused before anything was sent
    release = load_current(store, "WORLD")
    assert release is not None and release.version == 1
    verify_release_file(
        release.path(release.full).read_bytes(),
        release.signature_path(release.full).read_bytes(),
        load_public_key(paths.public),
        "WORLD",
        "full",
        version=1,
        base=None,
        installed=None,
    )


def test_check_reads_the_region_file_beside_the_book_in_any_case(tmp_path: Path) -> None:
    pbk = tmp_path / "OLD.pbk"
    pbk.write_bytes(b"1,1,0,A,1,5550100,0,0,0,0,\r\n2,,0,B,1,5550101,0,0,0,0,\r\n")
    (tmp_path / "old.PBR").write_bytes(b"0\r\n")
    result = check_phonebook(pbk)
    assert result.pbr == tmp_path / "old.PBR"
    assert result.pops == 1
    assert [(p.rule, p.line) for p in result.problems] == [("cpsp-country-missing", 2)]
