"""The WireGuard dialer: wireguard-go (userspace) configured with ``wg setconf`` and ``ip``.

This kernel has no WireGuard module, so the tunnel is wireguard-go's TUN device; opencm runs it
in the foreground (``wireguard-go -f IF``) to hold its PID, loads the keys and peers with
``wg setconf``, then adds the addresses and brings the device up with ``ip``. Hanging up ends the
process, and the device and its UAPI socket disappear with it.

Settings of an entry:

``config``
    A WireGuard config as ``wg-quick`` reads it: ``wg setconf`` syntax plus ``Address`` and
    ``MTU`` in ``[Interface]``. ``DNS`` is ignored (opencm does not rewrite resolv.conf);
    ``PreUp``/``PostUp``/``PreDown``/``PostDown`` are refused: they are shell commands, and
    opencm runs programs only as custom actions.
``netns``
    Run the tunnel inside this network namespace.
``interface``
    Device name (default ``ocmwg`` + 4 random hex digits; names must be unique machine-wide
    because wireguard-go's socket is ``/var/run/wireguard/IF.sock``).
``dead_peer_after``
    Seconds without received data while we keep sending before the peer counts as gone
    (default 3; needs ``PersistentKeepalive`` on both ends, see below).
``timeout``
    Seconds to wait for the first handshake when a peer has ``PersistentKeepalive`` (default 10).

WireGuard has no connection state. The only quick signal that the other end is gone is that
``rx_bytes`` stops growing while ``tx_bytes`` (our keepalives) still grows; handshake age reacts
only after 15 s or more. :class:`DeadPeerDetector` implements that rule on an injectable clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from opencm.clock import Clock, RealClock
from opencm.errors import InputError
from opencm.links import codes, proc
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
from opencm.links.base import LinkDialer
from opencm.links.settings import (
    check_seconds,
    config_settings,
    existing_netns,
)
from opencm.links.tasks import LinkState
from opencm.process import end_async_child

SETTINGS = ("config", "netns", "interface", "dead_peer_after", "timeout")
UAPI_DIR = Path("/var/run/wireguard")
#: Keys that only wg-quick understands; opencm applies Address and MTU itself.
QUICK_ONLY = {"address", "mtu", "dns", "table", "saveconfig"}
SHELL_HOOKS = {"preup", "postup", "predown", "postdown"}


class DeadPeerDetector:
    """rx stalls while tx grows for longer than ``window`` seconds → the peer is gone.

    Feed it the byte counters at any pace; it remembers when rx last moved and how much was sent
    since. Sending nothing (an idle link without keepalives) never counts as a dead peer.
    """

    def __init__(self, window: float, clock: Clock) -> None:
        self.window = window
        self._clock = clock
        self._rx: int | None = None
        self._rx_since = 0.0
        self._tx_at_rx = 0

    def update(self, rx: int, tx: int) -> bool:
        """Record the counters; True when the peer must be considered gone."""
        now = self._clock.monotonic()
        if self._rx is None or rx != self._rx:
            self._rx, self._rx_since, self._tx_at_rx = rx, now, tx
            return False
        return tx > self._tx_at_rx and now - self._rx_since > self.window

    def silent_for(self) -> float:
        return self._clock.monotonic() - self._rx_since


@dataclass(frozen=True)
class WireGuardConfig:
    """A parsed config: the part for ``wg setconf`` and the addresses for ``ip``."""

    setconf_text: str
    addresses: tuple[str, ...]
    mtu: int | None
    endpoints: tuple[str, ...]
    keepalive: bool


@dataclass(frozen=True)
class ConfigLine:
    """One line of a wg-quick config: a ``[Section]`` header, a key, or neither (blank)."""

    number: int
    raw: str
    #: The section the line is in, lower case (``interface`` / ``peer``).
    section: str
    #: The header's text on a header line.
    header: str | None = None
    key: str | None = None
    value: str = ""


def config_lines(path: Path, lines: list[str]) -> Iterator[ConfigLine]:
    """The lines of a wg-quick config, with the format's own errors raised naming the line."""
    section = ""
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            yield ConfigLine(number, raw, section)
            continue
        if text.startswith("["):
            section = text.strip("[]").strip().lower()
            if section not in ("interface", "peer"):
                raise InputError(f"unknown section {text}", path=path, line=number)
            yield ConfigLine(number, raw, section, header=text)
            continue
        key, sep, value = (part.strip() for part in text.partition("="))
        if not sep or not section:
            raise InputError(
                "expected 'Key = Value' inside [Interface] or [Peer]", path=path, line=number
            )
        yield ConfigLine(number, raw, section, key=key, value=value)


