"""``opencm phonebook``: the commands end to end, posting to a directory and over HTTP."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opencm.cli.main import main
from opencm.phonebook.cabinet import read_cab
from opencm.phonebook.release import verify_release_file
from opencm.phonebook.store import load_current
from opencm.phonebook.update import apply_update, installed_version
from opencm.phonebook.workspace import Workspace
from opencm.signing import load_public_key
from tests.phonebook.pbs_double import serve


class Runner:
    def __init__(self, workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.workspace = workspace
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> str:
        self.capsys.readouterr()
        try:
            main(["phonebook", "--workspace", str(self.workspace), *args])
        except SystemExit as exit_:
            got = exit_.code or 0
        else:
            got = 0
        out, err = self.capsys.readouterr()
        assert got == code, out + err
        return out if code == 0 else out + err

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json"))


@pytest.fixture
def pb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Runner:
    run = Runner(tmp_path / "ws", capsys)
    run("create", "WORLD")
    run("keygen")
    return run


def test_keygen_writes_a_private_secret_key(pb: Runner) -> None:
    mode = stat.S_IMODE((pb.workspace / "pba.key").stat().st_mode)
    assert mode == 0o600
    assert "refusing to replace" in pb("keygen", code=3)


def test_book_pop_region_commands(pb: Runner, tmp_path: Path) -> None:
    pb("region", "add", "WORLD", "Seattle")
    pb("region", "add", "WORLD", "Hyderabad")
    pb("region", "rename", "WORLD", "2", "Hitec")
    assert pb.json("region", "list", "WORLD") == [
        {"id": 1, "name": "Seattle"},
        {"id": 2, "name": "Hitec"},
    ]
    added = pb.json(
        "pop",
        "add",
        "WORLD",
        "--country",
        "1",
        "--region",
        "Seattle",
        "--name",
        "Redmond",
        "--area",
        "425",
        "--access",
        "555-0134",
        "--flags",
        "96",
    )
    assert added == {
        "index": 1,
        "country": 1,
        "region": 1,
        "name": "Redmond",
        "area": "425",
        "access": "555-0134",
        "min_speed": 0,
        "max_speed": 0,
        "reserved": 0,
        "flags": 96,
        "dun": "",
    }
    pb(
        "pop",
        "add",
        "WORLD",
        "--index",
        "7",
        "--country",
        "91",
        "--region",
        "hitec",
        "--access",
        "1",
    )
    pb("pop", "edit", "WORLD", "7", "--name", "Madhapur")
    assert [p["name"] for p in pb.json("pop", "search", "WORLD", "mad")] == ["Madhapur"]
    assert len(pb.json("pop", "list", "WORLD")) == 2
    pb("pop", "delete", "WORLD", "1")
    assert "pop delete 1" in pb("undo", "WORLD")
    unknown = pb("pop", "edit", "WORLD", "7", "--region", "Nowhere", code=2)
    assert "no region named 'Nowhere' (the book's regions: Seattle, Hitec)" in unknown
    assert "opencm phonebook region add BOOK Nowhere" in unknown
    assert "1 POPs are in region" in pb("region", "delete", "WORLD", "Seattle", code=3)
    listing = pb.json("list")
    assert listing[0]["pops"] == 2 and listing[0]["regions"] == 2
    pb("export", "WORLD", str(tmp_path / "out"))
    assert (tmp_path / "out" / "WORLD.pbk").read_bytes().startswith(b"1,1,1,Redmond,425,555-0134,")
    assert (tmp_path / "out" / "WORLD.pbr").read_bytes() == b"2\r\nSeattle\r\nHitec\r\n"
    assert "at most 8" in pb("create", "TOOLONGNAME", code=2)


def test_import_release_post_to_directory_and_client_update(pb: Runner, tmp_path: Path) -> None:
    source = tmp_path / "pops.txt"
    source.write_text(
        "".join(f"{i}, 1, 0, P{i}, 425, 555{i:04d}, 0, 0, 0, 0, ISP\n" for i in range(1, 501))
    )
    assert pb.json("import", "WORLD", str(source))["added"] == 500
    assert pb.json("release", "WORLD")["version"] == 1
    store = tmp_path / "store"
    pb("post", "WORLD", "--to", str(store))
    client = tmp_path / "client"
    release = load_current(store, "WORLD")
    assert release is not None
    apply_update(
        client, "WORLD", release.path(release.full).read_bytes(), kind="full", base=None, version=1
    )
    pb("pop", "edit", "WORLD", "3", "--name", "Changed")
    pb("pop", "delete", "WORLD", "4")
    assert pb.json("release", "WORLD")["changed"] == 1
    pb("post", "WORLD")  # the remembered home service
    assert "one home service" in pb("post", "WORLD", "--to", str(tmp_path / "other"), code=3)
    release = load_current(store, "WORLD")
    assert release is not None and release.version == 2
    public = load_public_key(pb.workspace / "pba.pub")
    delta = release.path(release.deltas[1]).read_bytes()
    signature = release.signature_path(release.deltas[1]).read_bytes()
    verify_release_file(delta, signature, public, "WORLD", "delta", version=2, base=1, installed=1)
    apply_update(client, "WORLD", delta, kind="delta", base=1, version=2)
    assert installed_version(client, "WORLD") == 2
    full = read_cab(release.path(release.full).read_bytes())
    assert (client / "WORLD.pbk").read_bytes() == full["WORLD.pbk"]
    history = pb.json("history", "WORLD")
    assert [h["version"] for h in history] == [1, 2] and all(h["posted"] for h in history)


def test_post_over_http(pb: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pb("pop", "add", "WORLD", "--country", "1", "--access", "5550100")
    pb("release", "WORLD")
    store = tmp_path / "served"
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    with serve(store, "s3cret") as (url, seen):
        monkeypatch.setenv("OPENCM_PBS_TOKEN", "wrong")
        assert "refused the token" in pb("post", "WORLD", "--to", url, code=3)
        answer = pb.json("post", "WORLD", "--to", url, "--token-file", str(token))
        assert answer == {"book": "WORLD", "version": 1, "target": url}
        assert seen[-1] == {
            "path": "/admin/books/WORLD/releases/1",
            "content-type": "application/x-tar",
        }
        release = load_current(store, "WORLD")
        assert release is not None and release.version == 1
        # Posting the same version again: the service says 409.
        assert "already serves WORLD" in pb("post", "WORLD", "--token-file", str(token), code=3)
    assert "cannot reach" in pb("post", "WORLD", "--token-file", str(token), code=1)


def test_import_progress_and_errors_through_the_real_command(tmp_path: Path) -> None:
    env = {**os.environ, "OPENCM_PBA_WORKSPACE": str(tmp_path / "ws")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opencm", "phonebook", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    assert run("create", "WORLD").returncode == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("1, 1, 0, A, 1, 1, 0, 0, 0, 0,\n2, 1, 0, B, 1, 1, x, 0, 0, 0,\n")
    result = run("import", "WORLD", str(bad))
    assert result.returncode == 2
    assert f"opencm: error: {bad}:2: min_speed: expected a whole number, found 'x'" in result.stderr
    assert "Traceback" not in result.stderr
    good = tmp_path / "good.txt"
    good.write_text("1, 1, 0, A, 1, 1, 0, 0, 0, 0,\n")
    result = run("import", "WORLD", str(good))
    assert result.returncode == 0 and "Importing good.txt" in result.stderr
    assert "1 added" in result.stdout


def test_release_tar_is_flat_posix_and_failed_post_remembers_nothing(
    pb: Runner, tmp_path: Path
) -> None:
    import io
    import tarfile

    from opencm.phonebook.post import release_tar

    data = release_tar({"full.cab": b"x", "full.cab.minisig": b"y"})
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        members = [(m.name, m.isfile(), m.mtime) for m in tar.getmembers()]
    assert members == [("full.cab", True, 0), ("full.cab.minisig", True, 0)]
    pb("pop", "add", "WORLD", "--country", "1", "--access", "5550100")
    pb("release", "WORLD")
    assert "token" in pb("post", "WORLD", "--to", "http://127.0.0.1:9", code=2)
    assert pb.json("show", "WORLD")["post_target"] is None


def test_service_rejecting_the_archive_is_a_clear_error(tmp_path: Path) -> None:
    from opencm.errors import InputError
    from opencm.phonebook.post import post_to_service

    with (
        serve(tmp_path / "store", "t") as (url, _),
        pytest.raises(InputError, match="rejected the release archive"),
    ):
        post_to_service(url, "t", "WORLD", 1, {"evil.txt": b"x"})


def test_delete_book(pb: Runner) -> None:
    pb("delete", "WORLD", "--yes")
    assert pb.json("list") == []
    assert "no phone book named 'WORLD'" in pb("show", "WORLD", code=2)


def test_export_released_writes_the_version_file_the_kit_reads(pb: Runner, tmp_path: Path) -> None:
    from opencm.kit.install import read_version_file

    assert "no release yet" in pb("export", "WORLD", str(tmp_path / "kit"), "--released", code=3)
    pb("pop", "add", "WORLD", "--country", "1", "--access", "5550100")
    pb("release", "WORLD")
    pb("pop", "add", "WORLD", "--country", "1", "--access", "5550101")
    pb("export", "WORLD", str(tmp_path / "kit"), "--released")
    assert read_version_file((tmp_path / "kit" / "WORLD.ver").read_bytes()) == 1
    assert (tmp_path / "kit" / "WORLD.pbk").read_bytes() == b"1,1,0,,,5550100,0,0,0,0,\r\n"


def test_check_lists_ms_cpsp_problems_with_file_and_line(pb: Runner, tmp_path: Path) -> None:
    pbk = tmp_path / "OLD.pbk"
    pbk.write_bytes(b"1,1,0,A,1,5550100,0,0,0,0,\r\n2,,0,B,1,5550101,0,0,0,0,\r\n")
    (tmp_path / "old.PBR").write_bytes(b"0\r\n")
    out = pb("check", str(pbk), code=1)
    assert f"{pbk}:2: Country Code: error: the country code is missing [cpsp-country-missing" in out
    assert "1 POPs in effect, 1 problems" in out
    report = json.loads(pb("check", str(pbk), "--json", code=1))
    assert report["pops"] == 1
    assert report["problems"][0]["rule"] == "cpsp-country-missing"
    pbk.write_bytes(b"1,1,0,A,1,5550100,0,0,0,0,\r\n")
    assert "1 POPs in effect, 0 problems" in pb("check", str(pbk))


def test_two_commands_at_once_on_one_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "OPENCM_PBA_WORKSPACE": str(tmp_path / "ws")}
    command = [sys.executable, "-m", "opencm", "phonebook"]
    subprocess.run([*command, "create", "WORLD"], env=env, check=True, capture_output=True)
    files = []
    for number, start in enumerate((1, 5001)):
        path = tmp_path / f"part{number}.txt"
        path.write_text(
            "".join(
                f"{i}, 1, 0, P{i}, 1, 555{i:04d}, 0, 0, 0, 0,\n" for i in range(start, start + 3000)
            )
        )
        files.append(path)
    procs = [
        subprocess.Popen(
            [*command, "import", "WORLD", str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for path in files
    ]
    procs.append(
        subprocess.Popen(
            [*command, "region", "add", "WORLD", "North"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    )
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Workspace(tmp_path / "ws") as ws:
        assert ws.book("WORLD").pops == 6000 and ws.regions("WORLD") == ["North"]
        assert ws.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
