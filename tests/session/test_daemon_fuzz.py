"""Fuzzing the daemon protocol as an unprivileged user, with another user served throughout.

Each example is one line (a request made of the protocol's own ops and members with random
JSON values, or random bytes) sent as ``nobody`` on its own connection. Every line must get an
answer line (``"ok"``, or for ``watch`` its first event) within a generous bound; the daemon
must never print a traceback, never exit, and keep answering root's ``hello`` all along.

Bounded for the suite (``OPENCM_FUZZ_EXAMPLES``, default 250); a nightly run sets it higher.
``OPENCM_FUZZ_REPORT=FILE`` writes the figures (inputs, tracebacks, hangs, crashes) as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opencm.session.protocol import REQUESTS
from tests.session.conftest import build_profile
from tests.session.daemons import DaemonProcess
from tests.session.users import NOBODY, public_folder, request, run_as

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")

EXAMPLES = int(os.environ.get("OPENCM_FUZZ_EXAMPLES", "250"))
#: A line without an answer for this long counts as a hang (a loaded machine is slow).
ANSWER_WITHIN = 30.0
MEMBERS = sorted({name for schema in REQUESTS.values() for name in schema} | {"x", "op"})


def _fuzz_as_user(socket_path: str, paths: list[str], examples: int) -> dict[str, Any]:
    """Runs in a child as ``nobody``: hypothesis drives the lines; returns the figures."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    values = st.recursive(
        scalars | st.sampled_from(paths),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(MEMBERS) | st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    requests = st.builds(
        lambda op, members: {**members, "op": op} if op is not None else members,
        st.sampled_from([*REQUESTS, "bogus", ""]) | st.none() | st.integers(),
        st.dictionaries(st.sampled_from(MEMBERS), values, max_size=6),
    )
    lines = (
        requests.map(lambda r: json.dumps(r).encode())
        | st.binary(max_size=400)
        | st.text(alphabet='[]{}"\\,:01 a', max_size=300).map(str.encode)
    ).map(lambda raw: raw.replace(b"\n", b" ") + b"\n")
    figures: dict[str, Any] = {"inputs": 0, "hangs": 0, "bad_answers": []}

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(lines)
    def one(line: bytes) -> None:
        figures["inputs"] += 1
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(ANSWER_WITHIN)
            sock.connect(socket_path)
            try:
                sock.sendall(line)
                data = b""
                while b"\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except TimeoutError:
                figures["hangs"] += 1
                return
            except (BrokenPipeError, ConnectionResetError):
                data = b""
        first = json.loads(data.split(b"\n")[0]) if data else None
        if not isinstance(first, dict) or not ({"ok", "event"} & set(first)):
            figures["bad_answers"].append([line[:200].decode(errors="replace"), repr(first)])

    one()
    return figures


def test_fuzzing_the_protocol_as_a_user_never_hurts_the_daemon_or_another_user() -> None:
    base = public_folder("ocmfuzz")
    allusers = base / "etc" / "Cm"
    allusers.mkdir(parents=True)
    build_profile(allusers)
    for path in [base / "etc", allusers, *allusers.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.name == "record.py" else 0o644)
    os.mkfifo(allusers / "fifo.cmp", 0o644)
    output = base / "daemon.out"
    daemon = DaemonProcess(base, env={"OPENCM_SYSTEM_CONFIG_DIR": str(base / "etc")}, output=output)
    paths = [
        str(allusers / "CONTOSO.cmp"),
        str(allusers),
        str(allusers / "fifo.cmp"),
        "/etc/shadow",
        "/root/x.cmp",
        "relative.cmp",
        str(base / "home" / ".." / "etc" / "Cm" / "CONTOSO.cmp"),
    ]
    missed: list[str] = []
    stop = threading.Event()

    def root_keeps_asking() -> None:
        while not stop.is_set():
            answer = request(daemon.socket, {"op": "hello"}, timeout=ANSWER_WITHIN)
            if not answer.get("ok"):
                missed.append(str(answer))
            time.sleep(0.1)

    try:
        daemon.start()
        watcher = threading.Thread(target=root_keeps_asking, daemon=True)
        watcher.start()
        started = time.monotonic()
        figures = run_as(NOBODY, _fuzz_as_user, str(daemon.socket), paths, EXAMPLES)
        elapsed = time.monotonic() - started
        stop.set()
        watcher.join(ANSWER_WITHIN * 2)
        assert daemon.process is not None
        crashed = daemon.process.poll() is not None
        assert not crashed, "the daemon exited"
        assert daemon.stop() == 0
    finally:
        stop.set()
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)
    log = output.read_text(errors="replace")
    figures.update(
        tracebacks=log.count("Traceback"), crashes=int(crashed), seconds=round(elapsed, 1)
    )
    report = os.environ.get("OPENCM_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(figures, indent=1))
    shutil.rmtree(base)
    assert "raised" not in figures, figures
    assert figures["inputs"] >= EXAMPLES // 2, figures
    assert (figures["hangs"], figures["bad_answers"], figures["tracebacks"]) == (0, [], 0), figures
    assert missed == [], missed
