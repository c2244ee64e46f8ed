"""Dialer discovery, the root-owned allow list, and the five-entry-point rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencm.errors import InputError, RefusedError
from opencm.links import registry
from opencm.links.openvpn import OpenVPNDialer
from tests.plugin_dist import install_distribution

COMPLETE = """
class GoodDialer:
    name = "acme"
    async def dial(self, entry, credentials, on_down): ...
    async def dial_dialog(self, entry, credentials, on_down): ...
    async def hang_up(self, link): ...
    def edit_entry(self, entry): return entry
    def entry_deleted(self, entry): ...

class HalfDialer:
    name = "half"
    async def dial(self, entry, credentials, on_down): ...
    async def hang_up(self, link): ...
    def edit_entry(self, entry): return entry
"""


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real installed distribution (dist-info on sys.path) registering two plug-in dialers."""
    site = install_distribution(
        tmp_path / "site",
        "acme-dialers",
        {"acme_dialers": COMPLETE},
        "[opencm.dialers]\nacme = acme_dialers:GoodDialer\nhalf = acme_dialers:HalfDialer\n"
        "openvpn = acme_dialers:GoodDialer\n",
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("acme_dialers", None)


def allow_list(directory: Path, text: str, mode: int = 0o644) -> Path:
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / "dialers.allow"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_builtins_are_discovered_and_always_allowed(tmp_path: Path) -> None:
    infos = {info.name: info for info in registry.discover()}
    assert infos["openvpn"].builtin
    assert infos["openvpn"].target == "opencm.links.openvpn:OpenVPNDialer"
    # No allow list at all: built-ins still load.
    dialer = registry.load_dialer("openvpn", allow_list=tmp_path / "absent")
    assert isinstance(dialer, OpenVPNDialer)


def test_the_registry_is_the_one_list_of_builtins() -> None:
    # Built-ins load from BUILTIN_DIALERS without a metadata scan; opencm registers no entry
    # points for them (a second list that could drift).
    from importlib import metadata

    ours = [
        ep for ep in metadata.entry_points(group=registry.GROUP) if ep.value.startswith("opencm.")
    ]
    assert ours == []
    discovered = {info.name: info.target for info in registry.discover() if info.builtin}
    assert discovered == registry.BUILTIN_DIALERS


def test_plugin_cannot_shadow_a_builtin(plugins: Path, tmp_path: Path) -> None:
    infos = {info.name: info for info in registry.discover()}
    assert infos["openvpn"].builtin
    assert isinstance(
        registry.load_dialer("openvpn", allow_list=tmp_path / "absent"), OpenVPNDialer
    )


def test_plugin_off_the_allow_list_is_refused(plugins: Path, tmp_path: Path) -> None:
    with pytest.raises(RefusedError, match="not on the administrator's allow list") as refused:
        registry.load_dialer("acme", allow_list=tmp_path / "absent")
    assert "acme_dialers:GoodDialer" in str(refused.value)
    listed = allow_list(tmp_path / "etc", "# plug-ins\nsomething-else\n")
    with pytest.raises(RefusedError, match="'acme'"):
        registry.load_dialer("acme", allow_list=listed)


def test_plugin_on_the_allow_list_loads(plugins: Path, tmp_path: Path) -> None:
    listed = allow_list(tmp_path / "etc", "acme   # ACME's dialer\n")
    dialer = registry.load_dialer("acme", allow_list=listed)
    assert dialer.name == "acme"
    pinned = allow_list(tmp_path / "etc", "acme acme_dialers:GoodDialer\n")
    assert registry.load_dialer("acme", allow_list=pinned).name == "acme"


def test_pinned_target_must_match(plugins: Path, tmp_path: Path) -> None:
    pinned = allow_list(tmp_path / "etc", "\nacme other_pkg:Dialer\n")
    with pytest.raises(RefusedError, match="pins it to other_pkg:Dialer") as refused:
        registry.load_dialer("acme", allow_list=pinned)
    assert refused.value.line == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own the allow list as root")
def test_unsafe_allow_list_is_refused(plugins: Path, tmp_path: Path) -> None:
    writable = allow_list(tmp_path / "etc", "acme\n", mode=0o666)
    with pytest.raises(RefusedError, match="not be writable by group or others"):
        registry.load_dialer("acme", allow_list=writable)
    group = allow_list(tmp_path / "etc2", "acme\n", mode=0o664)
    with pytest.raises(RefusedError, match="mode 0664"):
        registry.load_dialer("acme", allow_list=group)
    owned = allow_list(tmp_path / "etc3", "acme\n")
    os.chown(owned, 65534, 65534)
    with pytest.raises(RefusedError, match="owned by root"):
        registry.load_dialer("acme", allow_list=owned)
    folder = allow_list(tmp_path / "etc4", "acme\n")
    folder.parent.chmod(0o777)
    with pytest.raises(RefusedError, match="folder of the dialer allow list"):
        registry.load_dialer("acme", allow_list=folder)
    link = tmp_path / "etc5"
    link.mkdir()
    (link / "dialers.allow").symlink_to(allow_list(tmp_path / "etc6", "acme\n"))
    with pytest.raises(RefusedError, match="not a link"):
        registry.load_dialer("acme", allow_list=link / "dialers.allow")


def test_malformed_allow_list_names_the_line(plugins: Path, tmp_path: Path) -> None:
    bad = allow_list(tmp_path / "etc", "acme\nacme too many words\n")
    with pytest.raises(InputError) as error:
        registry.load_dialer("acme", allow_list=bad)
    assert error.value.line == 2 and error.value.path == bad


def test_plugin_lacking_entry_points_is_rejected(plugins: Path, tmp_path: Path) -> None:
    listed = allow_list(tmp_path / "etc", "half\n")
    with pytest.raises(InputError, match="lacks the entry point") as error:
        registry.load_dialer("half", allow_list=listed)
    assert "dial_dialog, entry_deleted;" in str(error.value)


def test_unknown_dialer_lists_the_installed_ones(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no dialer named 'nope'.*openvpn"):
        registry.load_dialer("nope", allow_list=tmp_path / "absent")


def run_cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "opencm", "dialers", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_cli_list_and_check(plugins: Path, tmp_path: Path) -> None:
    listed = allow_list(tmp_path / "etc", "acme\nhalf\n")
    result = run_cli(plugins, "list", "--json", "--allow-list", str(listed))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["dialers"]}
    for name in ("openvpn", "wireguard", "modem", "networkmanager"):
        assert rows[name]["builtin"] and rows[name]["allowed"], name
    assert rows["acme"]["allowed"] and not rows["acme"]["builtin"]
    assert rows["acme"]["distribution"] == "acme-dialers"

    absent = str(tmp_path / "absent")
    text = run_cli(plugins, "list", "--allow-list", absent)
    assert "REFUSED" in text.stdout and "acme" in text.stdout

    ok = run_cli(plugins, "check", "acme", "--allow-list", str(listed))
    assert ok.returncode == 0 and "all five entry points" in ok.stdout
    refused = run_cli(plugins, "check", "acme", "--allow-list", absent)
    assert refused.returncode == 3
    assert "not on the administrator's allow list" in refused.stderr
    assert "Traceback" not in refused.stderr
    incomplete = run_cli(plugins, "check", "half", "--allow-list", str(listed))
    assert incomplete.returncode == 2
    assert "lacks the entry point(s) dial_dialog, entry_deleted" in incomplete.stderr
    builtin = run_cli(plugins, "check", "openvpn", "--json", "--allow-list", absent)
    assert json.loads(builtin.stdout) == {
        "name": "openvpn",
        "loaded": True,
        "class": "OpenVPNDialer",
    }


def test_plugin_that_fails_to_import_is_a_clear_error(
    plugins: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(
        plugins,
        "broken-dialer",
        {"broken_dialer": "raise RuntimeError('missing libfoo')\n"},
        "[opencm.dialers]\nbroken = broken_dialer:Dialer\n",
    )
    listed = allow_list(tmp_path / "etc", "broken\n")
    with pytest.raises(InputError, match=r"'broken'.*failed to load.*missing libfoo"):
        registry.load_dialer("broken", allow_list=listed)
    sys.modules.pop("broken_dialer", None)


def test_each_dialer_declares_what_it_reads_from_a_profile(plugins: Path, tmp_path: Path) -> None:
    from opencm.links.api import DEFAULT_PROFILE_KEYS, Stage

    absent = tmp_path / "absent"
    # Every built-in but the modem (a dial-up link), in the table's order; acme and half are
    # not allowed (and are not imported).
    builtin_tunnels = [name for name in registry.BUILTIN_DIALERS if name != "modem"]
    assert registry.link_names(allow_list=absent) == builtin_tunnels
    assert builtin_tunnels[:4] == ["openvpn", "wireguard", "networkmanager", "ikev2"]
    statuses = {status.info.name: status for status in registry.survey(allow_list=absent)}
    assert statuses["openvpn"].allowed and statuses["openvpn"].profile_keys is not None
    assert not statuses["acme"].allowed and statuses["acme"].profile_keys is None
    assert "acme_dialers" not in sys.modules
    assert registry.tunnel_link("openvpn", allow_list=absent).required == ("Config",)
    assert registry.tunnel_link("networkmanager", allow_list=absent).required == ("Connection",)
    modem = registry.profile_keys(registry.resolve("modem", allow_list=absent))
    assert modem.stage is Stage.DIAL
    with pytest.raises(InputError, match=r"expected one of openvpn, .*, got 'modem'"):
        registry.tunnel_link("modem", allow_list=absent)
    with pytest.raises(RefusedError, match="not on the administrator's allow list"):
        registry.tunnel_link("acme", allow_list=absent)
    listed = allow_list(tmp_path / "etc", "acme\n")
    # A plug-in that declares nothing may read both per-server keys.
    assert registry.tunnel_link("acme", allow_list=listed) == DEFAULT_PROFILE_KEYS
    assert registry.link_names(allow_list=listed)[-1] == "acme"
