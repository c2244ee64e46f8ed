"""A profile can name any dialer the registry allows (Microsoft's "Custom Dialers"): a built-in
or an allow-listed ``opencm.dialers`` plug-in; one off the allow list is refused before anything
runs. The plug-in is a real installed distribution (a ``.dist-info`` with its entry point on
``sys.path``), found the way ``pip install``-ed plug-ins are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencm.errors import InputError, RefusedError
from opencm.kit.spec import spec_from_mapping
from opencm.profile.model import load_profile
from opencm.session.config import session_config
from tests.plugin_dist import install_distribution
from tests.session.conftest import build_profile, points_of

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the allow list must belong to root, as on a real machine"
)

#: The plug-in: it declares what it reads from a profile; its link is up at once and it
#: records what it was given (the file named by $ACME_RECORD).
PLUGIN = """
import json, os
from opencm.links.api import LinkInfo, ProfileKeys

def _record(kind, **data):
    with open(os.environ["ACME_RECORD"], "a") as out:
        out.write(json.dumps({"kind": kind, **data}) + "\\n")

class AcmeDialer:
    name = "acme"
    profile_keys = ProfileKeys(required=("Config",))

    async def dial(self, entry, credentials, on_down):
        _record("dial", entry=entry.name, settings=dict(entry.settings))
        return LinkInfo(entry.name, interface="acme0", client_ip="10.9.0.2")

    async def dial_dialog(self, entry, credentials, on_down):
        return await self.dial(entry, credentials, on_down)

    async def hang_up(self, link):
        _record("hang-up", entry=link.entry)

    def edit_entry(self, entry):
        return entry

    def entry_deleted(self, entry):
        pass
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = install_distribution(
        tmp_path / "site",
        "acme-dialer",
        {"acme_dialer": PLUGIN},
        "[opencm.dialers]\nacme = acme_dialer:AcmeDialer\n",
    )
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("acme_dialer", None)


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The machine's /etc/opencm for this test: the allow list lives there."""
    folder = tmp_path / "etc-opencm"
    folder.mkdir(mode=0o755)
    monkeypatch.setenv("OPENCM_SYSTEM_CONFIG_DIR", str(folder))
    return folder


def allow(system: Path, text: str) -> Path:
    path = system / "dialers.allow"
    path.write_text(text)
    path.chmod(0o644)
    return path


