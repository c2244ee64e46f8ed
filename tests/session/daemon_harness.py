"""A real ``opencm`` daemon process whose dialers are the process-holding double.

``python -m tests.session.daemon_harness --socket S --state-dir D`` runs
:class:`opencm.session.daemon.Daemon` with a dialer lookup that answers every name with a
:class:`ProcessLinkDialer`: its 'link' is a real child process (in its own session, so it
outlives a daemon killed with SIGKILL, as an openvpn would), named by PID in the link handle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import ClassVar

import anyio
import anyio.abc

from opencm.links import proc
from opencm.links.api import Credentials, DialEntry, DialError, LinkDownCallback, LinkInfo
from opencm.session.daemon import IDLE_TIMEOUT, Daemon

LINK_PROGRAM = "import time; time.sleep(600)"


class ProcessLinkDialer:
    processes: ClassVar[dict[int, anyio.abc.Process]] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        record = os.environ.get("OPENCM_TEST_DIAL_RECORD")
        if record:  # what the link was told to use (which config file root would read)
            line = json.dumps(dict(entry.settings)) + "\n"
            await anyio.to_thread.run_sync(_append, record, line)
        if os.environ.get("OPENCM_TEST_DIAL") == "hang":
            await anyio.sleep_forever()  # until the session cancels the dial
        if os.environ.get("OPENCM_TEST_DIAL") == "fail":
            raise DialError(f"{entry.name} did not answer (test)", code=678, retryable=True)
        process = await anyio.open_process(
            [sys.executable, "-c", LINK_PROGRAM, f"opencm-test-link-{entry.name}"],
            start_new_session=True,
        )
        proc.started(process.pid)  # as the built-in dialers report their helpers
        ProcessLinkDialer.processes[process.pid] = process
        if os.environ.get("OPENCM_TEST_DIAL") == "start-then-hang":
            await anyio.sleep_forever()  # the link's process runs; the link never comes up
        return LinkInfo(
            entry=entry.name,
            interface="tun-test",
            client_ip="10.9.0.2",
            server_ip="10.9.0.1",
            tunnel_server=None,
            handle={"pid": str(process.pid)},
        )

    async def dial_dialog(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        return await self.dial(entry, credentials, on_down)

    async def hang_up(self, link: LinkInfo) -> None:
        pid = int(link.handle["pid"])
        process = ProcessLinkDialer.processes.pop(pid, None)
        if process is not None:
            process.terminate()
            await process.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # a link left by a dead daemon (already checked by PID)

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        return entry

    def entry_deleted(self, entry: DialEntry) -> None:
        return None


def _append(path: str, line: str) -> None:
    with open(path, "a") as out:
        out.write(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path)
    parser.add_argument("--profile-root", type=Path, action="append")
    parser.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT)
    args = parser.parse_args()
    daemon = Daemon(
        args.socket,
        args.state_dir,
        dialer_lookup=ProcessLinkDialer,
        log_dir=args.log_dir,
        profile_roots=args.profile_root,
        idle_timeout=args.idle_timeout,
    )
    anyio.run(daemon.serve)


if __name__ == "__main__":
    main()