def parse_config(path: Path) -> WireGuardConfig:
    """Split a wg-quick style file; raise :class:`InputError` naming the line on bad input."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the WireGuard config: {error}", path=path) from None
    kept: list[str] = []
    addresses: list[str] = []
    endpoints: list[str] = []
    mtu: int | None = None
    keepalive = False
    for item in config_lines(path, lines):
        number, section, key, value = item.number, item.section, item.key, item.value
        if key is None:
            if item.header:
                kept.append(item.header)
            continue
        lower = key.lower()
        if lower in SHELL_HOOKS:
            raise InputError(
                f"{key} runs shell commands; use opencm custom actions instead",
                path=path,
                line=number,
            )
        if section == "interface" and lower in QUICK_ONLY:
            if lower == "address":
                addresses += [item.strip() for item in value.split(",") if item.strip()]
            elif lower == "mtu":
                if not value.isdigit():
                    raise InputError(f"MTU {value!r} is not a number", path=path, line=number)
                mtu = int(value)
            continue
        if section == "peer" and lower == "endpoint":
            endpoints.append(value)
        if section == "peer" and lower == "persistentkeepalive" and value not in ("0", "off"):
            keepalive = True
        kept.append(f"{key} = {value}")
    if not addresses:
        raise InputError("[Interface] needs an Address for the tunnel", path=path)
    return WireGuardConfig(
        "\n".join(kept) + "\n", tuple(addresses), mtu, tuple(endpoints), keepalive
    )


async def uapi_get(interface: str) -> dict[str, list[str]]:
    """Read the device state through wireguard-go's UAPI socket (``get=1``)."""
    reader, writer = await asyncio.open_unix_connection(str(UAPI_DIR / f"{interface}.sock"))
    try:
        writer.write(b"get=1\n\n")
        await writer.drain()
        values: dict[str, list[str]] = {}
        while line := (await reader.readline()).decode().strip():
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
            if key == "errno":
                break
        return values
    finally:
        writer.close()


def totals(state: Mapping[str, list[str]]) -> tuple[int, int, int]:
    """(rx bytes, tx bytes, newest handshake second) summed over all peers."""
    rx = sum(int(value) for value in state.get("rx_bytes", []))
    tx = sum(int(value) for value in state.get("tx_bytes", []))
    handshake = max((int(value) for value in state.get("last_handshake_time_sec", [])), default=0)
    return rx, tx, handshake


@dataclass(eq=False)
class _Link(LinkState):
    entry: DialEntry
    interface: str
    netns: str | None
    process: asyncio.subprocess.Process
    rundir: Path


