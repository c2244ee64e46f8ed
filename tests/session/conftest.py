"""Session test helpers: installed profiles whose actions are real programs recording to a file."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from opencm.actions.engine import ActionEngine
from opencm.actions.libhost import LibraryHost
from opencm.profile.model import ServiceProfile, load_profile
from opencm.session.machine import State
from opencm.session.runner import Session

if TYPE_CHECKING:
    from tests.session.daemons import DaemonProcess

#: Every action writes one JSON line: the point it was told, and its arguments after expansion.
RECORDER = """#!{python}
import json, sys
with open({out!r}, "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
"""

#: Macros each recorded action receives (argv elements, never a shell).
MACROS = (
    "%ConnectionType% %DialRasEntry% %TunnelRasEntry% %TunnelServerAddress% %ClientIPAddress% "
    "%ServerIPAddress% %ErrorCode% %LastErrorSource% %DisconnectReason% %ServiceName% %UserName%"
)
MACRO_NAMES = [name.strip("%") for name in MACROS.split()]

SECTIONS = {
    "pre-init": "Pre-Init Actions",
    "pre-connect": "Pre-Connect Actions",
    "pre-dial": "Pre-Dial Actions",
    "pre-tunnel": "Pre-Tunnel Actions",
    "post-connect": "Connect Actions",
    "monitored": "Auto Applications",
    "disconnect": "Disconnect Actions",
    "on-cancel": "On-Cancel Actions",
    "on-error": "On-Error Actions",
}


def write_recorder(folder: Path, out: Path) -> Path:
    path = folder / "record.py"
    path.write_text(RECORDER.format(python=sys.executable, out=str(out)))
    path.chmod(0o755)
    return path


def build_profile(
    root: Path,
    *,
    points: Sequence[str] = tuple(SECTIONS),
    extra_actions: Mapping[str, list[str]] | None = None,
    opencm: Sequence[str] = (),
    cm: Sequence[str] = (),
    servers: Sequence[str] = ("Main", "Backup"),
    modem: bool = True,
    tunnels: bool = True,
    link: str = "openvpn",
) -> tuple[ServiceProfile, Path]:
    """A CMAK-shaped installed profile (``root/CONTOSO.cmp`` + ``root/CONTOSO/CONTOSO.cms``)
    with a recorder action at each of ``points`` (monitored apps are added via extra_actions)."""
    service = root / "CONTOSO"
    service.mkdir(parents=True, exist_ok=True)
    record = root / "record.jsonl"
    write_recorder(service, record)
    (root / "CONTOSO.cmp").write_bytes(
        b"[Profile Format]\r\nVersion=5\r\n\r\n"
        b"[Connection Manager]\r\nCMSFile=CONTOSO\\CONTOSO.cms\r\n"
    )
    lines = [
        "[Connection Manager]",
        "ServiceName=Contoso VPN",
        "Dialup=1",
        "Direct=1",
        f"Tunnel={int(tunnels)}",
        "ConnectionType=1",
        "TunnelAddress=vpn.contoso.test",
        "DUN=Contoso Dial",
        "TunnelDUN=CONTOSO Tunnel",
        "RedialCount=2",
        "RedialDelay=5",
        *cm,
        "[opencm]",
    ]
    for index, name in enumerate(servers):
        (service / f"{name.lower()}.ovpn").write_text("# test config\n")
        lines += [
            f"VpnServer{index}={name}",
            f"Address&{name}={name.lower()}.contoso.test",
            f"Link&{name}={link}",
            f"Config&{name}=CONTOSO\\{name.lower()}.ovpn",
        ]
    if modem:
        lines += ["ModemDevice=/dev/ttyS9", "ModemInit=AT&F", "DialNumbers=5550100;5550101"]
    lines += list(opencm)
    sections: dict[str, list[str]] = {section: [] for section in SECTIONS.values()}
    for point in points:
        if point == "monitored":
            continue
        sections[SECTIONS[point]] += [
            f"0=CONTOSO\\record.py {point} {MACROS}",
            "0&Flags=16",
            # Waited for (opencm's N&Wait), so the record is in point order.
            "0&Wait=60",
        ]
    for point, entries in (extra_actions or {}).items():
        sections[SECTIONS[point]] += entries
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        lines.extend(entries)
    (service / "CONTOSO.cms").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return load_profile(root / "CONTOSO.cmp"), record


def recorded(record: Path) -> list[dict[str, str]]:
    """The recorded actions as {"point": …, macro: value …}."""
    if not record.exists():
        return []
    rows = []
    for line in record.read_text().splitlines():
        argv = json.loads(line)
        rows.append({"point": argv[0], **dict(zip(MACRO_NAMES, argv[1:], strict=False))})
    return rows


def points_of(record: Path) -> list[str]:
    return [row["point"] for row in recorded(record)]


async def wait_state(session: Session, *states: State, limit: float = 15.0) -> None:
    with anyio.fail_after(limit):
        while True:
            changed = session.changed
            if session.state in states:
                return
            await changed.wait()


@pytest.fixture
def host() -> Iterator[LibraryHost]:
    with LibraryHost() as library_host:
        yield library_host


def engine_for(profile: ServiceProfile, host: LibraryHost) -> ActionEngine:
    return ActionEngine(profile.cms, library_host=host)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A harness daemon process (not started: a test may set its environment first)."""
    from tests.session.daemons import DaemonProcess

    process = DaemonProcess(tmp_path)
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait(10)
