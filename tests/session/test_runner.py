"""The documented connection rules, with real action programs and the scripted dialer double."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from opencm.actions.libhost import LibraryHost
from opencm.links.api import DownReason
from opencm.profile.model import ConnectionType
from opencm.session.config import session_config
from opencm.session.log import SessionLog, read_log
from opencm.session.machine import State
from opencm.session.options import ConnectOptions, SessionDeps
from opencm.session.prompt import Choice
from opencm.session.runner import Outcome, Session
from opencm.testing import Dialers, FakeClock, ScriptedDialer, Step, crash, fail, hang, up
from tests.actions.conftest import compile_library
from tests.session.conftest import build_profile, engine_for, points_of, recorded, wait_state

pytestmark = pytest.mark.anyio

DIRECT, DIALUP, DOUBLE = ConnectionType.DIRECT, ConnectionType.DIALUP, ConnectionType.DOUBLE


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        host: LibraryHost,
        *,
        kind: ConnectionType = DIRECT,
        tunnel: list[Step] | None = None,
        modem: list[Step] | None = None,
        clock: FakeClock | None = None,
        **options: Any,
    ) -> None:
        profile_options = {
            key: options.pop(key)
            for key in ("points", "extra_actions", "cm", "opencm", "tunnels")
            if key in options
        }
        self.profile, self.record = build_profile(tmp_path, **profile_options)
        self.config = session_config(self.profile)
        self.openvpn = ScriptedDialer("openvpn", list(tunnel or []))
        self.modem = ScriptedDialer("modem", list(modem or []))
        self.clock = clock or FakeClock(auto=True)
        self.engine = engine_for(self.profile, host)
        self.log_path = tmp_path / "logs" / "CONTOSO.log"
        options.setdefault("interactive", False)
        deps = {key: options.pop(key) for key in ("prompt", "journal") if key in options}
        self.session = Session(
            self.config,
            self.engine,
            ConnectOptions(connection_type=kind, **options),
            SessionDeps(
                dialer_lookup=Dialers([self.openvpn, self.modem]),
                clock=self.clock,
                log=SessionLog(self.log_path, session_id="t"),
                **deps,
            ),
        )
        self.outcome: Outcome | None = None

    async def run(self) -> None:
        self.outcome = await self.session.run()

    def points(self) -> list[str]:
        return points_of(self.record)

    def rows(self, point: str) -> list[dict[str, str]]:
        return [row for row in recorded(self.record) if row["point"] == point]


async def connect_then_disconnect(h: Harness) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.CONNECTED, State.DISCONNECTED, State.CANCELLED)
        h.session.disconnect()


async def test_direct_connection_runs_the_points_in_order_with_the_links_macros(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host, kind=DIRECT)
    await connect_then_disconnect(h)
    assert h.outcome is Outcome.DISCONNECTED
    assert h.points() == ["pre-init", "pre-connect", "pre-tunnel", "post-connect", "disconnect"]
    post = h.rows("post-connect")[0]
    assert post["ConnectionType"] == "1"
    assert post["TunnelRasEntry"] == "Main"
    assert post["TunnelServerAddress"] == "main.contoso.test"
    assert (post["ClientIPAddress"], post["ServerIPAddress"]) == ("10.8.0.6", "10.8.0.1")
    assert post["DialRasEntry"] == "Contoso Dial"  # the profile's DUN, not dialed
    assert h.rows("disconnect")[0]["DisconnectReason"] == "user-disconnect"
    # Outside the disconnect point it has no value: NULL, like every undefined macro.
    assert {row["DisconnectReason"] for row in h.rows("post-connect") + h.rows("pre-init")} == {
        "NULL"
    }
    assert h.openvpn.dialed == ["Main"] and h.openvpn.hung_up == ["Main"]
    assert h.modem.dialed == []


async def test_dialup_runs_pre_dial_and_never_pre_tunnel(tmp_path: Path, host: LibraryHost) -> None:
    h = Harness(
        tmp_path,
        host,
        kind=DIALUP,
        tunnels=False,
        modem=[up(client_ip="10.77.0.2", server_ip="10.77.0.1")],
    )
    await connect_then_disconnect(h)
    post = h.rows("post-connect")[0]
    assert (post["ClientIPAddress"], post["ServerIPAddress"]) == ("10.77.0.2", "10.77.0.1")
    assert post["TunnelRasEntry"] == "CONTOSO Tunnel"  # the profile's TunnelDUN, not dialed
    assert h.points() == ["pre-init", "pre-connect", "pre-dial", "post-connect", "disconnect"]
    assert h.rows("post-connect")[0]["ConnectionType"] == "0"
    assert h.modem.dialed == ["Contoso Dial"] and h.openvpn.dialed == []


async def test_double_dial_dials_then_tunnels_and_hangs_up_in_reverse(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(
        tmp_path, host, kind=DOUBLE, modem=[up(client_ip="10.77.0.2", server_ip="10.77.0.1")]
    )
    await connect_then_disconnect(h)
    assert h.points() == [
        "pre-init",
        "pre-connect",
        "pre-dial",
        "pre-tunnel",
        "post-connect",
        "disconnect",
    ]
    pre_tunnel = h.rows("pre-tunnel")[0]
    assert pre_tunnel["DialRasEntry"] == "Contoso Dial"
    assert pre_tunnel["ClientIPAddress"] == "10.77.0.2"  # the dial-up line's, before the tunnel
    post = h.rows("post-connect")[0]
    assert (post["ClientIPAddress"], post["ServerIPAddress"]) == ("10.8.0.6", "10.8.0.1")
    assert h.rows("post-connect")[0]["ConnectionType"] == "2"
    assert h.modem.dialed == ["Contoso Dial"] and h.openvpn.dialed == ["Main"]
    assert h.openvpn.hung_up == ["Main"] and h.modem.hung_up == ["Contoso Dial"]


async def test_cancel_during_dialing_runs_on_cancel_and_nothing_after_it(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host, kind=DIRECT, tunnel=[hang()])
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.TUNNELLING)
        await h.openvpn.dialing.wait()
        h.session.cancel()
    assert h.outcome is Outcome.CANCELLED
    assert h.session.state is State.CANCELLED
    assert h.openvpn.cancelled == 1
    assert h.points() == ["pre-init", "pre-connect", "pre-tunnel", "on-cancel"]


async def test_cancel_of_an_idle_session_runs_no_on_cancel(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host)
    h.session.cancel()
    await h.run()
    assert h.outcome is Outcome.CLOSED
    assert h.points() == ["pre-init"]
    assert h.openvpn.dialed == []


async def test_dial_errors_run_on_error_and_redial_the_alternates_after_redial_delay(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host, tunnel=[fail(809), fail(718), up()])
    await connect_then_disconnect(h)
    assert h.outcome is Outcome.DISCONNECTED
    assert h.openvpn.dialed == ["Main", "Backup", "Main"]
    assert h.clock.slept == [5.0, 5.0]
    assert [(r["ErrorCode"], r["LastErrorSource"]) for r in h.rows("on-error")] == [
        ("809", "openvpn"),
        ("718", "openvpn"),
    ]
    # Pre-connect once per Connect; pre-tunnel before every attempt.
    assert h.points() == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "on-error",
        "pre-tunnel",
        "on-error",
        "pre-tunnel",
        "post-connect",
        "disconnect",
    ]


async def test_redials_stop_after_redial_count(tmp_path: Path, host: LibraryHost) -> None:
    h = Harness(tmp_path, host, tunnel=[fail(800), fail(800), fail(800), up()])
    await h.run()
    assert h.outcome is Outcome.FAILED
    assert len(h.openvpn.dialed) == 3  # the first try and RedialCount=2 redials
    assert h.points().count("on-error") == 3
    assert "disconnect" not in h.points()
    assert h.session.status()["error"]["code"] == 800


async def test_an_error_that_is_not_retryable_is_not_redialed(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host, tunnel=[fail(691, retryable=False)])
    await h.run()
    assert h.outcome is Outcome.FAILED
    assert h.openvpn.dialed == ["Main"]
    assert h.points()[-1] == "on-error"


async def test_a_failing_pre_tunnel_library_action_ends_the_attempt_and_on_error_gets_the_code(
    tmp_path: Path, host: LibraryHost
) -> None:
    library_record = tmp_path / "library.txt"
    h = Harness(
        tmp_path,
        host,
        points=["pre-init", "pre-connect", "post-connect", "disconnect", "on-error"],
        extra_actions={
            "pre-tunnel": [
                r"0=CONTOSO\action.so,Fail %TunnelServerAddress%",
                "0&Description=check the server certificate",
                "0&Flags=16",
            ]
        },
    )
    compile_library(tmp_path / "CONTOSO", "action.so", library_record)
    await h.run()
    assert h.outcome is Outcome.FAILED
    assert library_record.read_text().startswith("Fail|")
    assert h.openvpn.dialed == []  # the attempt ended before the tunnel
    assert h.points() == ["pre-init", "pre-connect", "on-error"]
    error = h.rows("on-error")[0]
    assert error["ErrorCode"] == "-5"
    assert error["LastErrorSource"] == "Custom Action check the server certificate"


async def test_a_waited_for_executable_failing_at_pre_connect_ends_the_attempt(
    tmp_path: Path, host: LibraryHost
) -> None:
    """With opencm's N&Wait the exit status counts at a fatal point."""
    script = tmp_path / "CONTOSO" / "refuse.sh"
    h = Harness(
        tmp_path,
        host,
        points=["on-error", "disconnect"],
        extra_actions={"pre-connect": [r"0=CONTOSO\refuse.sh", "0&Flags=16", "0&Wait=60"]},
    )
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    await h.run()
    assert h.outcome is Outcome.FAILED
    assert h.points() == ["on-error"]
    assert h.rows("on-error")[0]["ErrorCode"] == "3"