def connect(profile_dir: Path, site: Path, record: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "ACME_RECORD": str(record)}
    return subprocess.run(
        [sys.executable, "-m", "opencm", "connect", str(profile_dir), "--foreground",
         "--unattended", "--json", "--log-dir", str(profile_dir / "logs")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip


ROOT = Path(__file__).parents[2]
MONITORED = {"monitored": [r"0=CONTOSO\record.py monitored %ServiceName%", "0&Flags=16"]}


def test_an_allow_listed_plugin_named_by_link_is_the_dialer_that_connects(
    tmp_path: Path, site: Path, system: Path
) -> None:
    allow(system, "acme   # ACME's dialer\n")
    profile, record = build_profile(
        tmp_path / "p", servers=("Main",), link="acme", extra_actions=MONITORED
    )
    (entry,) = session_config(profile).tunnel_entries
    assert entry.dialer == "acme"
    # What the plug-in declared: its Config&, as an absolute path; no Netns (not declared).
    assert dict(entry.settings) == {"config": str(profile.service_dir / "main.ovpn")}

    # Through `opencm connect`: the monitored application exits, nobody is at the screen, so
    # the session disconnects in order; the plug-in dialled and hung up.
    dialer_record = tmp_path / "acme.jsonl"
    result = connect(tmp_path / "p", site, dialer_record)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["outcome"] == "disconnected"
    assert status["entries"] == {"tunnel": "Main"}
    calls = [json.loads(line) for line in dialer_record.read_text().splitlines()]
    assert [call["kind"] for call in calls] == ["dial", "hang-up"]
    assert calls[0]["settings"] == {"config": str(profile.service_dir / "main.ovpn")}
    assert points_of(record) == [
        "pre-init", "pre-connect", "pre-tunnel", "post-connect", "monitored", "disconnect"
    ]  # fmt: skip


def test_a_plugin_off_the_allow_list_is_refused_before_anything_runs(
    tmp_path: Path, site: Path, system: Path
) -> None:
    listed = allow(system, "something-else\n")
    _, record = build_profile(tmp_path / "p", servers=("Main",), link="acme")
    dialer_record = tmp_path / "acme.jsonl"
    result = connect(tmp_path / "p", site, dialer_record)
    assert result.returncode == 3, result.stderr
    assert str(listed) in result.stderr  # the message names the allow-list file
    assert "'acme'" in result.stderr and "Link&Main" in result.stderr
    assert "Traceback" not in result.stderr
    assert points_of(record) == [] and not dialer_record.exists()
    # No allow list at all: refused the same way.
    listed.unlink()
    result = connect(tmp_path / "p", site, dialer_record)
    assert result.returncode == 3 and str(listed) in result.stderr


def test_link_names_come_from_the_registry(tmp_path: Path, site: Path, system: Path) -> None:
    allow(system, "acme\n")
    profile, _ = build_profile(tmp_path / "p", servers=("Main",), link="modem")
    with pytest.raises(InputError, match="Link&Main") as caught:
        session_config(profile)
    # The modem is the dial-up link, never a tunnel; the allowed plug-in is on offer.
    offered = str(caught.value).split("expected one of ", 1)[1]
    assert offered.startswith("openvpn, wireguard, networkmanager, ikev2")
    assert offered.endswith(", acme, got 'modem'")
    assert "modem," not in offered
    assert caught.value.line is not None
    # A key the link's dialer does not read is the profile's error, naming the key.
    cms = profile.cms_path
    cms.write_bytes(cms.read_bytes().replace(b"Link&Main=modem", b"Link&Main=networkmanager"))
    with pytest.raises(InputError, match=r"Config&Main: the networkmanager link does not read"):
        session_config(load_profile(tmp_path / "p" / "CONTOSO.cmp"))


def test_the_kit_spec_takes_its_link_names_from_the_registry_too(site: Path, system: Path) -> None:
    def spec(link: str) -> dict[str, object]:
        return {
            "service": {"name": "Acme VPN", "short": "ACME"},
            "vpn": [{"name": "Main", "address": "vpn.acme.test", "link": link,
                     "config": "main.conf"}],
        }  # fmt: skip

    with pytest.raises(RefusedError, match="not on the administrator's allow list") as refused:
        spec_from_mapping(spec("acme"))
    assert refused.value.path == system / "dialers.allow"
    assert "vpn[0].link" in str(refused.value)
    allow(system, "acme\n")
    assert spec_from_mapping(spec("acme")).vpn[0].link == "acme"
    assert spec_from_mapping(spec("ikev2")).vpn[0].link == "ikev2"  # every built-in tunnel
    with pytest.raises(InputError, match=r"vpn\[0\]\.link: expected one of .*acme, got 'pptp'"):
        spec_from_mapping(spec("pptp"))


def test_a_crashed_session_of_a_plugin_no_longer_allowed_still_gets_its_disconnect_actions(
    tmp_path: Path, site: Path, system: Path
) -> None:
    """The administrator took the plug-in off the allow list while a session using it was up,
    and the daemon died: the restarted daemon's recovery still runs the disconnect actions (it
    needs the profile's log folder, not its dialers)."""
    import anyio

    from opencm.session.factory import run_journaled_disconnect
    from opencm.session.journal import Journal, recover

    profile, record = build_profile(
        tmp_path / "p", servers=("Main",), link="acme", opencm=[f"LogDir={tmp_path / 'logs'}"]
    )
    journal = Journal(tmp_path / "state" / "journal")
    entry = journal.open(
        "s1",
        profile=str(profile.cmp_path),
        connection_type=1,
        interactive=False,
        owner_uid=0,
        macros={"TunnelRasEntry": "Main"},
    )
    entry.arm({"TunnelRasEntry": "Main"})  # it was connected
    assert not (system / "dialers.allow").exists()  # acme is not allowed now

    reports = anyio.run(recover, journal, "opencm-restarted", run_journaled_disconnect)
    assert [(r.ran_disconnect, r.note) for r in reports] == [(True, "disconnect actions ran")]
    assert points_of(record) == ["disconnect"]
    assert (tmp_path / "logs" / "CONTOSO.log").exists()
