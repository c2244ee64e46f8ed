"""The NetworkManager dialer: activate and deactivate a connection NetworkManager already knows.

For desktops where NetworkManager owns the network, a CM entry can simply name an NM connection
(a VPN, a mobile broadband or an Ethernet profile made with nmcli or the applet); opencm asks NM
over D-Bus (``org.freedesktop.NetworkManager``, with dbus-fast) to activate it, waits until the
active connection reports ``ACTIVATED``, and deactivates it on hang-up. NM keeps the secrets.

Settings of an entry:

``connection`` (required)  the NM connection's id (its name) or UUID
``device``                 interface to activate it on (default: NM chooses)
``timeout``                seconds to wait for ``ACTIVATED`` (default 60)

While up, the dialer listens for the active connection's ``StateChanged`` signal and for it to
leave the manager's ``ActiveConnections``; either is reported as a drop with NM's reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, replace
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from opencm.errors import InputError
from opencm.links import codes
from opencm.links.api import (
    Credentials,
    DialEntry,
    DialError,
    DownReason,
    LinkDown,
    LinkDownCallback,
    LinkInfo,
    ProfileKeys,
)
from opencm.links.base import NoDialogDialer
from opencm.links.settings import check_seconds, check_settings
from opencm.links.tasks import LinkState

SETTINGS = ("connection", "device", "timeout")
NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
SETTINGS_PATH = "/org/freedesktop/NetworkManager/Settings"
SETTINGS_IFACE = "org.freedesktop.NetworkManager.Settings"
CONNECTION_IFACE = "org.freedesktop.NetworkManager.Settings.Connection"
ACTIVE_IFACE = "org.freedesktop.NetworkManager.Connection.Active"
DEVICE_IFACE = "org.freedesktop.NetworkManager.Device"
PROPERTIES = "org.freedesktop.DBus.Properties"

# NMActiveConnectionState
ACTIVATING, ACTIVATED, DEACTIVATING, DEACTIVATED = 1, 2, 3, 4

#: NMActiveConnectionStateReason → (our reason, words for the user).
REASONS: dict[int, tuple[DownReason, str]] = {
    0: (DownReason.ERROR, "unknown reason"),
    1: (DownReason.ERROR, "no reason given"),
    2: (DownReason.HANGUP, "disconnected by a user (nmcli or the applet)"),
    3: (DownReason.CARRIER_LOST, "the device was disconnected"),
    4: (DownReason.PROCESS_EXITED, "the VPN service stopped"),
    5: (DownReason.ERROR, "the IP configuration was invalid"),
    6: (DownReason.PEER_GONE, "the connection attempt timed out"),
    7: (DownReason.PROCESS_EXITED, "the VPN service did not start in time"),
    8: (DownReason.PROCESS_EXITED, "the VPN service failed to start"),
    9: (DownReason.ERROR, "no valid secrets"),
    10: (DownReason.ERROR, "the login failed"),
    11: (DownReason.ERROR, "the connection was deleted"),
    12: (DownReason.ERROR, "a connection it depends on failed"),
    13: (DownReason.ERROR, "the device could not be created"),
    14: (DownReason.CARRIER_LOST, "the device was removed"),
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class NMError(DialError):
    """NetworkManager answered a call with a D-Bus error."""


@dataclass(eq=False)
class _Link(LinkState):
    """An active NM connection. NetworkManager tears it down itself: no teardown task here;
    a drop is reported by :meth:`NetworkManagerDialer._monitor`, a hang-up deactivates it."""

    entry: DialEntry
    bus: MessageBus
    active: str


class NetworkManagerDialer(NoDialogDialer):
    """The ``networkmanager`` built-in dialer (see the module documentation).

    NetworkManager's own secret agent asks the user if it must, so ``dial_dialog`` is ``dial``;
    and nothing is forgotten when an entry goes: the NM connection itself belongs to
    NetworkManager, not to opencm.
    """

    name = "networkmanager"
    # NetworkManager has its own namespaces: no Netns.
    profile_keys = ProfileKeys(required=("Connection",))

    def __init__(self, *, bus_address: str | None = None) -> None:
        #: None: the system bus (where NetworkManager lives); tests give a private bus.
        self._bus_address = bus_address
        self._links: dict[str, _Link] = {}

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        entry = self.edit_entry(entry)
        settings = entry.settings
        bus = await self._connect()
        try:
            connection = await _find_connection(bus, settings["connection"])
            device = "/"
            if settings.get("device"):
                device = await _call(
                    bus, NM_PATH, NM, "GetDeviceByIpIface", "s", [settings["device"]]
                )
            active = await _call(
                bus, NM_PATH, NM, "ActivateConnection", "ooo", [connection, device, "/"]
            )
            link = _Link(entry, bus, active, on_down=on_down)
            signals: asyncio.Queue[tuple[str, list[Any]]] = asyncio.Queue()
            await _watch(bus, active, signals)
            timeout = float(settings.get("timeout") or 60)
            try:
                async with asyncio.timeout(timeout):
                    await _wait_activated(bus, active, signals)
            except TimeoutError:
                with contextlib.suppress(DialError):
                    await _call(bus, NM_PATH, NM, "DeactivateConnection", "o", [active])
                raise DialError(
                    f"{entry.name}: NetworkManager did not activate {settings['connection']!r} "
                    f"within {timeout:g} s",
                    code=codes.VPN_FAILED,
                ) from None
            info = await _link_info(bus, entry, active)
        except BaseException:
            bus.disconnect()
            raise
        link.up = True
        self._links[active] = link
        link.tasks.spawn(self._monitor(link, signals))
        return info

    async def hang_up(self, link: LinkInfo) -> None:
        active = link.handle.get("active", "")
        state = self._links.pop(active, None)
        if state is not None:
            state.closing = True
            state.tasks.cancel_all()
            bus = state.bus
        else:
            bus = await self._connect()
        try:
            if active:
                with contextlib.suppress(DialError):  # already gone: nothing to undo
                    await _call(bus, NM_PATH, NM, "DeactivateConnection", "o", [active])
                    await _wait_gone(bus, active)
        finally:
            bus.disconnect()

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        settings = check_settings(entry, SETTINGS)
        if not settings.get("connection", "").strip():
            raise InputError(
                "a NetworkManager entry needs 'connection' (an NM connection id or UUID)",
                field=f"{entry.name}.connection",
            )
        settings["connection"] = settings["connection"].strip()
        check_seconds(entry, settings, ["timeout"])
        return replace(entry, settings=settings)

    # -- internals -----------------------------------------------------------------------------

    async def _connect(self) -> MessageBus:
        try:
            if self._bus_address is not None:
                return await MessageBus(bus_address=self._bus_address).connect()
            return await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, ValueError) as error:
            # No system bus is not something a redial fixes: end the attempt at once instead
            # of RedialCount × RedialDelay of the same failure.
            raise DialError(
                f"cannot reach NetworkManager's D-Bus: {error}",
                code=codes.PORT_NOT_AVAILABLE,
                retryable=False,
            ) from None

    async def _monitor(self, link: _Link, signals: asyncio.Queue[tuple[str, list[Any]]]) -> None:
        while True:
            kind, body = await signals.get()
            down: LinkDown | None = None
            if kind == "state" and body[0] in (DEACTIVATING, DEACTIVATED):
                reason, words = REASONS.get(int(body[1]), (DownReason.ERROR, f"reason {body[1]}"))
                down = LinkDown(reason, f"NetworkManager: {words}")
            elif kind == "gone":
                down = LinkDown(DownReason.ERROR, "NetworkManager dropped the active connection")
            if down is not None and not link.closing and not link.down_reported:
                link.down_reported = True
                self._links.pop(link.active, None)
                link.tasks.notify(link.on_down, down)
                link.bus.disconnect()
                return


async def _call(
    bus: MessageBus,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
) -> Any:
    reply = await bus.call(
        Message(
            destination=NM,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
    )
    if reply is None or reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply is not None and reply.body else "no reply"
        name = (reply.error_name if reply is not None else None) or ""
        raise NMError(
            f"NetworkManager {member}: {name}: {detail}",
            code=codes.PORT_NOT_AVAILABLE if name.endswith("ServiceUnknown") else codes.VPN_FAILED,
        )
    return reply.body[0] if reply.body else None


async def _get(bus: MessageBus, path: str, interface: str, name: str) -> Any:
    value = await _call(bus, path, PROPERTIES, "Get", "ss", [interface, name])
    return value.value if isinstance(value, Variant) else value


async def _wait_gone(bus: MessageBus, active: str, limit: float = 15.0) -> None:
    """Wait until NetworkManager has finished deactivating ``active`` (a real NetworkManager
    answers DeactivateConnection while the VPN is still ``deactivating``, its tunnel device
    still there; a redial must not race it). Bounded: after ``limit`` seconds hang-up returns."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        try:
            state = await _get(bus, active, ACTIVE_IFACE, "State")
        except DialError:
            return  # the active connection object is gone
        if state == DEACTIVATED:
            return
        await asyncio.sleep(0.05)


