"""What the daemon tells its front ends: the per-session event stream, the logon screen after
pre-init, redials with their reasons, ended sessions with their outcome, and the prompt's answer
from the CLI. A real daemon process (with the process-holding dialer double) over its socket."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opencm.session.protocol import Client, ProtocolError
from tests.session.conftest import build_profile, points_of, recorded
from tests.session.daemons import DaemonProcess


def _events(socket: Path, session_id: str, out: list[dict[str, Any]]) -> None:
    """Follow one session's events to its end (what a front end does)."""
    with Client(socket, timeout=60) as client, contextlib.suppress(ProtocolError):
        client.send({"op": "watch", "session": session_id})
        for line in client.lines():
            out.append(line)
            if "event" not in line:
                return


def test_open_runs_pre_init_before_the_logon_screen_and_connect_takes_its_credentials(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    _profile, record = build_profile(tmp_path / "profile", opencm=["Credentials=password"])
    daemon.start()
    with Client(daemon.socket, timeout=60) as client:
        client.send({"op": "open", "profile": str(tmp_path / "profile" / "CONTOSO.cmp")})
        lines = list(_until_answer(client))
        opened = lines[-1]["session"]
        # Pre-init has run and nothing else: the session waits at the logon screen.
        assert opened["state"] == "ready"
        assert points_of(record) == ["pre-init"]
        assert [e["state"] for e in lines if e.get("event") == "state"] == ["ready"]
        (running,) = [e for e in lines if e.get("event") == "action-running"]
        assert running["point"] == "pre-init"
        assert running["text"] == f"Running Custom Action {running['description']}"
        watchers: list[list[dict[str, Any]]] = [[], []]
        threads = [
            threading.Thread(target=_events, args=(daemon.socket, opened["session"], out))
            for out in watchers
        ]
        for thread in threads:
            thread.start()
        client.send(
            {
                "op": "connect",
                "session": opened["session"],
                "credentials": {"username": "jo", "password": "secret"},
            }
        )
        connected = list(_until_answer(client))[-1]["session"]
    assert connected["state"] == "connected"
    assert [row["UserName"] for row in recorded(record)] == ["NULL", "jo", "jo", "jo"]
    assert daemon.cli("disconnect").returncode == 0
    for thread in threads:
        thread.join(30)
    first, second = watchers
    assert [e.get("seq") for e in first] == [e.get("seq") for e in second]  # any number watch
    kinds = [e.get("event") for e in first]
    assert kinds[-2:] == ["outcome", None]  # the outcome, then the answer line
    states = [e["state"] for e in first if e.get("event") == "state"]
    assert states == [
        "ready",
        "pre-connect",
        "pre-tunnel",
        "tunnelling",
        "post-connect",
        "connected",
        "disconnecting",
        "disconnected",
    ]
    # Each action: "Running Custom Action …", then its result, in the order they ran.
    actions = [
        (e["event"], e["point"]) for e in first if e.get("event") in ("action-running", "action")
    ]
    assert actions == [
        (kind, point)
        for point in ("pre-init", "pre-connect", "pre-tunnel", "post-connect", "disconnect")
        for kind in ("action-running", "action")
    ]
    links = [(e["phase"], e["entry"]) for e in first if e.get("event") == "link"]
    assert links == [("dialing", "Main"), ("up", "Main"), ("hung-up", "Main")]
    outcome = first[-2]
    assert (outcome["outcome"], outcome["disconnect_reason"]) == (
        "disconnected",
        "user-disconnect",
    )


def _until_answer(client: Client) -> Iterator[dict[str, Any]]:
    for line in client.lines():
        yield line
        if "event" not in line:
            assert line["ok"], line
            return


def test_a_front_end_that_leaves_the_logon_screen_closes_its_session(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    _profile, record = build_profile(tmp_path / "profile")
    daemon.start()
    with Client(daemon.socket, timeout=60) as client:
        opened = client.request({"op": "open", "profile": str(tmp_path / "profile")})["session"]
    # The connection that opened it went away without Connect: closed, no on-cancel actions.
    deadline = time.monotonic() + 20
    while True:
        (session,) = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
        if session["ended"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (session["session"], session["outcome"]) == (opened["session"], "closed")
    assert points_of(record) == ["pre-init"]


def test_redials_show_their_reason_and_the_ended_session_keeps_its_outcome(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path, env={"OPENCM_TEST_DIAL": "fail"})
    build_profile(tmp_path / "profile")
    cms = tmp_path / "profile" / "CONTOSO" / "CONTOSO.cms"
    cms.write_bytes(cms.read_bytes().replace(b"RedialDelay=5", b"RedialDelay=0"))
    daemon.start()
    try:
        result = daemon.cli("connect", str(tmp_path / "profile"), "--unattended")
        assert result.returncode == 1, result.stderr
        # The reason of each failed attempt, and which redial comes next.
        assert "opencm: redial 1 of 2 in 0 s: Main did not answer (test)" in result.stderr
        assert "opencm: redial 2 of 2 in 0 s: Backup did not answer (test)" in result.stderr
        assert "(error 678 from openvpn)" in result.stderr
        # The ended session stays in status, with the outcome and the error in words.
        shown = daemon.cli("status")
        assert "ended: failed: Main did not answer (test) (error 678 from openvpn)" in (
            shown.stdout
        )
        watcher = daemon.popen_cli("status", "--watch", "--json")
        try:
            assert watcher.stdout is not None
            (session,) = json.loads(watcher.stdout.readline())["sessions"]
        finally:
            watcher.terminate()
            watcher.communicate(timeout=10)
        assert (session["outcome"], session["error"]["code"]) == ("failed", 678)
        # A new connect replaces the ended session of the same profile.
        again = daemon.cli("connect", str(tmp_path / "profile"), "--unattended", "--json")
        assert again.returncode == 1
        (only,) = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
        assert only["session"] == json.loads(again.stdout)["session"]
    finally:
        assert daemon.stop() == 0


def test_the_stay_online_question_is_answered_from_the_command_line(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    build_profile(
        tmp_path / "profile",
        extra_actions={"monitored": [r"0=CONTOSO\record.py monitored", "0&Flags=16"]},
    )
    daemon.start()
    nothing = daemon.cli("answer", "stay")
    assert nothing.returncode == 1 and "no such session" in nothing.stderr
    with Client(daemon.socket, timeout=None) as client:
        status = client.request(
            {"op": "connect", "profile": str(tmp_path / "profile"), "unattended": False}
        )["session"]
    seen: list[dict[str, Any]] = []
    with Client(daemon.socket, timeout=30) as client:
        client.send({"op": "watch", "session": status["session"]})
        for event in client.lines():
            seen.append(event)
            if event.get("event") == "prompt":
                break
    assert seen[-1]["seconds"] == 30
    assert "Stay online?" in seen[-1]["text"]
    answered = daemon.cli("answer", "disconnect", "CONTOSO")
    assert answered.returncode == 0, answered.stderr
    deadline = time.monotonic() + 20
    while True:  # the session takes the answer on its own task
        (ended,) = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
        if ended["ended"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (ended["outcome"], ended["disconnect_reason"]) == (
        "disconnected",
        "monitored-apps-exited",
    )
    assert [
        r["DisconnectReason"]
        for r in recorded(tmp_path / "profile" / "record.jsonl")
        if r["point"] == "disconnect"
    ] == ["monitored-apps-exited"]


def test_the_scriptable_client_commands_run_without_click(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    """``opencm connect … --unattended`` and ``opencm status`` take the lean path (no click
    import) and behave as the click commands do; anything else still goes to click."""
    build_profile(tmp_path / "profile")
    daemon.start()
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('CLICK' if 'click' in sys.modules else 'LEAN', "
        "file=sys.stderr))\n"
        "from opencm.cli.lean import main\n"
        "main(sys.argv[1:])\n"
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", probe, *args, "--socket", str(daemon.socket)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    connected = run("connect", str(tmp_path / "profile"), "--unattended", "--json")
    assert connected.returncode == 0, connected.stderr
    assert json.loads(connected.stdout)["state"] == "connected"
    assert "opencm: tunnelling" in connected.stderr
    assert connected.stderr.rstrip().endswith("LEAN")
    shown = run("status")
    assert shown.returncode == 0 and "Contoso VPN" in shown.stdout
    assert shown.stderr.strip() == "LEAN"
    again = run("connect", str(tmp_path / "profile"), "--unattended")
    assert again.returncode == 3 and "already has session" in again.stderr
    helped = run("status", "--help")  # not the lean path's: click answers
    assert helped.returncode == 0 and "Show the sessions" in helped.stdout
    assert helped.stderr.strip() == "CLICK"
    missing = run("connect", str(tmp_path / "nope"), "--unattended")
    assert missing.returncode == 2 and "no such profile" in missing.stderr
    assert daemon.cli("disconnect").returncode == 0


def test_foreground_connect_at_a_terminal_asks_the_password_after_pre_init(
    tmp_path: Path,
) -> None:
    """``opencm connect --foreground`` at a terminal: pre-init runs first, then the logon
    prompt; the typed user name reaches the pre-connect actions."""
    import os
    import pty
    import signal

    _profile, record = build_profile(tmp_path / "profile", opencm=["Credentials=password"])
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "opencm", "connect", str(tmp_path / "profile"), "--foreground"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        start_new_session=True,
    )
    os.close(terminal)
    seen = b""

    def read_until(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while text not in seen:
            assert time.monotonic() < deadline, seen
            seen += os.read(controller, 4096)

    try:
        read_until(b"User name")
        assert points_of(record) == ["pre-init"]  # the logon prompt comes after pre-init
        os.write(controller, b"jo\n")
        read_until(b"Password")
        os.write(controller, b"s3cret\n")
        deadline = time.monotonic() + 30
        while "pre-connect" not in points_of(record):
            assert time.monotonic() < deadline, seen
            time.sleep(0.05)
        assert recorded(record)[1]["UserName"] == "jo"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        os.close(controller)


def test_an_executable_not_waited_for_is_reported_started_not_done(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    """Microsoft's "Incorporating Custom Actions": an executable runs asynchronously, so the
    front end must not say it is done when the session only started it."""
    build_profile(
        tmp_path / "profile",
        points=["pre-connect"],
        extra_actions={
            "pre-connect": ["1=CONTOSO\\record.py async", "1&Flags=16", "1&Description=Quick"]
        },
    )
    daemon.start()
    with Client(daemon.socket, timeout=60) as client:
        client.send(
            {
                "op": "connect",
                "profile": str(tmp_path / "profile" / "CONTOSO.cmp"),
                "type": "direct",
                "unattended": True,
            }
        )
        lines = list(_until_answer(client))
    texts = [e["text"] for e in lines if e.get("event") == "action"]
    assert texts == [
        f"Custom Action {_recorder_description(lines)} done",
        "Custom Action Quick started (not waited for)",
    ]
    assert daemon.cli("disconnect").returncode == 0


def _recorder_description(lines: list[dict[str, Any]]) -> str:
    (waited,) = [e for e in lines if e.get("event") == "action" and e.get("index") == 0]
    return str(waited["description"])
