"""Fixtures for the link tests: real namespaces, real OpenVPN / wireguard-go, ended by PID."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencm.links.api import LinkDown
from opencm_lab.lab import Lab, NetnsPair, Pki, generate_pki, missing_tools


def need_root_and(*tools: str) -> None:
    """Skip the calling test unless it runs as root with ``tools`` installed."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN devices)")
    missing = missing_tools("ip", *tools)
    if missing:
        pytest.skip(f"needs {', '.join(missing)} installed")


@pytest.fixture(scope="session")
def shared_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One PKI for the whole run (openssl takes a quarter of a second per PKI)."""
    if missing_tools("openssl", "openvpn"):
        pytest.skip("needs openssl and openvpn installed")
    return generate_pki(tmp_path_factory.mktemp("pki"), server_name="opencm-test-server")


@pytest.fixture
def lab() -> Iterator[Lab]:
    need_root_and()
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture
def pair(lab: Lab) -> NetnsPair:
    return lab.netns_pair()


def netns_pids(netns: str) -> list[int]:
    import subprocess

    out = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in out.stdout.split()]


def interfaces(netns: str) -> list[str]:
    import subprocess

    out = subprocess.run(
        ["ip", "-n", netns, "-o", "link", "show"], capture_output=True, text=True, check=False
    ).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class DownRecorder:
    """An ``on_down`` callback that keeps what it was told and wakes a waiting test."""

    def __init__(self) -> None:
        self.events: list[LinkDown] = []
        self.seen = asyncio.Event()

    async def __call__(self, down: LinkDown) -> None:
        self.events.append(down)
        self.seen.set()


async def wait_until_gone(pid: int, netns: str) -> None:
    """Wait up to five seconds for ``pid`` to leave ``netns``; fail the test if it does not."""
    for _ in range(100):
        if pid not in netns_pids(netns):
            break
        await asyncio.sleep(0.05)
    assert pid not in netns_pids(netns)