async def _find_connection(bus: MessageBus, wanted: str) -> str:
    """The settings path of the connection whose UUID or id is ``wanted``."""
    if _UUID.fullmatch(wanted):
        with contextlib.suppress(NMError):
            return str(
                await _call(
                    bus, SETTINGS_PATH, SETTINGS_IFACE, "GetConnectionByUuid", "s", [wanted]
                )
            )
    ids: list[str] = []
    for path in await _call(bus, SETTINGS_PATH, SETTINGS_IFACE, "ListConnections"):
        settings = await _call(bus, path, CONNECTION_IFACE, "GetSettings")
        connection = settings.get("connection", {})
        conn_id = connection["id"].value if "id" in connection else ""
        ids.append(conn_id)
        if wanted in (conn_id, connection["uuid"].value if "uuid" in connection else ""):
            return str(path)
    raise DialError(
        f"NetworkManager has no connection {wanted!r} (it has: {', '.join(ids) or 'none'})",
        code=codes.BAD_ENTRY,
        retryable=False,
    )


async def _watch(bus: MessageBus, active: str, queue: asyncio.Queue[tuple[str, list[Any]]]) -> None:
    """Queue the active connection's state changes and its removal from ActiveConnections."""
    for rule in (
        f"type='signal',interface='{ACTIVE_IFACE}',member='StateChanged',path='{active}'",
        f"type='signal',interface='{PROPERTIES}',member='PropertiesChanged',path='{NM_PATH}'",
    ):
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )

    def handler(message: Message) -> None:
        if message.message_type != MessageType.SIGNAL:
            return
        if message.member == "StateChanged" and message.path == active:
            queue.put_nowait(("state", list(message.body)))
        elif message.member == "PropertiesChanged" and message.path == NM_PATH:
            changed = message.body[1] if len(message.body) > 1 else {}
            if "ActiveConnections" in changed and active not in changed["ActiveConnections"].value:
                queue.put_nowait(("gone", []))

    bus.add_message_handler(handler)


