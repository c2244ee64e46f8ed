"""Dial-up and double dial from a kit, through the CLI and the real daemon.

A kit made with ``opencm kit new --type double`` (modem, dialing rules, realm, phone book), the
POP chosen with ``opencm pops --choose``, then ``opencm connect``: the number the dialing rules
make from the POP reaches opencm's pty modem emulator, whose access server wants the Internet
credentials (with the realm) at its text login; OpenVPN then runs over the line with the
tunnel's own credentials. Root only (namespaces, TUN).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from opencm_lab.lab import Lab, LabError, ModemLine, NetnsPair, start_modem_emulator
from opencm_lab.lab import start_openvpn_server as start_server
from tests.openvpn_lab import OPENVPN_LAB
from tests.session.daemons import REAL, ROOT, DaemonProcess
from tests.session.foreground import ForegroundConnect

pytestmark = OPENVPN_LAB

#: Seattle (country 1, area 425) and London (44, area 20); the user dials from Redmond, 425.
PBK = "1,1,1,Seattle,425,555-0001,0,0,0,0,\r\n2,44,2,London Central,20,7946 0002,0,0,0,0,\r\n"
PBR = "2\r\nWashington\r\nLondon\r\n"
#: What the dialing rules make of London from Redmond: outside line 9, international 011.
LONDON_DIALED = "9011442079460002"

RECORDER = """#!{python}
import json, sys
with open({out!r}, "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def run_cli(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """``opencm ARGS`` as a user runs it; fails the test on another exit status."""
    result = subprocess.run(
        [sys.executable, "-m", "opencm", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        timeout=180,
        check=False,
    )
    assert result.returncode == expect, (args, result.stdout, result.stderr)
    return result


def credentials_file(path: Path, user: str, password: str) -> Path:
    path.write_text(f"username={user}\npassword={password}\n")
    path.chmod(0o600)
    return path


def make_kit(
    tmp_path: Path,
    modem: ModemLine,
    ovpn_text: str,
    *,
    kind: str,
    extra: Sequence[str] = (),
) -> tuple[Path, Path]:
    """``opencm kit new`` + ``kit build`` with the CLI; returns (the .cmp, the action record)."""
    book = tmp_path / "pb"
    book.mkdir()
    (book / "FIDDIAL.pbk").write_bytes(PBK.encode())
    (book / "FIDDIAL.pbr").write_bytes(PBR.encode())
    ovpn = tmp_path / "main.ovpn"
    ovpn.write_text(ovpn_text)
    record = tmp_path / "record.jsonl"
    recorder = tmp_path / "record.py"
    recorder.write_text(RECORDER.format(python=sys.executable, out=str(record)))
    recorder.chmod(0o755)
    macros = "%UserName% %InetUserName% %PopName% %UserPrefix% %DialRasEntry%"
    kit = tmp_path / "kit"
    vpn = ["--vpn", "Main", modem.far_ip, "openvpn", str(ovpn)] if kind == "double" else []
    run_cli(
        "kit", "new", str(kit), "--no-input", "--name", "Fidelity Dial", "--short", "FIDDIAL",
        "--type", kind, *vpn, "--dun", "Fidelity ISP",
        "--modem", str(modem.device), "--modem-carrier", "slip",
        "--modem-ip", modem.near_ip, modem.far_ip, "--modem-login", "prompt",
        "--dial-country", "1", "--dial-area-code", "425", "--outside-line", "9,",
        "--user-prefix", "ISP/", "--phonebook-dir", str(book), "--phonebook-name", "FIDDIAL",
        "--redial-count", "0",
        "--action", f'{{point="post-connect", program="{recorder}", '
        f'parameters="post {macros}", interactive=false}}',
        *extra,
    )  # fmt: skip
    built = json.loads(run_cli("kit", "build", str(kit), "--json").stdout)
    cmp = Path(built["cmp"])
    return cmp, record


def set_netns(cmp: Path, netns: str) -> None:
    """The administrator's advanced customization: the client runs in the test's namespace."""
    cms = cmp.parent / "FIDDIAL" / "FIDDIAL.cms"
    run_cli("profile", "set", str(cms), "opencm", "Netns", netns)


def recorded(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_double_dial_kit_dials_the_chosen_pop_with_dialing_rules_and_separate_credentials(
    tmp_path: Path,
) -> None:
    with Lab() as lab:
        server_ns, client_ns = lab.netns("s"), lab.netns("c")
        try:
            modem = start_modem_emulator(
                lab,
                {LONDON_DIALED: "CONNECT 28800"},
                far_ns=server_ns,
                login=("ISP/lineuser", "linepass"),
            )
            pair = NetnsPair(server_ns, client_ns, modem.far_ip, modem.near_ip, "", "")
            server = start_server(
                lab, pair, lab.pki(), listen_ip="0.0.0.0", users={"alice": "vpnpass"}
            )
        except LabError as error:
            pytest.skip(f"the modem/OpenVPN lab cannot run here: {error}")
        text = server.client_config_text.replace("remote 0.0.0.0 ", f"remote {modem.far_ip} ")
        cmp, record = make_kit(tmp_path, modem, text, kind="double")
        set_netns(cmp, client_ns)
        # The user picks London; it is saved in their .cmp (with the kit's dialing rules).
        chosen = json.loads(
            run_cli("pops", str(cmp), "--choose", "--country", "44", "--json").stdout
        )
        assert chosen["saved_in"] == str(cmp)
        assert chosen["dial_order"] == ["9," + LONDON_DIALED[1:]]
        vpn_creds = credentials_file(tmp_path / "vpn.cred", "alice", "vpnpass")
        line_creds = credentials_file(tmp_path / "line.cred", "lineuser", "linepass")
        daemon = DaemonProcess(tmp_path, REAL)
        daemon.start()
        try:
            result = daemon.cli(
                "connect", str(cmp), "--type", "double", "--unattended", "--json",
                "--credentials", str(vpn_creds), "--inet-credentials", str(line_creds),
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            status = json.loads(result.stdout)
            assert [link["stage"] for link in status["links"]] == ["dial", "tunnel"]
            lab.ping(client_ns, server.tunnel_ip)
            assert daemon.cli("disconnect").returncode == 0
        finally:
            daemon.stop()
        events = modem.events()
    assert f"dial {LONDON_DIALED} (call 1) -> CONNECT 28800" in events, events
    # The access server saw the Internet user with the realm; OpenVPN let alice in.
    assert "login ISP/lineuser accepted" in events, events
    assert recorded(record) == [
        ["post", "alice", "lineuser", "London Central", "ISP/", "Fidelity ISP"]
    ]


def test_wrong_internet_credentials_fail_at_the_access_server(tmp_path: Path) -> None:
    with Lab() as lab:
        server_ns, client_ns = lab.netns("s"), lab.netns("c")
        modem = start_modem_emulator(
            lab, {"95550001": "CONNECT 28800"}, far_ns=server_ns, login=("ISP/x", "right")
        )
        cmp, _ = make_kit(tmp_path, modem, "", kind="dialup")
        set_netns(cmp, client_ns)
        # Dialing rules: Seattle is a local call from area 425 (outside line only).
        creds = credentials_file(tmp_path / "c.cred", "x", "wrong")
        result = run_cli(
            "connect", str(cmp), "--foreground", "--unattended", "--json",
            "--credentials", str(creds), expect=1,
        )  # fmt: skip
        status = json.loads(result.stdout)
        assert status["error"]["code"] == 691, status
        events = modem.events()
    assert "dial 95550001 (call 1)" in events, events
    assert "login ISP/x refused" in events


def test_a_pre_dial_action_changes_the_number_dialed(tmp_path: Path) -> None:
    """Microsoft's "Custom Actions": pre-dial actions "might include a program to change the
    telephone number". Here it is opencm's own CLI writing the user's .cmp (``%Profile%``);
    the session reads the number after the pre-dial actions have run."""
    change = (
        f'{{point="pre-dial", program="{sys.executable}", interactive=false, wait=60, '
        'parameters="-m opencm profile set %Profile% opencm PhoneNumber 555-7777"}'
    )
    with Lab() as lab:
        server_ns, client_ns = lab.netns("s"), lab.netns("c")
        modem = start_modem_emulator(
            lab, {"5557777": "CONNECT 28800"}, far_ns=server_ns, login=("ISP/x", "pw")
        )
        cmp, record = make_kit(tmp_path, modem, "", kind="dialup", extra=["--action", change])
        set_netns(cmp, client_ns)
        creds = credentials_file(tmp_path / "c.cred", "x", "pw")
        run = ForegroundConnect(str(cmp), "--unattended", "--credentials", str(creds))
        try:
            run.wait_connected()
            run.process.send_signal(signal.SIGTERM)  # the user's disconnect
            status = run.finish()
        finally:
            run.close()
        events = modem.events()
    assert status["outcome"] == "disconnected", run.stderr
    assert "dial 5557777 (call 1) -> CONNECT 28800" in events, events
    assert "dial 95550001" not in events  # the POP's number was never dialed
    assert recorded(record)[0][-3:] == ["NULL", "ISP/", "Fidelity ISP"]  # no POP behind it