async def test_an_executable_is_started_and_its_exit_status_does_not_count(
    tmp_path: Path, host: LibraryHost
) -> None:
    """Microsoft's "Custom Actions": an executable "is run asynchronously, which means that
    Connection Manager starts the executable … and continues without waiting"."""
    script = tmp_path / "CONTOSO" / "refuse.sh"
    h = Harness(
        tmp_path,
        host,
        points=["on-error", "post-connect", "disconnect"],
        extra_actions={"pre-connect": [r"0=CONTOSO\refuse.sh", "0&Flags=16"]},
    )
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.CONNECTED)
        h.session.disconnect()
    assert h.outcome is Outcome.DISCONNECTED
    assert h.points() == ["post-connect", "disconnect"]


async def test_a_drop_runs_the_disconnect_actions_with_the_reason(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host)
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.CONNECTED)
        await h.openvpn.drop(DownReason.PEER_GONE, "ping-restart")
    assert h.outcome is Outcome.DROPPED
    assert h.points()[-1] == "disconnect"
    assert h.rows("disconnect")[0]["DisconnectReason"] == "peer-gone"
    assert h.session.status()["disconnect_reason"] == "peer-gone"
    assert h.openvpn.hung_up == ["Main"]


async def test_auto_reconnect_connects_again_after_a_drop(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host, cm=["AutoReconnect=1"])
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.CONNECTED)
        await h.openvpn.drop(DownReason.PROCESS_EXITED)
        await wait_state(h.session, State.DROPPED, State.PRE_CONNECT)
        await wait_state(h.session, State.CONNECTED)
        # The reason belongs to the drop it describes, not to the connection made again.
        assert h.session.status()["disconnect_reason"] is None
        h.session.disconnect()
    assert h.outcome is Outcome.DISCONNECTED
    assert h.points() == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "post-connect",
        "disconnect",
        "pre-connect",
        "pre-tunnel",
        "post-connect",
        "disconnect",
    ]
    assert [r["DisconnectReason"] for r in h.rows("disconnect")] == [
        "process-exited",
        "user-disconnect",
    ]
    assert h.openvpn.dialed == ["Main", "Main"]


