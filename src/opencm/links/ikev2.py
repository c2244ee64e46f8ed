"""The IKEv2 dialer: a private strongSwan charon per link, driven over VICI.

Windows profiles whose RAS entry says IKEv2 (``VpnStrategy`` 7, 8 or 14, Azure's certificate
point-to-site) connect through this link. Each link starts its own charon (``links/charon.py``:
own config, VICI socket and pid file, so two never clash), loads the connection, the
certificates and the secrets over VICI, and initiates. ESP runs in userspace through
``kernel-libipsec`` with UDP encapsulation.

Settings of an entry:

``config``
    The link's config file (below), required.
``netns``
    Run charon inside this network namespace.
``dead_peer_after``
    Seconds between dead-peer-detection probes (default 1). charon retransmits a probe
    ``retransmit_tries`` times a second apart before it gives up; the link then reports
    ``peer-gone``.
``timeout``
    Seconds for the IKE and first CHILD SA to come up (default 15).

The config file (``docs/dialers.md``): ``key = value`` lines, ``#`` comments; file names are
relative to the config file::

    server = azuregateway-1.vpn.azure.com   # the VPN gateway (RAS PhoneNumber)
    remote_id = azuregateway-1.vpn.azure.com  # the gateway's certificate name (default: server)
    auth = pubkey | eap-tls | eap-mschapv2    # RAS CustomAuthKey 13 → eap-tls, 26 → eap-mschapv2
    ca = ca.crt                              # verifies the gateway
    cert = client.crt                         # pubkey / eap-tls
    key = client.key                          # pubkey / eap-tls (mode 0600)
    local_id = opencm-lab-client              # optional (default: the certificate's subject)
    remote_ts = 10.1.0.0/16, 10.2.3.0/24      # optional (default 0.0.0.0/0; the gateway narrows)

``eap-mschapv2`` takes the user name and password the session asks for.

The link's interface is charon's TUN device (``ipsec0`` in the link's namespace), its address
the virtual IP the gateway assigned. DNS servers it assigns are reported in the link's handle
(``dns``) and the session log; the system resolver is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from opencm.clock import Clock, RealClock
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
from opencm.links.base import LinkDialer
from opencm.links.charon import (
    CharonInstance,
    CharonTuning,
    missing_programs,
    start_charon,
    stop_charon,
)
from opencm.links.settings import (
    check_seconds,
    config_settings,
    existing_netns,
    link_config_choice,
    link_config_files,
    read_link_config,
)
from opencm.links.tasks import LinkState

SETTINGS = ("config", "netns", "dead_peer_after", "timeout")
CONFIG_KEYS = ("server", "remote_id", "auth", "ca", "cert", "key", "local_id", "remote_ts")
AUTH_METHODS = ("pubkey", "eap-tls", "eap-mschapv2")
_FILE_KEYS = ("ca", "cert", "key")
RUNDIR_PREFIX = "ikev2-"
CONNECTION = "opencm"


@dataclass(frozen=True)
class IkeConfig:
    server: str
    remote_id: str
    auth: str
    ca: Path
    cert: Path | None = None
    key: Path | None = None
    local_id: str | None = None
    remote_ts: tuple[str, ...] = ("0.0.0.0/0",)


def parse_ike_config(path: Path) -> IkeConfig:
    """Read the link's config; raises InputError naming the file, line and what was expected."""
    values = read_link_config(path, CONFIG_KEYS, what="IKEv2")
    for required in ("server", "ca"):
        if not values.get(required):
            raise InputError(f"{required} is missing", path=path, field=required)
    auth = link_config_choice(path, values, "auth", AUTH_METHODS, "pubkey")
    files = link_config_files(path, values, _FILE_KEYS)
    if auth in ("pubkey", "eap-tls") and not ("cert" in files and "key" in files):
        raise InputError(f"auth {auth} needs cert and key", path=path, field="cert")
    remote_ts: tuple[str, ...] = ("0.0.0.0/0",)
    if values.get("remote_ts"):
        items = [item.strip() for item in values["remote_ts"].split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item)
            except ValueError:
                raise InputError(
                    f"expected networks like 10.1.0.0/16, got {item!r}",
                    path=path,
                    field="remote_ts",
                ) from None
        remote_ts = tuple(items)
    return IkeConfig(
        server=values["server"],
        remote_id=values.get("remote_id") or values["server"],
        auth=auth,
        ca=files["ca"],
        cert=files.get("cert"),
        key=files.get("key"),
        local_id=values.get("local_id") or None,
        remote_ts=remote_ts,
    )


