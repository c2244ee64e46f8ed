"""Reading a session's settings from the profile, credentials files, the TTY prompt, the unit."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opencm.errors import InputError, RefusedError
from opencm.links.api import Credentials, DialEntry
from opencm.profile.model import ConnectionType, ServiceProfile, load_profile
from opencm.session.config import session_config
from opencm.session.credentials import read_credentials_file
from opencm.session.prompt import Choice, TtyPrompt
from tests.session.conftest import build_profile, points_of, recorded

ROOT = Path(__file__).parents[2]


def test_servers_links_and_modem_become_dial_entries(tmp_path: Path) -> None:
    profile, _ = build_profile(
        tmp_path,
        opencm=["Netns=ocmtest1", "ModemLocalIP=10.64.0.2", "ModemPeerIP=10.64.0.1"],
        cm=["AutoReconnect=1"],
    )
    config = session_config(profile)
    assert config.supported_types == (ConnectionType.DIRECT, ConnectionType.DOUBLE)
    assert config.default_type is ConnectionType.DIRECT
    assert (config.redial_count, config.redial_delay, config.auto_reconnect) == (2, 5.0, True)
    assert (config.dun, config.tunnel_dun) == ("Contoso Dial", "CONTOSO Tunnel")
    assert config.tunnel_entries == (
        DialEntry(
            "Main",
            "openvpn",
            {
                "config": str(tmp_path / "CONTOSO" / "main.ovpn"),
                "netns": "ocmtest1",
            },
        ),
        DialEntry(
            "Backup",
            "openvpn",
            {
                "config": str(tmp_path / "CONTOSO" / "backup.ovpn"),
                "netns": "ocmtest1",
            },
        ),
    )
    assert config.dial_entries == (
        DialEntry(
            "Contoso Dial",
            "modem",
            {
                "device": "/dev/ttyS9",
                "init": "AT&F",
                "baud": "115200",
                "numbers": "5550100;5550101",
                "local_ip": "10.64.0.2",
                "peer_ip": "10.64.0.1",
                "dial_mode": "tone",
                "netns": "ocmtest1",
            },
        ),
    )
    assert [e.name for e in config.entries_for("tunnel", "Backup")] == ["Backup", "Main"]
    assert config.addresses == {"Main": "main.contoso.test", "Backup": "backup.contoso.test"}


def test_defaults_follow_cmak(tmp_path: Path) -> None:
    profile, _ = build_profile(tmp_path, cm=[], servers=("Only",), modem=False)
    text = (
        profile.cms_path.read_text().replace("RedialCount=2\n", "").replace("RedialDelay=5\n", "")
    )
    profile.cms_path.write_text(text)
    config = session_config(_reload(profile))
    assert (config.redial_count, config.redial_delay, config.auto_reconnect) == (3, 5.0, False)
    assert config.dial_entries == ()
    with pytest.raises(InputError, match=r"\[opencm\] ModemDevice: dial-up needs a modem"):
        config.check_type(ConnectionType.DOUBLE)


def test_a_modem_left_to_the_user_is_needed_only_to_dial(tmp_path: Path) -> None:
    profile, _ = build_profile(tmp_path)
    profile.cms_path.write_text(
        profile.cms_path.read_text().replace("ModemDevice=/dev/ttyS9", "ModemDevice=ask")
    )
    config = session_config(_reload(profile))
    config.check_type(ConnectionType.DIRECT)  # a VPN over the LAN needs no modem
    assert config.dial_entries == ()
    with pytest.raises(InputError, match=r"ModemDevice: the profile leaves ModemDevice to you"):
        config.check_type(ConnectionType.DOUBLE)


def _reload(profile: ServiceProfile) -> ServiceProfile:
    assert profile.cmp_path is not None
    return load_profile(profile.cmp_path)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["Link&Main=pptp"], r"Link&Main: expected one of openvpn, wireguard, networkmanager"),
        (["ModemBaud=-3"], r"\[opencm\] ModemBaud: expected an integer >= 1, got -3"),
    ],
)
def test_bad_keys_name_the_file_line_and_key(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    profile, _ = build_profile(tmp_path, opencm=lines, servers=("Main",))
    # The test's key comes after the kit's in the file; put it first so it is the one read.
    text = profile.cms_path.read_bytes().replace(
        b"[opencm]\r\n", b"[opencm]\r\n" + "\r\n".join(lines).encode() + b"\r\n", 1
    )
    profile.cms_path.write_bytes(text)
    with pytest.raises(InputError, match=message) as caught:
        session_config(_reload(profile))
    assert caught.value.line is not None and str(profile.cms_path) in str(caught.value)


def test_a_credentials_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "creds"
    path.write_text("# for the boot unit\nusername=jo brown\npassword=p=a ss\n")
    path.chmod(0o644)
    with pytest.raises(RefusedError, match=r"readable by others .*chmod 600"):
        read_credentials_file(path)
    path.chmod(0o600)
    creds = read_credentials_file(path)
    assert (creds.username, creds.password, creds.domain) == ("jo brown", "p=a ss", None)
    path.write_text("user=x\n")
    with pytest.raises(InputError, match=r"creds:1: expected one of username="):
        read_credentials_file(path)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("typed", "choice"), [("s\n", Choice.STAY_ONLINE), ("x\nd\n", Choice.DISCONNECT_NOW)]
)
async def test_tty_prompt(typed: str, choice: Choice) -> None:
    out = io.StringIO()
    assert await TtyPrompt(io.StringIO(typed), out).ask("Contoso VPN", 30) is choice
    assert "[s] Stay online  [d] Disconnect now  (disconnects in 30 s)" in out.getvalue()


def test_foreground_connect_with_a_bad_entry_fails_cleanly_and_runs_on_error(
    tmp_path: Path,
) -> None:
    missing_ns = f"ocmsessnone{os.getpid()}"
    _, record = build_profile(
        tmp_path, opencm=[f"LogDir={tmp_path / 'logs'}", f"Netns={missing_ns}"]
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "opencm",
            "connect",
            str(tmp_path / "CONTOSO.cmp"),
            "--foreground",
            "--unattended",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    status = json.loads(result.stdout)
    # The real OpenVPN dialer refuses the entry: RAS's ERROR_INVALID_PARAMETER, not retried.
    assert status["outcome"] == "failed" and status["error"]["code"] == 87
    assert status["error"]["source"] == "openvpn"
    assert "Traceback" not in result.stderr
    assert points_of(record) == ["pre-init", "pre-connect", "pre-tunnel", "on-error"]
    errors = [row for row in recorded(record) if row["point"] == "on-error"]
    assert (errors[0]["ErrorCode"], errors[0]["LastErrorSource"]) == ("87", "openvpn")
    assert (tmp_path / "logs" / "CONTOSO.log").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_daemon_unit_verifies(tmp_path: Path) -> None:
    unit = tmp_path / "opencm.service"
    text = (ROOT / "data" / "systemd" / "opencm.service").read_text()
    # verify checks that ExecStart's program exists: point it at this interpreter.
    unit.write_text(text.replace("/usr/bin/env opencm", f"{sys.executable} -m opencm"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [line for line in result.stderr.splitlines() if "opencm.service" in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_a_logon_run_runs_only_allow_listed_actions(tmp_path: Path) -> None:
    _, record = build_profile(
        tmp_path, opencm=[f"LogDir={tmp_path / 'logs'}", f"Netns=ocmsessnone{os.getpid()}"]
    )
    result = subprocess.run(
        [sys.executable, "-m", "opencm", "connect", str(tmp_path / "CONTOSO.cmp"),
         "--foreground", "--logon", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        # An allow list that does not exist: logon actions are off.
        env={**os.environ, "OPENCM_LOGON_ALLOW": str(tmp_path / "none.allow")},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert points_of(record) == []
    log = [
        json.loads(line) for line in (tmp_path / "logs" / "CONTOSO.log").read_text().splitlines()
    ]
    skipped = [line for line in log if line["kind"] == "action"]
    assert [line["point"] for line in skipped] == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "on-error",
    ]
    assert all("logon allow list" in line["skipped"] for line in skipped)


def test_credentials_come_from_the_file_the_saved_store_or_the_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opencm.cli.session_cmd import gather_credentials
    from opencm.session.credentials import credentials_for

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    profile, _ = build_profile(tmp_path / "p", opencm=["Credentials=password"])
    cmp = tmp_path / "p" / "CONTOSO.cmp"
    with pytest.raises(InputError, match=r"needs a user name and password: pass --credentials"):
        credentials_for(profile)  # nobody to ask
    secret = tmp_path / "secret"
    secret.write_text("username=jo\npassword=pw\n")
    secret.chmod(0o600)
    given = credentials_for(profile, credentials_file=secret, remember=True)
    stored = tmp_path / "config" / "opencm" / "credentials" / "CONTOSO.conf"
    assert (given.credentials.username, given.saved_in) == ("jo", str(stored))
    assert stored.stat().st_mode & 0o777 == 0o600
    # Saved: the next connect needs neither a file nor a question.
    again = credentials_for(profile, ask=lambda _d, _k: pytest.fail("asked despite saved ones"))
    assert (again.credentials.username, again.credentials.password) == ("jo", "pw")
    assert again.saved_in is None
    stored.unlink()
    asked = credentials_for(profile, ask=lambda _d, _k: Credentials(username="d", password="p"))
    assert (asked.credentials.username, asked.saved_in) == ("d", None)
    assert asked.remembered_in is not None  # the typed name is the next prompt's default
    defaults: list[Credentials] = []

    def ask(default: Credentials, _kind: str) -> Credentials:
        defaults.append(default)
        return Credentials(username="d", password="p2")

    credentials_for(profile, ask=ask)
    assert defaults[0].username == "d" and defaults[0].password is None
    # The CLI asks at the terminal, through the same policy.
    with pytest.raises(InputError, match=r"pass --credentials"):
        gather_credentials(cmp, None, interactive=False, save=False)
    monkeypatch.setattr("click.prompt", lambda text, **kw: "typed-" + text.split()[0].lower())
    typed = gather_credentials(cmp, None, interactive=True, save=False)
    assert (typed.username, typed.password) == ("typed-user", "typed-password")


def test_a_profile_that_forbids_saving_is_not_saved(tmp_path: Path) -> None:
    from opencm.session import credentials

    profile, _ = build_profile(tmp_path, cm=["HideRememberPassword=1"])
    with pytest.raises(RefusedError, match="does not allow saving"):
        credentials.save(profile, Credentials(username="a", password="b"))
    assert credentials.load_saved(profile) is None


def test_an_offered_type_and_entry_are_checked_before_anything_runs(tmp_path: Path) -> None:
    _, record = build_profile(tmp_path, tunnels=False)
    for extra, message in (
        (["--type", "direct"], "does not offer direct connections (it offers: dialup)"),
        (["--entry", "Nowhere"], "no dial entry named 'Nowhere'"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "opencm", "connect", str(tmp_path), "--foreground",
             "--unattended", *extra],
            capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "CONTOSO.cms" in result.stderr
        assert "Traceback" not in result.stderr
    assert points_of(record) == []


@pytest.mark.parametrize("field", ["username", "password", "domain"])
def test_a_line_break_in_saved_credentials_is_refused_not_injected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    from opencm.session import credentials

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(credentials, "_keyring", lambda: None)
    profile, _ = build_profile(tmp_path)
    values = {"username": "jo", "password": "pw", "domain": "CONTOSO"}
    values[field] = "jo\ndomain=EVILCORP"
    with pytest.raises(InputError, match=f"the {field} contains a line break"):
        credentials.save(profile, Credentials(**values))
    assert credentials.load_saved(profile) is None
    credentials.save(profile, Credentials(username="CONTOSO\\jo", password=" p=w "))
    saved = credentials.load_saved(profile)
    assert saved is not None and (saved.username, saved.domain) == ("CONTOSO\\jo", None)


def test_a_modem_left_to_the_user_matters_only_when_the_connection_dials(tmp_path: Path) -> None:
    """``ModemDevice=ask`` (a kit without [dialup]): direct connections work; a dialing one
    names the key to set, until the user's .cmp has it."""
    from opencm.profile.usersettings import UserSettings

    profile, _ = build_profile(tmp_path, opencm=["ModemDevice=ask"], servers=("Main",))
    text = profile.cms_path.read_bytes().replace(b"ModemDevice=/dev/ttyS9\r\n", b"")
    profile.cms_path.write_bytes(text)
    config = session_config(load_profile(profile.cmp_path))  # type: ignore[arg-type]
    config.check_type(ConnectionType.DIRECT)
    with pytest.raises(InputError, match="leaves ModemDevice to you") as error:
        config.check_type(ConnectionType.DOUBLE)
    assert error.value.field == "[opencm] ModemDevice"
    UserSettings(profile).save({"ModemDevice": "/dev/ttyUSB0"})
    config = session_config(load_profile(profile.cmp_path))  # type: ignore[arg-type]
    config.check_type(ConnectionType.DOUBLE)
    assert config.entries_for("dial")[0].settings["device"] == "/dev/ttyUSB0"