class ScriptedPrompt:
    def __init__(self, answer: Choice | None) -> None:
        self.answer = answer
        self.asked = 0

    async def ask(self, service_name: str, seconds: float) -> Choice:
        self.asked += 1
        if self.answer is None:
            await anyio.sleep_forever()
        assert self.answer is not None
        return self.answer


MONITORED = {"monitored": [r"0=CONTOSO\record.py monitored %ServiceName%", "0&Flags=16"]}


async def test_last_monitored_app_exits_no_answer_for_30_seconds_disconnects(
    tmp_path: Path, host: LibraryHost
) -> None:
    clock = FakeClock()
    prompt = ScriptedPrompt(None)
    h = Harness(
        tmp_path, host, extra_actions=MONITORED, clock=clock, interactive=True, prompt=prompt
    )
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.PROMPTING)
        await clock.wait_for_sleepers(1)
        clock.advance(29.9)
        await anyio.sleep(0.2)
        assert h.session.state is State.PROMPTING
        assert h.openvpn.hung_up == []
        clock.advance(0.1)
        await wait_state(h.session, State.DISCONNECTED)
    assert prompt.asked == 1
    assert h.points()[-2:] == ["monitored", "disconnect"]
    assert h.rows("disconnect")[0]["DisconnectReason"] == "prompt-timeout"
    assert h.openvpn.hung_up == ["Main"]


async def test_stay_online_keeps_the_link(tmp_path: Path, host: LibraryHost) -> None:
    clock = FakeClock()
    prompt = ScriptedPrompt(Choice.STAY_ONLINE)
    h = Harness(
        tmp_path, host, extra_actions=MONITORED, clock=clock, interactive=True, prompt=prompt
    )
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.PROMPTING)
        await wait_state(h.session, State.CONNECTED)
        clock.advance(60)
        await anyio.sleep(0.2)
        assert h.session.state is State.CONNECTED
        assert h.openvpn.hung_up == [] and "disconnect" not in h.points()
        h.session.disconnect()
    assert prompt.asked == 1
    assert h.rows("disconnect")[0]["DisconnectReason"] == "user-disconnect"