def connection_dict(config: IkeConfig, dpd: float, credentials: Credentials) -> dict[str, Any]:
    """The VICI ``load-conn`` message for the link."""
    local: dict[str, Any] = {"auth": config.auth}
    if config.cert is not None:
        local["certs"] = [config.cert.read_bytes()]
    if config.auth == "eap-mschapv2":
        local["eap_id"] = credentials.username or ""
        local["id"] = credentials.username or ""
    elif config.local_id:
        local["id"] = config.local_id
    return {
        CONNECTION: {
            "version": "2",
            "remote_addrs": [config.server],
            "vips": ["0.0.0.0"],
            "encap": "yes",
            "dpd_delay": f"{dpd:g}s",
            "local": local,
            "remote": {
                "auth": "pubkey",
                "id": config.remote_id,
                "cacerts": [config.ca.read_bytes()],
            },
            "children": {CONNECTION: {"remote_ts": list(config.remote_ts)}},
        }
    }


def _vici_load(instance: CharonInstance, config: IkeConfig, conn: Mapping[str, Any],
               credentials: Credentials) -> None:  # fmt: skip
    with instance.session() as session:
        if config.key is not None:
            session.load_key({"type": "any", "data": config.key.read_bytes()})
        if config.auth == "eap-mschapv2":
            session.load_shared(
                {
                    "type": "EAP",
                    "data": credentials.password or "",
                    "owners": [credentials.username or ""],
                }
            )
        session.load_conn(dict(conn))


def _vici_initiate(instance: CharonInstance, timeout: float) -> list[str]:
    """Initiate and return charon's log lines for it; raises with the lines on failure."""
    import vici

    lines: list[str] = []
    with instance.session() as session:
        try:
            for event in session.initiate(
                {"child": CONNECTION, "ike": CONNECTION, "timeout": str(int(timeout * 1000))}
            ):
                message = event.get("msg")
                if isinstance(message, bytes):
                    lines.append(message.decode(errors="replace"))
        except vici.exception.CommandException as error:
            raise _InitiateFailed(str(error), lines) from None
    return lines


class _InitiateFailed(Exception):
    def __init__(self, reason: str, lines: list[str]) -> None:
        super().__init__(reason)
        self.lines = lines


def _vici_ike_state(instance: CharonInstance) -> dict[str, Any] | None:
    """The link's IKE SA as VICI lists it (bytes decoded), or None when there is none."""
    with instance.session() as session:
        for sa in session.list_sas({"ike": CONNECTION}):
            ike = sa.get(CONNECTION)
            if ike is not None:
                return _decode(ike)  # type: ignore[no-any-return]
    return None


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _decode(item) for key, item in value.items()}
    return value


