"""The whole path with the real Phone Book Service: the administrator releases and posts over
HTTP to ``opencm pbs serve``; a client asks the service, verifies, and applies full and delta
updates with :mod:`opencm.phonebook.update`, ending with exactly the released book."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from opencm.cli.main import cli
from opencm.pbs.client import fetch_update
from opencm.phonebook.cabinet import read_cab
from opencm.phonebook.pbk import Pop
from opencm.phonebook.update import apply_update, installed_version
from opencm.phonebook.workspace import Workspace
from tests.pbs.conftest import start_server


def opencm(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def client_update(endpoint: str, service_dir: Path, public_key: bytes) -> str:
    installed = installed_version(service_dir, "WORLD") or 0
    outcome = fetch_update(endpoint, "WORLD", installed, public_key, timeout=10)
    if outcome.status in ("full", "delta"):
        assert outcome.cab is not None and outcome.version is not None
        apply_update(
            service_dir,
            "WORLD",
            outcome.cab,
            kind=outcome.status,
            base=outcome.base,
            version=outcome.version,
        )
    return outcome.status


def test_post_to_the_real_service_and_update_clients(tmp_path: Path) -> None:
    data = tmp_path / "pbs"
    data.mkdir()
    token = json.loads(opencm("pbs", "token", "add", "pba", "--data", str(data), "--json"))["token"]
    (tmp_path / "token").write_text(token)
    server = start_server(data, tmp_path)
    try:
        workspace = tmp_path / "ws"
        pba = ["phonebook", "--workspace", str(workspace)]
        opencm(*pba, "create", "WORLD")
        opencm(*pba, "keygen")
        public_key = (workspace / "pba.pub").read_bytes()
        with Workspace(workspace) as ws:
            ws.add_region("WORLD", "Seattle")
            for index in range(1, 51):
                ws.add_pop(
                    "WORLD", Pop(index, 1, index % 2, f"POP {index}", "425", f"555{index:04d}")
                )
        opencm(*pba, "release", "WORLD")
        opencm(*pba, "post", "WORLD", "--to", server.url, "--token-file", str(tmp_path / "token"))

        first = tmp_path / "client-first"  # installs v1 now, follows every release by deltas
        assert client_update(server.endpoint, first, public_key) == "full"
        assert installed_version(first, "WORLD") == 1
        assert client_update(server.endpoint, first, public_key) == "none"
        behind = tmp_path / "client-behind"  # installs v1, then nothing until v8: too far back
        assert client_update(server.endpoint, behind, public_key) == "full"
        for version in range(2, 9):
            with Workspace(workspace) as ws:
                ws.edit_pop("WORLD", version, name=f"renamed in {version}")
                ws.delete_pop("WORLD", 50 - version)
                ws.add_pop("WORLD", Pop(100 + version, 44, 1, "London", "20", "5550100"))
            opencm(*pba, "release", "WORLD")
            opencm(*pba, "post", "WORLD", "--token-file", str(tmp_path / "token"))
            assert client_update(server.endpoint, first, public_key) == "delta"
        late = tmp_path / "client-late"  # starts at v8's full book
        assert client_update(server.endpoint, late, public_key) == "full"
        assert client_update(server.endpoint, behind, public_key) == "full"  # 7 versions behind
        with Workspace(workspace) as ws:
            expected = read_cab(ws.release_files("WORLD", 8)["full.cab"])
        for client in (first, late, behind):
            for name, content in expected.items():
                assert (client / name).read_bytes() == content
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCM_PBS_TOKEN", raising=False)