async def test_disconnect_now_answer_disconnects_at_once(tmp_path: Path, host: LibraryHost) -> None:
    prompt = ScriptedPrompt(Choice.DISCONNECT_NOW)
    h = Harness(tmp_path, host, extra_actions=MONITORED, interactive=True, prompt=prompt)
    await h.run()
    assert h.outcome is Outcome.DISCONNECTED
    assert h.rows("disconnect")[0]["DisconnectReason"] == "monitored-apps-exited"


async def test_unattended_disconnects_when_the_last_app_exits_without_asking(
    tmp_path: Path, host: LibraryHost
) -> None:
    prompt = ScriptedPrompt(Choice.STAY_ONLINE)
    h = Harness(tmp_path, host, extra_actions=MONITORED, interactive=False, prompt=prompt)
    await h.run()
    assert h.outcome is Outcome.DISCONNECTED
    assert prompt.asked == 0
    assert h.rows("disconnect")[0]["DisconnectReason"] == "monitored-apps-exited"


async def test_the_log_has_state_changes_and_each_action_with_argv_exit_code_and_duration(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host)
    await connect_then_disconnect(h)
    lines = read_log(h.log_path)
    states = [(line["from"], line["to"]) for line in lines if line["kind"] == "state"]
    assert states[:3] == [
        ("pre-init", "ready"),
        ("ready", "pre-connect"),
        ("pre-connect", "pre-tunnel"),
    ]
    assert states[-1] == ("disconnecting", "disconnected")
    actions = [line for line in lines if line["kind"] == "action"]
    assert [a["point"] for a in actions] == [
        "pre-init",
        "pre-connect",
        "pre-tunnel",
        "post-connect",
        "disconnect",
    ]
    post = actions[3]
    assert post["argv"][0].endswith("record.py") and post["argv"][1] == "post-connect"
    assert post["exit_code"] == 0 and post["ok"] is True
    assert isinstance(post["duration"], float)
    assert (tmp_path / "logs" / "CONTOSO.log").stat().st_mode & 0o777 == 0o600


async def test_an_unknown_entry_is_refused_before_anything_runs(
    tmp_path: Path, host: LibraryHost
) -> None:
    from opencm.errors import InputError

    with pytest.raises(InputError, match="no tunnel entry named 'Nowhere'"):
        Harness(tmp_path, host, entry="Nowhere")
    assert not (tmp_path / "record.jsonl").exists()


async def test_entry_option_starts_with_that_server(tmp_path: Path, host: LibraryHost) -> None:
    h = Harness(tmp_path, host, entry="Backup", tunnel=[fail(1), up()])
    await connect_then_disconnect(h)
    assert h.openvpn.dialed == ["Backup", "Main"]


async def test_a_dialer_that_crashes_ends_the_attempt_not_the_session_runner(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host, tunnel=[crash(), up()])
    await connect_then_disconnect(h)
    assert h.outcome is Outcome.DISCONNECTED
    (error,) = h.rows("on-error")
    assert (error["ErrorCode"], error["LastErrorSource"]) == ("5", "openvpn")
    assert h.openvpn.dialed == ["Main", "Backup"]


async def test_an_unknown_dialer_is_an_error_that_is_not_redialed(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host)
    h.session.lookup = Dialers([h.modem])  # no "openvpn" on this allow list
    await h.run()
    assert h.outcome is Outcome.FAILED
    (error,) = h.rows("on-error")
    assert (error["ErrorCode"], error["LastErrorSource"]) == ("3", "openvpn")


async def test_cancel_while_connected_does_nothing_and_a_disconnect_stops_auto_reconnect(
    tmp_path: Path, host: LibraryHost
) -> None:
    h = Harness(tmp_path, host, cm=["AutoReconnect=1"])
    async with anyio.create_task_group() as group:
        group.start_soon(h.run)
        await wait_state(h.session, State.CONNECTED)
        assert h.session.cancel() is False
        h.session.disconnect()
        await h.openvpn.drop(DownReason.PEER_GONE)  # the drop races the disconnect
    assert h.outcome in (Outcome.DISCONNECTED, Outcome.DROPPED)
    assert "on-cancel" not in h.points()
    assert h.points().count("pre-connect") == 1  # no reconnect after the user's disconnect
    assert h.points().count("disconnect") == 1


async def test_a_journal_that_cannot_be_written_leaves_no_link_up(
    tmp_path: Path, host: LibraryHost
) -> None:
    # The journal entry is written while the link is dialled (runner._dial_journaled); when the
    # write fails, the link that came up meanwhile is hung up before the error ends the session.
    from opencm.session.journal import Journal

    journal = Journal(tmp_path / "state" / "journal")
    journal.directory.rmdir()
    journal.directory.write_text("not a folder")
    h = Harness(tmp_path, host, kind=DIRECT, journal=journal)
    with pytest.raises(NotADirectoryError):
        await h.session.run()
    assert h.openvpn.dialed == ["Main"] and h.openvpn.hung_up == ["Main"]
    assert h.session.links == []
