"""The NetworkManager dialer against python-dbusmock's NetworkManager template on a private bus,
for what a real NetworkManager cannot be made to do here: a device disconnecting under an active
connection, an active connection vanishing from the manager, no bus at all. Activation,
deactivation, a user's drop and unknown connections run against the real one
(test_networkmanager_real.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from opencm.errors import InputError
from opencm.links.api import Credentials, DialEntry, Dialer, DialError, DownReason
from opencm.links.networkmanager import (
    NM,
    NM_PATH,
    SETTINGS_IFACE,
    SETTINGS_PATH,
    NetworkManagerDialer,
)
from opencm.process import end_child
from opencm_lab.lab import missing_tools
from tests.links.conftest import DownRecorder

MOCK_IFACE = "org.freedesktop.DBus.Mock"


@pytest.fixture
def nm_bus() -> Iterator[str]:
    """A private dbus-daemon with dbusmock's NetworkManager on it; both ended by PID."""
    if missing_tools("dbus-daemon"):
        pytest.skip("needs dbus-daemon installed")
    pytest.importorskip("dbusmock")
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
    )
    mock: subprocess.Popen[bytes] | None = None
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        mock = subprocess.Popen(
            [sys.executable, "-m", "dbusmock", "--session", "-t", "networkmanager"],
            env={**os.environ, "DBUS_SESSION_BUS_ADDRESS": address},
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not asyncio.run(_has_name(address)):
            assert mock.poll() is None, "dbusmock exited"
            assert time.monotonic() < deadline, "dbusmock did not claim NetworkManager's name"
            time.sleep(0.05)
        yield address
    finally:
        if mock is not None:
            end_child(mock, grace=2.0)
        end_child(daemon, grace=2.0)
        if daemon.stdout is not None:
            daemon.stdout.close()


async def _has_name(address: str) -> bool:
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="NameHasOwner",
                signature="s",
                body=[NM],
            )
        )
        return bool(reply and reply.body and reply.body[0])
    finally:
        bus.disconnect()


async def call(
    address: str, path: str, iface: str, member: str, sig: str = "", body: Any = ()
) -> Any:
    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(
            Message(
                destination=NM,
                path=path,
                interface=iface,
                member=member,
                signature=sig,
                body=list(body),
            )
        )
        assert reply is not None and reply.message_type != MessageType.ERROR, reply and reply.body
        return reply.body[0] if reply.body else None
    finally:
        bus.disconnect()


async def add_vpn(address: str, name: str) -> tuple[str, str]:
    """An Ethernet device eth0 and an NM connection ``name``; returns (device path, uuid)."""
    device = await call(
        address,
        "/org/freedesktop",
        MOCK_IFACE,
        "AddEthernetDevice",
        "ssi",
        ["mock_Ethernet1", "eth0", 30],
    )
    conn_uuid = str(uuid.uuid4())
    settings = {
        "connection": {
            "id": Variant("s", name),
            "uuid": Variant("s", conn_uuid),
            "type": Variant("s", "vpn"),
        }
    }
    await call(address, SETTINGS_PATH, SETTINGS_IFACE, "AddConnection", "a{sa{sv}}", [settings])
    return device, conn_uuid


async def active_connections(address: str) -> list[str]:
    value = await call(
        address, NM_PATH, "org.freedesktop.DBus.Properties", "Get", "ss", [NM, "ActiveConnections"]
    )
    return list(value.value)


def test_dialer_satisfies_the_contract() -> None:
    assert isinstance(NetworkManagerDialer(), Dialer)


@pytest.mark.parametrize(
    ("how", "reason", "detail"),
    [
        ("state", DownReason.CARRIER_LOST, "the device was disconnected"),
        ("removed", DownReason.ERROR, "dropped the active connection"),
    ],
)
def test_drop_is_reported(nm_bus: str, how: str, reason: DownReason, detail: str) -> None:
    dialer = NetworkManagerDialer(bus_address=nm_bus)
    downs = DownRecorder()

    async def scenario() -> None:
        device, _ = await add_vpn(nm_bus, "Corp VPN")
        entry = DialEntry("NM", "networkmanager", {"connection": "Corp VPN", "device": "eth0"})
        link = await dialer.dial(entry, Credentials(), downs)
        active = link.handle["active"]
        if how == "state":  # NM says: deactivated, reason 3 (device disconnected)
            await call(
                nm_bus,
                active,
                MOCK_IFACE,
                "EmitSignal",
                "sssav",
                [
                    "org.freedesktop.NetworkManager.Connection.Active",
                    "StateChanged",
                    "uu",
                    [Variant("u", 4), Variant("u", 3)],
                ],
            )
        else:  # the active connection disappears from the manager
            await call(
                nm_bus,
                "/org/freedesktop",
                MOCK_IFACE,
                "RemoveActiveConnection",
                "ss",
                [device, active],
            )
        await asyncio.wait_for(downs.seen.wait(), 10)
        await dialer.hang_up(link)

    asyncio.run(scenario())
    assert len(downs.events) == 1
    assert downs.events[0].reason is reason and detail in downs.events[0].detail


def test_edit_entry() -> None:
    with pytest.raises(InputError, match="needs 'connection'") as error:
        NetworkManagerDialer().edit_entry(DialEntry("E", "networkmanager", {}))
    assert error.value.field == "E.connection"
    with pytest.raises(InputError, match="positive"):
        NetworkManagerDialer().edit_entry(
            DialEntry("E", "networkmanager", {"connection": "x", "timeout": "0"})
        )


def test_no_dbus_is_an_error_no_redial_fixes(tmp_path: Path) -> None:
    """Azure's RedialCount=99 must not mean 99 × RedialDelay of 'no D-Bus'."""
    dialer = NetworkManagerDialer(bus_address=f"unix:path={tmp_path / 'no-bus'}")
    entry = DialEntry("NM", "networkmanager", {"connection": "Contoso"})

    async def scenario() -> None:
        with pytest.raises(DialError) as failed:
            await dialer.dial(entry, Credentials(), lambda down: None)
        assert not failed.value.retryable
        assert "cannot reach NetworkManager's D-Bus" in str(failed.value)

    asyncio.run(scenario())