def _interface_with(netns: str | None, address: str) -> str | None:
    argv = ["ip", *(["-n", netns] if netns else []), "-j", "addr", "show"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    with contextlib.suppress(ValueError):
        for link in json.loads(done.stdout or "[]"):
            for info in link.get("addr_info", []):
                if info.get("local") == address:
                    return str(link.get("ifname"))
    return None


def _dns_servers(instance: CharonInstance) -> list[str]:
    try:
        text = (instance.rundir / "resolv.conf").read_text()
    except OSError:
        return []
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver ")]


@dataclass(eq=False)
class _Link(LinkState):
    entry: DialEntry
    instance: CharonInstance


class IKEv2Dialer(LinkDialer[_Link]):
    """The ``ikev2`` built-in dialer (see the module documentation).

    No dialog of its own: the session asks for the user name and password that
    ``eap-mschapv2`` needs, and certificates come from the config; nothing is stored per entry.
    """

    name = "ikev2"
    profile_keys = ProfileKeys(required=("Config",), netns=True)
    helper = "charon"
    rundir_prefix = RUNDIR_PREFIX

    def __init__(self, *, poll_interval: float = 0.5, clock: Clock | None = None) -> None:
        super().__init__()
        self._poll = poll_interval
        self._clock = clock or RealClock()

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        entry = self.edit_entry(entry)
        settings = entry.settings
        netns = existing_netns(entry)
        missing = missing_programs()
        if missing:
            raise DialError(
                f"strongSwan is not installed ({', '.join(missing)} missing)",
                code=codes.BAD_ENTRY,
                retryable=False,
            )
        config = parse_ike_config(Path(settings["config"]))
        if config.auth == "eap-mschapv2" and not (credentials.username and credentials.password):
            raise DialError(
                f"{entry.name}: EAP-MSCHAPv2 needs a user name and password",
                code=codes.AUTHENTICATION_FAILURE,
                retryable=False,
            )
        dpd = float(settings.get("dead_peer_after") or 1)
        timeout = float(settings.get("timeout") or 15)
        try:
            instance = await start_charon(netns, CharonTuning(), prefix=RUNDIR_PREFIX)
        except (RuntimeError, TimeoutError) as error:
            raise DialError(
                f"{entry.name}: charon did not start: {error}", code=codes.VPN_FAILED
            ) from None
        link = _Link(entry, instance, on_down=on_down)
        async with self._coming_up(instance.rundir.name, link):
            try:
                conn = connection_dict(config, dpd, credentials)
                await asyncio.to_thread(_vici_load, instance, config, conn, credentials)
                async with asyncio.timeout(timeout + 2):
                    await asyncio.to_thread(_vici_initiate, instance, timeout)
                state = await asyncio.to_thread(_vici_ike_state, instance)
            except _InitiateFailed as failed:
                detail = "; ".join(line for line in failed.lines[-4:] if line) or str(failed)
                auth = any("authentication" in line.lower() for line in failed.lines)
                raise DialError(
                    f"{entry.name}: IKEv2 to {config.server} failed: {detail}",
                    code=codes.AUTHENTICATION_FAILURE if auth else codes.VPN_FAILED,
                ) from None
            except TimeoutError:
                raise DialError(
                    f"{entry.name}: no IKEv2 answer from {config.server} within {timeout:g} s",
                    code=codes.VPN_FAILED,
                ) from None
        vips = (state or {}).get("local-vips") or []
        client_ip = str(vips[0]) if vips else None
        interface = (
            await asyncio.to_thread(_interface_with, netns, client_ip) if client_ip else None
        )
        dns = _dns_servers(instance)
        link.up = True
        link.tasks.spawn(self._watch(link))
        link.tasks.spawn(self._watch_process(link))
        return LinkInfo(
            entry=entry.name,
            interface=interface,
            client_ip=client_ip,
            server_ip=str((state or {}).get("remote-host") or "") or None,
            tunnel_server=config.server,
            handle={
                "id": instance.rundir.name,
                "pid": str(instance.process.pid),
                "netns": netns or "",
                "rundir": str(instance.rundir),
                "dns": ",".join(dns),
            },
        )

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        settings = config_settings(
            entry,
            SETTINGS,
            needs="an IKEv2 entry needs 'config' (the link's config file)",
            no_such="no such IKEv2 config",
            check=parse_ike_config,
        )
        check_seconds(entry, settings, ["dead_peer_after", "timeout"])
        return replace(entry, settings=settings)

    # -- internals -----------------------------------------------------------------------------

    async def _watch(self, link: _Link) -> None:
        """Poll the IKE SA: charon deletes it when dead-peer detection gives up."""
        while not link.closing:
            await self._clock.sleep(self._poll)
            try:
                state = await asyncio.to_thread(_vici_ike_state, link.instance)
            except OSError:
                return  # charon is going away; _watch_process reports why
            if state is None or state.get("state") != "ESTABLISHED":
                self._report_down(
                    link,
                    LinkDown(
                        DownReason.PEER_GONE,
                        "the IKEv2 gateway stopped answering (dead-peer detection closed the SA)",
                    ),
                )
                return

    async def _watch_process(self, link: _Link) -> None:
        status = await link.instance.process.wait()
        down = LinkDown(DownReason.PROCESS_EXITED, f"charon exited with status {status}")
        self._report_down(link, down)

    async def _stop(self, link: _Link) -> None:
        await stop_charon(link.instance)


__all__ = ["IKEv2Dialer", "IkeConfig", "connection_dict", "parse_ike_config"]
