"""Component profiles merged into a top-level profile, with conflicts reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opencm.kit.build import build_kit
from opencm.profile.ini import IniFile
from tests.kit.conftest import run_cli, tree


def small_kit(
    folder: Path, short: str, *, book: str, book_text: str, server: str, strategy: str = "2"
) -> Path:
    (folder / "pb").mkdir(parents=True)
    (folder / "pb" / f"{book}.pbk").write_text(book_text)
    (folder / "pb" / f"{book}.pbr").write_text("Region\n")
    (folder / "wg.conf").write_text(f"[Interface]\n# {short}\n")
    (folder / "kit.toml").write_text(
        f"""
[service]
name = "{short} network"
short = "{short}"
connection_types = ["double"]

[[vpn]]
name = "Shared"
address = "{server}"
link = "wireguard"
config = "wg.conf"

[phonebook]
name = "{book}"
dir = "pb"
"""
    )
    built = build_kit(folder)
    # Per-entry settings a component brings (as CMAK would have written them).
    cms = IniFile.load(built.cms_path)
    cms.set(f"Server&{short} Tunnel", "Require_EAP", "1")
    cms.set("Networking&Shared Tunnel", "VpnStrategy", strategy)
    cms.save()
    return built.root


def top_kit(folder: Path, components: list[Path]) -> Path:
    folder.mkdir()
    listed = ", ".join(f'"{c}"' for c in components)
    (folder / "kit.toml").write_text(
        f"""
components = [{listed}]

[service]
name = "Worldwide"
short = "WORLD"
connection_types = ["dialup"]
"""
    )
    return folder


def test_merge_takes_phone_books_and_settings(tmp_path: Path) -> None:
    north = small_kit(tmp_path / "n", "NORTH", book="NORTH", book_text="n\n", server="n.example")
    east = small_kit(tmp_path / "e", "EAST", book="EAST", book_text="e\n", server="n.example")
    result = build_kit(top_kit(tmp_path / "top", [north, east]))
    assert result.merge is not None
    assert result.merge.conflicts == []
    assert tree(result.root) == {
        "WORLD.cmp",
        "WORLD/WORLD.cms",
        "WORLD/WORLD.inf",
        "WORLD/NORTH.pbk",
        "WORLD/NORTH.pbr",
        "WORLD/EAST.pbk",
        "WORLD/EAST.pbr",
        "WORLD/wg.conf",
    }
    cms = IniFile.load(result.cms_path)
    assert cms.get("opencm", "PhoneBook&NORTH") == "WORLD\\NORTH.pbk"
    assert cms.get("opencm", "PhoneBook&EAST") == "WORLD\\EAST.pbk"
    assert cms.get("opencm", "VpnServer0") == "Shared"
    assert cms.get("opencm", "Config&Shared") == "WORLD\\wg.conf"
    assert cms.get("Server&NORTH Tunnel", "Require_EAP") == "1"
    assert cms.get("Server&EAST Tunnel", "Require_EAP") == "1"
    inf = IniFile.load(result.root / "WORLD" / "WORLD.inf")
    assert [(e.key, e.value) for e in inf.entries("Merge Profiles")] == [
        ("0", "NORTH"),
        ("1", "EAST"),
    ]
    assert IniFile.parse(result.cms_path.read_bytes()).render() == result.cms_path.read_bytes()


def test_merge_conflicts_are_reported_and_the_first_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    north = small_kit(tmp_path / "n", "NORTH", book="NORTH", book_text="n\n", server="n.example")
    # SOUTH ships a different book under the same name, a VPN server of the same name
    # elsewhere, and another VpnStrategy for the same tunnel entry.
    south = small_kit(
        tmp_path / "s", "SOUTH", book="NORTH", book_text="s\n", server="s.example", strategy="7"
    )
    top = top_kit(tmp_path / "top", [north, south])
    code, out, err = run_cli(capsys, "kit", "build", str(top), "--json")
    assert code == 1, err
    conflicts = json.loads(out)["merge_conflicts"]
    messages = [c["message"] for c in conflicts]
    assert {c["component"] for c in conflicts} == {"SOUTH"}
    assert any(m.startswith("phone book NORTH.pbk is also in NORTH") for m in messages)
    assert any("VPN server 'Shared' has address 's.example'" in m for m in messages)
    assert any("[Networking&Shared Tunnel] VpnStrategy='7' differs" in m for m in messages)
    cms = IniFile.load(top / "build" / "WORLD" / "WORLD" / "WORLD.cms")
    assert cms.get("Networking&Shared Tunnel", "VpnStrategy") == "2"
    assert cms.get("opencm", "Address&Shared") == "n.example"
    assert (top / "build" / "WORLD" / "WORLD" / "NORTH.pbk").read_text() == "n\n"
    inf = IniFile.load(top / "build" / "WORLD" / "WORLD" / "WORLD.inf")
    assert [e.value for e in inf.entries("Merge Profiles")] == ["NORTH", "SOUTH"]


def test_a_profile_cannot_merge_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = small_kit(tmp_path / "w", "WORLD", book="W", book_text="w\n", server="w.example")
    code, _, err = run_cli(capsys, "kit", "build", str(top_kit(tmp_path / "top", [world])))
    assert code == 2
    assert "cannot merge itself" in err
