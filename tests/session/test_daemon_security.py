"""The root daemon against an unprivileged local user (issue 12, §1 and §2).

Every test talks to a real daemon process over its socket, as ``nobody`` (peer credentials
decide), and checks that the user cannot get their own code run as root, cannot make root read
or write what they choose, and cannot crash or freeze the daemon for everyone else.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opencm.session.protocol import MAX_LINE, Client
from tests.session.conftest import build_profile, points_of
from tests.session.daemons import ROOT, DaemonProcess
from tests.session.users import NOBODY, public_folder, request, request_as, run_as

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")

IN_CLOSE_NOWRITE = 0x10


class Machine:
    """A public folder with an all-users profile folder, a home for ``nobody`` and a daemon."""

    def __init__(self, base: Path, **daemon_options: Any) -> None:
        self.base = base
        self.allusers = base / "etc" / "Cm"
        self.allusers.mkdir(parents=True)
        (base / "etc").chmod(0o755)
        self.allusers.chmod(0o755)
        self.home = base / "home"
        self.home.mkdir()
        os.chown(self.home, NOBODY, NOBODY)
        self.dialed = base / "dialed.jsonl"
        self.daemon = DaemonProcess(
            base,
            env={
                "OPENCM_SYSTEM_CONFIG_DIR": str(base / "etc"),
                "OPENCM_TEST_DIAL_RECORD": str(self.dialed),
            },
            **daemon_options,
        )

    def install_for_all_users(self) -> Path:
        """CONTOSO for all users, root-owned, readable by all; returns its record file."""
        _profile, record = build_profile(self.allusers)
        for path in [self.allusers, *self.allusers.rglob("*")]:
            path.chmod(0o755 if path.is_dir() or path.name == "record.py" else 0o644)
        record.touch()
        record.chmod(0o600)
        return record

    def as_nobody(self, message: dict[str, Any]) -> dict[str, Any]:
        return request_as(NOBODY, self.daemon.socket, message)

    def dial_settings(self) -> list[dict[str, str]]:
        if not self.dialed.exists():
            return []
        return [json.loads(line) for line in self.dialed.read_text().splitlines()]


@pytest.fixture
def machine() -> Iterator[Machine]:
    base = public_folder("ocmsec")
    made = Machine(base)
    yield made
    process = made.daemon.process
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)
    shutil.rmtree(base)


def _user_copy(machine: Machine) -> Path:
    """The same profile in nobody's home, its actions recording into nobody's folder."""
    mine = machine.home / "mine"
    run_as(NOBODY, build_profile, mine)
    return mine / "record.jsonl"


# -- §1: a user's programs never run as root -------------------------------------------------


def _swap_after_first_read(
    socket_path: str, home: str, allusers: str, watched: str, rounds: int
) -> list[dict[str, Any]]:
    """As the attacker: connect ~/link/CONTOSO.cmp with ~/link → the all-users folder, and the
    moment the daemon has read the all-users .cms (its check), point ~/link at our own copy."""
    libc = ctypes.CDLL(None, use_errno=True)
    inotify = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    assert libc.inotify_add_watch(inotify, watched.encode(), IN_CLOSE_NOWRITE) >= 0
    link, staging = os.path.join(home, "link"), os.path.join(home, "link.new")
    answers = []
    for _ in range(rounds):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(allusers, link)
        with Client(Path(socket_path), timeout=30) as client:
            client.send(
                {
                    "op": "connect",
                    "profile": os.path.join(link, "CONTOSO.cmp"),
                    "unattended": True,
                    "wait": False,
                }
            )
            if select.select([inotify], [], [], 10)[0]:
                os.symlink(os.path.join(home, "mine"), staging)
                os.replace(staging, link)
                while True:
                    try:
                        os.read(inotify, 4096)
                    except BlockingIOError:
                        break
            answer = next(line for line in client.lines() if "ok" in line)
        answers.append(answer)
        if answer.get("ok"):
            with Client(Path(socket_path), timeout=30) as client:
                client.request({"op": "disconnect", "session": answer["session"]["session"]})
    return answers


def test_a_link_swapped_after_the_check_never_runs_the_users_program_as_root(
    machine: Machine,
) -> None:
    allusers_record = machine.install_for_all_users()
    users_record = _user_copy(machine)
    machine.daemon.start()
    answers = run_as(
        NOBODY,
        _swap_after_first_read,
        str(machine.daemon.socket),
        str(machine.home),
        str(machine.allusers),
        str(machine.allusers / "CONTOSO" / "CONTOSO.cms"),
        8,
    )
    assert isinstance(answers, list), answers
    assert not users_record.exists(), "the user's own record.py ran as root"
    connected = [answer for answer in answers if answer.get("ok")]
    assert connected, answers
    # Every session ran the administrator's actions, from the daemon's private copy.
    assert points_of(allusers_record).count("pre-init") == len(connected)
    for settings in machine.dial_settings():
        assert not settings["config"].startswith(str(machine.home)), settings
        assert settings["config"].startswith(str(machine.daemon.state / "profiles"))
    for answer in connected:
        assert answer["session"]["profile"] == str(machine.allusers / "CONTOSO.cmp")
    assert machine.daemon.stop() == 0
    assert not (machine.daemon.state / "profiles").exists() or not any(
        (machine.daemon.state / "profiles").iterdir()
    ), "the private copies are removed when their sessions end"


def test_a_private_key_the_user_cannot_read_still_serves_their_session(machine: Machine) -> None:
    """Key files stay 0600 root (issue 12 §3): the daemon uses them for the user, unread by
    them, from its private copy, still 0600."""
    machine.install_for_all_users()
    key = machine.allusers / "CONTOSO" / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    (machine.allusers / "CONTOSO" / "keys").mkdir(mode=0o700)
    machine.daemon.start()
    answer = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    assert answer["ok"], answer
    (copy,) = (machine.daemon.state / "profiles").glob("*/CONTOSO/client.key")
    assert copy.stat().st_mode & 0o777 == 0o600
    assert machine.as_nobody({"op": "disconnect", "session": answer["session"]["session"]})["ok"]
    assert machine.daemon.stop() == 0


def test_a_failed_session_names_the_installed_profile_not_the_daemons_copy(
    machine: Machine,
) -> None:
    _profile, _record = build_profile(
        machine.allusers, extra_actions={"pre-connect": [r"1=CONTOSO\missing.sh", "1&Flags=0x30"]}
    )
    for path in [machine.allusers, *machine.allusers.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.name == "record.py" else 0o644)
    machine.daemon.start()
    answer = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    message = answer["session"]["error"]["message"]
    assert "missing.sh" in message and str(machine.allusers / "CONTOSO") in message, message
    assert str(machine.daemon.state) not in message
    assert machine.daemon.stop() == 0


def test_only_root_owned_profiles_under_the_all_users_folder_are_connected_for_a_user(
    machine: Machine,
) -> None:
    machine.install_for_all_users()
    _user_copy(machine)
    machine.daemon.start()
    theirs = machine.as_nobody(
        {"op": "connect", "profile": str(machine.home / "mine" / "CONTOSO.cmp")}
    )
    assert theirs["exit_code"] == 3 and "installed for all users" in theirs["error"]
    # A folder inside the all-users profile that the user can write to.
    (machine.allusers / "CONTOSO").chmod(0o777)
    writable = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    assert writable["exit_code"] == 3 and "writable by others" in writable["error"]
    (machine.allusers / "CONTOSO").chmod(0o755)
    # A link inside the profile pointing out of it.
    os.symlink(machine.home / "mine" / "CONTOSO" / "record.py", machine.allusers / "CONTOSO" / "x")
    linked = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    assert linked["exit_code"] == 3 and "is a symbolic link" in linked["error"]
    (machine.allusers / "CONTOSO" / "x").unlink()
    # A .cms the user owns.
    os.chown(machine.allusers / "CONTOSO" / "CONTOSO.cms", NOBODY, NOBODY)
    owned = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    assert owned["exit_code"] == 3 and "belongs to uid 65534, not root" in owned["error"]
    assert machine.daemon.stop() == 0


def test_errors_never_quote_a_file_the_user_cannot_read(machine: Machine) -> None:
    secret = machine.base / "roothome"
    secret.mkdir(mode=0o700)
    (secret / "A.cmp").write_text("[Connection Manager]\nCMSFile=TOPSECRET-VALUE\n")
    (secret / "link").symlink_to(machine.allusers)
    machine.daemon.start()
    there = machine.as_nobody({"op": "connect", "profile": str(secret / "A.cmp")})
    absent = machine.as_nobody({"op": "connect", "profile": str(secret / "B.cmp")})
    through = machine.as_nobody({"op": "connect", "profile": str(secret / "link" / "X.cmp")})
    for answer in (there, absent, through):
        assert answer["ok"] is False and "TOPSECRET" not in answer["error"], answer
        assert "that uid 65534 can reach" in answer["error"]
    # The same answer whether the file exists or not: nothing learnt about a closed folder.
    assert there["error"].replace("A.cmp", "?") == absent["error"].replace("B.cmp", "?")
    assert machine.daemon.stop() == 0


def test_the_root_daemon_never_writes_its_log_through_a_users_link(machine: Machine) -> None:
    """Started without --log-dir, the daemon logs in its state folder, not $TMPDIR."""
    machine.install_for_all_users()
    tmp = machine.base / "tmp"
    tmp.mkdir(mode=0o1777)
    tmp.chmod(0o1777)
    victim = machine.base / "victim"
    victim.mkdir()
    run_as(NOBODY, os.symlink, str(victim), str(tmp / "opencm-root"))
    machine.daemon = DaemonProcess(
        machine.base,
        env={**(machine.daemon.env or {}), "TMPDIR": str(tmp)},
        log_dir=False,
    )
    machine.daemon.start()
    answer = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    assert answer["ok"], answer
    assert list(victim.iterdir()) == []
    assert (machine.daemon.state / "logs" / "CONTOSO.log").exists()
    assert machine.daemon.stop() == 0
    # --foreground as root, default log folder: refused, nothing written through the link.
    foreground = subprocess.run(
        [
            *(sys.executable, "-m", "opencm", "connect", "--foreground", "--unattended"),
            str(machine.allusers / "CONTOSO.cmp"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdin=subprocess.DEVNULL,
    )
    assert foreground.returncode == 2, foreground.stderr
    assert "opencm-root" in foreground.stderr and "Traceback" not in foreground.stderr
    assert list(victim.iterdir()) == []


# -- §2: one request never crashes or freezes the daemon ---------------------------------------


def _raw_lines(socket_path: str, payloads: list[str], close_early: bool) -> list[Any]:
    """Send each payload on its own connection; collect the answers (or close at once)."""
    answers: list[Any] = []
    for payload in payloads:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(socket_path)
            sock.sendall(payload.encode("utf-8", "surrogatepass"))
            if close_early:
                continue
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers.append(json.loads(data.splitlines()[-1]) if data else None)
    return answers


HOSTILE = [
    "[" * 60000 + "\n",
    '{"op": "connect", "profile": "/x", "type": "bogus"}\n',
    '{"op": "connect", "profile": "/x", "credentials": "x"}\n',
    '{"op": "connect", "profile": 5}\n',
    '{"op": "connect"}\n',
    '{"op": "answer", "choice": 1}\n',
    '{"op": "disconnect", "wait": "yes"}\n',
    '{"op": ["status"]}\n',
    '{"op": "status", "extra": {"a": [1, 2]}}\n',
    '"just a string"\n',
    "{" * 20 + "\n",
    '{"op": "connect", "profile": "/etc/opencm/Cm/\\u0000.cmp"}\n',
    '{"op": "connect", "profile": "' + "a" * 5000 + '"}\n',
    "\xff\xfe not utf-8\n",
    "x" * (MAX_LINE + 10) + "\n",
]


def test_hostile_requests_get_error_answers_and_the_daemon_lives(machine: Machine) -> None:
    machine.daemon.start()
    answers = run_as(NOBODY, _raw_lines, str(machine.daemon.socket), HOSTILE, False)
    assert isinstance(answers, list), answers
    for payload, answer in zip(HOSTILE, answers, strict=True):
        assert answer is not None and answer["ok"] is False, (payload[:60], answer)
        assert answer["exit_code"] == 2, (payload[:60], answer)
    assert "nest deeper" in answers[0]["error"]
    assert "type must be one of" in answers[1]["error"]
    assert "credentials must be an object" in answers[2]["error"]
    # A client that closes before its error answer (BrokenResourceError) ends only itself.
    run_as(NOBODY, _raw_lines, str(machine.daemon.socket), HOSTILE * 3, True)
    assert request(machine.daemon.socket, {"op": "hello"})["ok"]
    assert machine.daemon.process is not None and machine.daemon.process.poll() is None
    assert machine.daemon.stop() == 0


def test_redial_count_with_a_leading_zero_is_a_clear_error(machine: Machine) -> None:
    machine.install_for_all_users()
    cms = machine.allusers / "CONTOSO" / "CONTOSO.cms"
    cms.write_bytes(cms.read_bytes().replace(b"RedialCount=2", b"RedialCount=08"))
    machine.daemon.start()
    answer = machine.as_nobody(
        {"op": "connect", "profile": str(machine.allusers / "CONTOSO.cmp"), "unattended": True}
    )
    assert answer["exit_code"] == 2, answer
    assert "RedialCount" in answer["error"] and "write 8" in answer["error"]
    assert str(cms) in answer["error"], "named as installed, not as the daemon's copy"
    assert request(machine.daemon.socket, {"op": "hello"})["ok"]
    assert machine.daemon.stop() == 0
    for command in (
        ["profile", "check", str(cms)],
        ["pops", str(machine.allusers / "CONTOSO.cmp")],
        ["connect", "--foreground", "--unattended", str(machine.allusers / "CONTOSO.cmp")],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "opencm", *command],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr, command
        # pops stops earlier: this profile has no phone book.
        assert command[0] == "pops" or "RedialCount" in result.stderr, command


def test_a_fifo_or_a_huge_profile_never_freezes_the_daemon(machine: Machine) -> None:
    machine.install_for_all_users()
    os.mkfifo(machine.allusers / "x.cmp", 0o644)
    with open(machine.allusers / "huge.cmp", "wb") as huge:
        huge.truncate(500 * 1024 * 1024)  # sparse: no disk used
    run_as(NOBODY, os.mkfifo, str(machine.home / "y.cmp"), 0o644)
    machine.daemon.start()
    for name, expected in (
        (machine.allusers / "x.cmp", "not a regular file"),
        (machine.allusers / "huge.cmp", "larger than"),
        (machine.home / "y.cmp", "installed for all users"),
    ):
        answer = machine.as_nobody({"op": "connect", "profile": str(name)})
        assert answer["exit_code"] == 3 and expected in answer["error"], answer
        assert request(machine.daemon.socket, {"op": "hello"})["ok"]
    assert machine.daemon.stop() == 0


def _hold_connections(socket_path: str, count: int) -> list[str]:
    """Open ``count`` connections and say hello on each; what each got back."""
    held, answers = [], []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(30)
        sock.connect(socket_path)
        held.append(sock)
    for sock in held:
        with contextlib.suppress(BrokenPipeError):  # refused at once: its answer is waiting
            sock.sendall(b'{"op": "hello"}\n')
        answers.append(sock.recv(4096).decode())
    for sock in held:
        sock.close()
    return answers


def test_one_user_cannot_take_every_connection(machine: Machine) -> None:
    from opencm.session.daemon import MAX_CLIENTS_PER_UID

    machine.daemon.start()
    answers = run_as(NOBODY, _hold_connections, str(machine.daemon.socket), MAX_CLIENTS_PER_UID + 3)
    assert isinstance(answers, list), answers
    assert sum('"ok": true' in answer for answer in answers) == MAX_CLIENTS_PER_UID
    refused = [answer for answer in answers if '"ok": true' not in answer]
    assert len(refused) == 3 and all("too many connections" in a for a in refused)
    assert request(machine.daemon.socket, {"op": "hello"})["ok"]
    assert machine.daemon.stop() == 0


def _low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_running_out_of_file_descriptors_never_ends_the_accept_loop() -> None:
    base = public_folder("ocmfd")
    daemon = DaemonProcess(base, preexec=_low_file_limit)
    try:
        daemon.start()
        # Root is not held to the per-user cap: 120 connections exhaust the daemon's 64.
        held = []
        for _ in range(120):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(daemon.socket))
            held.append(sock)
        time.sleep(0.5)  # let the daemon hit EMFILE (it retries; nothing to wait on)
        assert daemon.process is not None and daemon.process.poll() is None
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 30
        while True:
            answer = request(daemon.socket, {"op": "hello"}, timeout=10)
            if answer.get("ok") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer["ok"], answer
        assert daemon.stop() == 0
    finally:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)
        shutil.rmtree(base)


def test_the_systemd_unit_raises_the_file_limit() -> None:
    unit = (ROOT / "data" / "systemd" / "opencm.service").read_text()
    limits = [line for line in unit.splitlines() if line.startswith("LimitNOFILE=")]
    assert limits and int(limits[0].split("=")[1]) >= 4096


def test_a_users_own_dial_up_values_reach_their_session_of_an_all_users_profile(
    machine: Machine,
) -> None:
    """A user's values of an all-users profile live in their home (they cannot write its .cmp);
    the root daemon does not read homes, so the request carries them (``user_settings``) into
    the daemon's private copy. Only the keys a user sets are taken."""
    machine.install_for_all_users()
    machine.daemon.start()
    cmp = str(machine.allusers / "CONTOSO.cmp")
    refused = machine.as_nobody(
        {"op": "connect", "profile": cmp, "type": "double", "unattended": True,
         "user_settings": {"ModemDevice": "/dev/ttyS1", "CMSFile": "../../etc/shadow"}}
    )  # fmt: skip
    assert refused["exit_code"] == 2 and "'CMSFile'" in refused["error"]
    answer = machine.as_nobody(
        {"op": "connect", "profile": cmp, "type": "double", "unattended": True,
         "user_settings": {"PhoneNumber": "555-7777"}}
    )  # fmt: skip
    assert answer["ok"], answer
    dialed = [settings["numbers"] for settings in machine.dial_settings() if "numbers" in settings]
    assert dialed == ["555-7777"]
    # The installed profile is untouched; only the daemon's copy carries the user's value.
    assert "PhoneNumber" not in (machine.allusers / "CONTOSO.cmp").read_text()
    assert machine.as_nobody({"op": "disconnect", "session": answer["session"]["session"]})["ok"]
    assert machine.daemon.stop() == 0