async def _wait_activated(
    bus: MessageBus, active: str, signals: asyncio.Queue[tuple[str, list[Any]]]
) -> None:
    state = int(await _get(bus, active, ACTIVE_IFACE, "State"))
    while state != ACTIVATED:
        if state in (DEACTIVATING, DEACTIVATED):
            raise DialError(
                "NetworkManager gave up activating the connection", code=codes.VPN_FAILED
            )
        kind, body = await signals.get()
        if kind == "gone":
            raise DialError(
                "NetworkManager dropped the connection while activating", code=codes.VPN_FAILED
            )
        state, reason = int(body[0]), int(body[1])
        if state in (DEACTIVATING, DEACTIVATED):
            words = REASONS.get(reason, (DownReason.ERROR, f"reason {reason}"))[1]
            code = codes.AUTHENTICATION_FAILURE if reason in (9, 10) else codes.VPN_FAILED
            raise DialError(f"NetworkManager could not activate the connection: {words}", code=code)


async def _link_info(bus: MessageBus, entry: DialEntry, active: str) -> LinkInfo:
    conn_id = str(await _get(bus, active, ACTIVE_IFACE, "Id"))
    conn_type = str(await _get(bus, active, ACTIVE_IFACE, "Type"))
    devices = await _get(bus, active, ACTIVE_IFACE, "Devices")
    interface = None
    if devices:
        interface = str(await _get(bus, devices[0], DEVICE_IFACE, "Interface"))
    client_ip = gateway = None
    with contextlib.suppress(DialError, KeyError, IndexError, TypeError):
        config = await _get(bus, active, ACTIVE_IFACE, "Ip4Config")
        if config and config != "/":
            addresses = await _get(
                bus, config, "org.freedesktop.NetworkManager.IP4Config", "AddressData"
            )
            client_ip = addresses[0]["address"].value
            gateway = await _get(bus, config, "org.freedesktop.NetworkManager.IP4Config", "Gateway")
    return LinkInfo(
        entry=entry.name,
        interface=interface,
        client_ip=client_ip,
        server_ip=gateway or None,
        tunnel_server=None,
        handle={"active": active, "connection": conn_id, "type": conn_type},
    )
