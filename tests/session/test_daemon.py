"""The daemon as a real process: connect/status/disconnect over its socket, peer credentials,
and crash-safe teardown after ``kill -9``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from opencm.process import ProcessMark
from opencm.session.protocol import Client, ProtocolError
from tests.session.conftest import build_profile, points_of, recorded
from tests.session.daemons import DaemonProcess
from tests.session.users import request_as

ROOT = Path(__file__).parents[2]


def _link_pid(daemon: DaemonProcess) -> int:
    (journal,) = (daemon.state / "journal").glob("*.json")
    data = json.loads(journal.read_text())
    assert data["disconnect"] == "armed"
    return int(data["links"][0]["handle"]["pid"])


def test_connect_status_disconnect_through_the_daemon(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    _profile, record = build_profile(tmp_path / "profile")
    daemon.start()
    connected = daemon.cli(
        "connect", str(tmp_path / "profile" / "CONTOSO.cmp"), "--unattended", "--json"
    )
    assert connected.returncode == 0, connected.stderr
    assert json.loads(connected.stdout)["state"] == "connected"
    assert "opencm: tunnelling" in connected.stderr
    shown = daemon.cli("status", "--json")
    (session,) = json.loads(shown.stdout)["sessions"]
    assert (session["state"], session["client_ip"], session["service"]) == (
        "connected",
        "10.9.0.2",
        "Contoso VPN",
    )
    again = daemon.cli("connect", str(tmp_path / "profile" / "CONTOSO.cmp"), "--unattended")
    assert again.returncode == 3 and "already has session" in again.stderr
    cancel = daemon.cli("cancel")
    assert cancel.returncode == 3 and "nothing to cancel" in cancel.stderr
    gone = daemon.cli("disconnect", "CONTOSO")
    assert gone.returncode == 0, gone.stderr
    assert points_of(record) == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "post-connect",
        "disconnect",
    ]
    # The ended session stays visible with its outcome until it is dismissed.
    (ended,) = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
    assert (ended["state"], ended["ended"], ended["outcome"]) == (
        "disconnected",
        True,
        "disconnected",
    )
    assert ended["disconnect_reason"] == "user-disconnect"
    assert "ended: disconnected: user-disconnect" in daemon.cli("status").stdout
    assert daemon.cli("disconnect").returncode == 1  # nothing live is left to disconnect
    assert daemon.cli("dismiss").returncode == 0
    assert json.loads(daemon.cli("status", "--json").stdout) == {"sessions": []}
    log = [json.loads(line) for line in (daemon.logs / "CONTOSO.log").read_text().splitlines()]
    assert {"state", "action", "link-up", "hang-up"} <= {line["kind"] for line in log}
    assert daemon.stop() == 0


def test_bad_requests_get_clear_errors(tmp_path: Path, daemon: DaemonProcess) -> None:
    daemon.start()
    missing = daemon.cli("connect", str(tmp_path / "nope.cmp"))
    assert missing.returncode == 2 and "no such profile" in missing.stderr
    with Client(daemon.socket) as client:
        with pytest.raises(ProtocolError, match="unknown op 'explode'"):
            client.request({"op": "explode"})
        client.sock.sendall(b"not json\n")
        (answer,) = [next(client.lines())]
        assert answer["ok"] is False and "not a JSON line" in answer["error"]
    nothing = daemon.cli("disconnect")
    assert nothing.returncode == 1 and "no such session" in nothing.stderr


def test_without_a_daemon_the_cli_says_so(tmp_path: Path) -> None:
    result = DaemonProcess(tmp_path).cli("status")
    assert result.returncode == 5 and "no opencm daemon answers" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_peer_credentials_keep_users_to_their_own_sessions(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    build_profile(tmp_path / "profile")
    # The socket must be reachable for the other user (pytest's tmp folders are root-only).
    public = Path(tempfile.mkdtemp(prefix="ocmsess"))
    public.chmod(0o755)
    daemon.socket = public / "opencm.sock"
    daemon.start()
    assert daemon.cli("connect", str(tmp_path / "profile"), "--unattended").returncode == 0
    nobody = 65534
    assert request_as(nobody, daemon.socket, {"op": "status"}) == {"ok": True, "sessions": []}
    session_id = json.loads(daemon.cli("status", "--json").stdout)["sessions"][0]["session"]
    refused = request_as(nobody, daemon.socket, {"op": "disconnect", "session": session_id})
    assert refused["exit_code"] == 3 and "belongs to another user" in refused["error"]
    # The root daemon would run a user's profile actions as root: only root's, installed for
    # all users (tests/session/test_daemon_security.py has the rest of that boundary).
    build_profile(public / "user")
    theirs = request_as(
        nobody,
        daemon.socket,
        {"op": "connect", "profile": str(public / "user" / "CONTOSO.cmp"), "unattended": True},
    )
    assert theirs["exit_code"] == 3 and "installed for all users" in theirs["error"]
    assert daemon.cli("disconnect", "--session", session_id).returncode == 0
    assert daemon.stop() == 0
    shutil.rmtree(public)


def test_kill_9_while_connected_then_restart_runs_disconnect_actions_exactly_once(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    _profile, record = build_profile(tmp_path / "profile")
    daemon.start()
    assert daemon.cli("connect", str(tmp_path / "profile"), "--unattended").returncode == 0
    link_pid = _link_pid(daemon)
    link = ProcessMark.of(link_pid)
    assert link is not None and "opencm-test-link-Main" in link.cmdline
    daemon.kill9()
    assert link.still_ours(), "the link outlives its daemon"
    assert "disconnect" not in points_of(record)

    daemon.start()  # recovery runs before the socket listens
    rows = [row for row in recorded(record) if row["point"] == "disconnect"]
    assert [row["DisconnectReason"] for row in rows] == ["opencm-restarted"]
    assert rows[0]["TunnelRasEntry"] == "Main" and rows[0]["ClientIPAddress"] == "10.9.0.2"
    # The recovery logs beside the rest of that session's log, in the daemon's --log-dir.
    logged = [json.loads(line) for line in (daemon.logs / "CONTOSO.log").read_text().splitlines()]
    assert [e["recovery"] for e in logged if e.get("recovery")] == ["opencm-restarted"]
    assert len({e["session"] for e in logged}) == 1
    assert not link.still_ours()
    assert list((daemon.state / "journal").glob("*.json")) == []
    assert daemon.stop() == 0

    daemon.start()  # and again: nothing is owed any more
    assert daemon.stop() == 0
    assert points_of(record).count("disconnect") == 1


def test_stopping_the_daemon_disconnects_its_sessions_in_order(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    _profile, record = build_profile(tmp_path / "profile")
    daemon.start()
    assert daemon.cli("connect", str(tmp_path / "profile"), "--unattended").returncode == 0
    link = ProcessMark.of(_link_pid(daemon))
    assert link is not None
    assert daemon.stop() == 0
    assert [r["DisconnectReason"] for r in recorded(record) if r["point"] == "disconnect"] == [
        "daemon-stopping"
    ]
    assert not link.still_ours()


def test_cancel_through_the_daemon_while_dialing_runs_on_cancel_only(tmp_path: Path) -> None:
    _profile, record = build_profile(tmp_path / "profile")
    daemon = DaemonProcess(tmp_path, env={"OPENCM_TEST_DIAL": "hang"})
    daemon.start()
    try:
        connecting = daemon.popen_cli(
            "connect", str(tmp_path / "profile"), "--unattended", "--json"
        )
        deadline = time.monotonic() + 20
        while True:
            sessions = json.loads(daemon.cli("status", "--json").stdout)["sessions"]
            if sessions and sessions[0]["state"] == "tunnelling":
                break
            assert time.monotonic() < deadline, "never reached tunnelling"
            time.sleep(0.05)
        cancelled = daemon.cli("cancel", "CONTOSO")
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = connecting.communicate(timeout=30)
        assert connecting.returncode == 4, err
        status = json.loads(out)
        assert (status["state"], status["outcome"]) == ("cancelled", "cancelled")
        assert points_of(record) == ["pre-init", "pre-connect", "pre-tunnel", "on-cancel"]
    finally:
        assert daemon.stop() == 0


def test_status_watch_follows_the_session(tmp_path: Path, daemon: DaemonProcess) -> None:
    build_profile(tmp_path / "profile")
    daemon.start()
    watcher = daemon.popen_cli("status", "--watch", "--json")
    try:
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline()) == {"sessions": []}
        assert daemon.cli("connect", str(tmp_path / "profile"), "--unattended").returncode == 0
        states = []
        while "connected" not in states:
            (session,) = json.loads(watcher.stdout.readline())["sessions"]
            states.append(session["state"])
        assert states[0] in ("pre-init", "ready", "pre-connect")
        assert "tunnelling" in states
    finally:
        watcher.terminate()
        watcher.communicate(timeout=10)
    assert daemon.cli("disconnect").returncode == 0


def test_the_stay_online_question_is_answered_through_the_daemon(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    build_profile(
        tmp_path / "profile",
        extra_actions={"monitored": [r"0=CONTOSO\record.py monitored", "0&Flags=16"]},
    )
    daemon.start()
    with Client(daemon.socket, timeout=None) as client:
        status = client.request(
            {"op": "connect", "profile": str(tmp_path / "profile"), "unattended": False}
        )["session"]
    assert status["state"] == "connected"
    with Client(daemon.socket, timeout=30) as client:
        client.send({"op": "watch"})
        for event in client.lines():
            (session,) = event["sessions"]
            if session["prompt"]:
                break
    assert session["state"] == "prompting"
    with Client(daemon.socket) as client:
        client.request({"op": "answer", "session": session["session"], "choice": "stay-online"})
        with pytest.raises(ProtocolError, match="nothing is being asked"):
            client.request({"op": "answer", "session": session["session"], "choice": "stay-online"})
        deadline = time.monotonic() + 10
        while True:  # the session takes the answer on its own task
            (after,) = client.request({"op": "status"})["sessions"]
            if after["state"] != "prompting" or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert (after["state"], after["prompt"]) == ("connected", False)
    assert daemon.cli("disconnect").returncode == 0


@pytest.mark.anyio
async def test_a_users_own_daemon_refuses_other_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opencm.errors import RefusedError
    from opencm.session.daemon import Daemon

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    own = Daemon(tmp_path / "s.sock", tmp_path / "state")
    answers = [answer async for answer in own._handle({"op": "status"}, 1000)]
    assert answers == [{"ok": True, "sessions": []}]
    with pytest.raises(RefusedError, match="serves uid 1000 only"):
        [answer async for answer in own._handle({"op": "status"}, 1001)]


def test_kill_9_while_the_link_is_still_coming_up_then_restart_ends_its_process(
    tmp_path: Path,
) -> None:
    """The helper a dial started is journaled the moment it starts, not when the link is up."""
    build_profile(tmp_path / "profile")
    daemon = DaemonProcess(tmp_path, env={"OPENCM_TEST_DIAL": "start-then-hang"})
    daemon.start()
    try:
        connecting = daemon.popen_cli("connect", str(tmp_path / "profile"), "--unattended")
        deadline = time.monotonic() + 30
        while True:
            journals = list((daemon.state / "journal").glob("*.json"))
            starting = json.loads(journals[0].read_text()).get("starting") if journals else None
            if starting:
                break
            assert time.monotonic() < deadline, "the starting process was never journaled"
            time.sleep(0.05)
        helper = ProcessMark.of(int(starting[0]["pid"]))
        assert helper is not None and "opencm-test-link-Main" in helper.cmdline
        daemon.kill9()
        connecting.communicate(timeout=30)
        assert helper.still_ours(), "the helper outlives its daemon"
        daemon.start()  # recovery runs before the socket listens
        assert not helper.still_ours()
        assert list((daemon.state / "journal").glob("*.json")) == []
    finally:
        daemon.stop()


def test_a_client_that_never_finishes_its_line_is_closed(tmp_path: Path) -> None:
    """Half a request held open (slowloris) costs a connection for the idle bound, no longer."""
    daemon = DaemonProcess(tmp_path, extra=("--idle-timeout", "0.5"))
    daemon.start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(60)  # generous: the daemon closes it after 0.5 s
            sock.connect(str(daemon.socket))
            sock.sendall(b'{"op": "hel')
            assert sock.recv(4096) == b"", "the daemon closed the half-sent request"
        with Client(daemon.socket) as client:
            assert client.request({"op": "hello"})["ok"]
    finally:
        assert daemon.stop() == 0