def _foreground_connect(cmp: str, home: str) -> dict[str, Any]:
    """`opencm connect CMP --foreground --unattended` in this process (already a user)."""
    import io

    from opencm.cli.main import main

    os.environ["HOME"] = home
    for variable in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME"):
        os.environ.pop(variable, None)

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["connect", cmp, "--foreground", "--unattended"])
        except SystemExit as done:
            return {"code": done.code, "stderr": err.getvalue()}
    return {"code": 0, "stderr": err.getvalue()}


def test_a_user_connecting_an_all_users_profile_in_the_foreground_is_told_to_use_the_daemon(
    machine: Machine,
) -> None:
    """The OpenVPN config of an all-users profile is root's (0600): a user who adds
    --foreground gets a message that says what to do, not only "Permission denied"."""
    build_profile(machine.allusers, points=(), modem=False)  # no actions: only the link
    for path in [machine.allusers, *machine.allusers.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (machine.allusers / "CONTOSO" / "main.ovpn").chmod(0o600)
    cmp = str(machine.allusers / "CONTOSO.cmp")
    done = run_as(NOBODY, _foreground_connect, cmp, str(machine.home))
    assert done.get("code") not in (None, 0), done
    assert "Permission denied: it is root's; connect through the daemon" in done["stderr"], done


def test_a_user_whose_home_is_roots_gets_a_message_not_a_traceback(machine: Machine) -> None:
    """`sudo -u` / `runuser -u` keep HOME=/root: looking for saved credentials there must end
    in a message naming the file and $HOME (it was an uncaught PermissionError)."""
    build_profile(machine.allusers, points=(), modem=False)
    for path in [machine.allusers, *machine.allusers.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    root_home = Path("/root")
    if root_home.stat().st_mode & 0o005:
        pytest.skip("/root is searchable by others on this machine")
    done = run_as(NOBODY, _foreground_connect, str(machine.allusers / "CONTOSO.cmp"), "/root")
    assert done.get("code") == 2, done
    assert (
        "cannot look for saved credentials: Permission denied; is $HOME (/root)" in (done["stderr"])
    ), done