class WireGuardDialer(LinkDialer[_Link]):
    """The ``wireguard`` built-in dialer (see the module documentation for its settings).

    WireGuard authenticates with keys only, so there is nothing to ask the user; and nothing to
    forget when an entry goes: the keys live in the entry's config file, which the admin owns.
    """

    name = "wireguard"
    profile_keys = ProfileKeys(required=("Config",), netns=True)
    helper = "wireguard-go"
    rundir_prefix = "wg-"

    def __init__(
        self,
        *,
        poll_interval: float = 0.5,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self._poll = poll_interval
        self._clock = clock or RealClock()

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        entry = self.edit_entry(entry)
        settings = entry.settings
        netns = existing_netns(entry)
        missing = [tool for tool in ("wireguard-go", "wg", "ip") if shutil.which(tool) is None]
        if missing:
            raise DialError(
                f"{', '.join(missing)} not installed", code=codes.BAD_ENTRY, retryable=False
            )
        config = parse_config(Path(settings["config"]))
        interface = settings.get("interface") or f"ocmwg{secrets.token_hex(2)}"
        if await _uapi_in_use(interface):
            raise DialError(
                f"{entry.name}: WireGuard interface {interface} is already in use",
                code=codes.PORT_NOT_AVAILABLE,
            )
        rundir = Path(tempfile.mkdtemp(prefix="wg-"))
        process = await proc.spawn(
            proc.netns_argv(netns, ["wireguard-go", "-f", interface]),
            log_path=rundir / "wireguard-go.log",
        )
        link = _Link(entry, interface, netns, process, rundir, on_down=on_down)
        timeout = float(settings.get("timeout") or 10)
        async with self._coming_up(rundir.name, link):
            try:
                async with asyncio.timeout(timeout):
                    await self._configure(link, config)
                    if config.keepalive:
                        await self._wait_for_handshake(link)
            except TimeoutError:
                raise DialError(
                    f"{entry.name}: no handshake with the WireGuard peer within {timeout:g} s",
                    code=codes.VPN_FAILED,
                ) from None
        link.up = True
        window = float(settings.get("dead_peer_after") or 3)
        link.tasks.spawn(self._watch(link, window))
        link.tasks.spawn(self._watch_process(link))
        endpoint = config.endpoints[0].rsplit(":", 1)[0].strip("[]") if config.endpoints else None
        return LinkInfo(
            entry=entry.name,
            interface=interface,
            client_ip=config.addresses[0].split("/")[0],
            server_ip=None,
            tunnel_server=endpoint,
            handle={
                "id": rundir.name,
                "pid": str(process.pid),
                "interface": interface,
                "netns": netns or "",
                "rundir": str(rundir),
            },
        )

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        settings = config_settings(
            entry,
            SETTINGS,
            needs="a WireGuard entry needs 'config' (the .conf file)",
            no_such="no such WireGuard config",
            check=parse_config,
        )
        name = settings.get("interface", "")
        if name and (len(name) > 15 or not name.replace("-", "").replace("_", "").isalnum()):
            raise InputError(
                f"{name!r} is not an interface name (up to 15 letters, digits, '-', '_')",
                field=f"{entry.name}.interface",
            )
        check_seconds(entry, settings, ["dead_peer_after", "timeout"])
        return replace(entry, settings=settings)

    # -- internals -----------------------------------------------------------------------------

    async def _configure(self, link: _Link, config: WireGuardConfig) -> None:
        socket = UAPI_DIR / f"{link.interface}.sock"
        # The socket file appears when wireguard-go binds it, a moment before it listens; `wg`
        # connecting in between is refused and falls back to the kernel module ("Protocol not
        # supported"), so wait until a connection is accepted, not just for the file.
        while not await _uapi_accepts(socket):
            if link.process.returncode is not None:
                log = (link.rundir / "wireguard-go.log").read_text(errors="replace")
                raise DialError(
                    f"{link.entry.name}: wireguard-go exited ({link.process.returncode}): "
                    f"{log.strip().splitlines()[-1:] or ''}",
                    code=codes.VPN_FAILED,
                )
            await asyncio.sleep(0.005)
        setconf = link.rundir / "setconf.conf"
        setconf.touch(mode=0o600)
        setconf.write_text(config.setconf_text)
        ip = ["ip", "-n", link.netns] if link.netns else ["ip"]
        await _run(proc.netns_argv(link.netns, ["wg", "setconf", link.interface, str(setconf)]))
        for address in config.addresses:
            await _run([*ip, "address", "add", address, "dev", link.interface])
        if config.mtu:
            await _run([*ip, "link", "set", link.interface, "mtu", str(config.mtu)])
        await _run([*ip, "link", "set", link.interface, "up"])

    async def _wait_for_handshake(self, link: _Link) -> None:
        while True:
            _, _, handshake = totals(await uapi_get(link.interface))
            if handshake > 0:
                return
            await asyncio.sleep(0.02)

    async def _watch(self, link: _Link, window: float) -> None:
        detector = DeadPeerDetector(window, self._clock)
        while not link.closing:
            try:
                rx, tx, _ = totals(await uapi_get(link.interface))
            except OSError:
                return  # the device is going away; _watch_process reports why
            if detector.update(rx, tx):
                self._report_down(
                    link,
                    LinkDown(
                        DownReason.PEER_GONE,
                        f"no data from the WireGuard peer for {detector.silent_for():.1f} s "
                        f"while still sending (rx stalled at {rx} bytes, tx {tx})",
                    ),
                )
                return
            await self._clock.sleep(self._poll)

    async def _watch_process(self, link: _Link) -> None:
        status = await link.process.wait()
        down = LinkDown(DownReason.PROCESS_EXITED, f"wireguard-go exited with status {status}")
        self._report_down(link, down)

    async def _stop(self, link: _Link) -> None:
        await end_async_child(link.process)
        # wireguard-go removes its socket on SIGTERM, not when it was killed outright.
        with contextlib.suppress(OSError):
            (UAPI_DIR / f"{link.interface}.sock").unlink()
        shutil.rmtree(link.rundir, ignore_errors=True)


async def _uapi_accepts(path: Path) -> bool:
    """True once something accepts connections on the UAPI socket ``path``."""
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def _uapi_in_use(interface: str) -> bool:
    """True when a live wireguard-go answers on the interface's socket; a stale one is removed."""
    path = UAPI_DIR / f"{interface}.sock"
    if not path.exists():
        return False
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)  # left by a wireguard-go that was killed
        return False
    except OSError:
        return True
    writer.close()
    return True


async def _run(argv: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        raise DialError(
            f"{' '.join(argv)} failed: {err.decode(errors='replace').strip()}",
            code=codes.VPN_FAILED,
            retryable=False,
        )
