"""The SSTP dialer: Debian's ``sstpc`` (sstp-client) with pppd, for Windows RAS entries whose
``VpnStrategy`` says SSTP (5, 6) and Azure's default point-to-site profiles.

SSTP is PPP inside TLS on port 443: ``sstpc`` makes the TLS connection and starts pppd, which
needs PPP in the kernel (``/dev/ppp``). Where ``/dev/ppp`` does not open (kernels without
``ppp_generic``, such as the test machines), dialing fails at once with that reason, never with a
redial. The argv, the pppd options file and that refusal are what the tests check here.

Settings of an entry: ``config`` (required), ``netns``, ``timeout`` (seconds to wait for the PPP
interface, default 30). The config file is opencm's own (``key = value``, ``#`` comments, file
names relative to it)::

    server = azuregateway-1.vpn.azure.com     # host[:port] (RAS PhoneNumber)
    ca = VpnServerRoot.crt                    # optional: the CA that signs the gateway
    auth = mschapv2 | eap-tls                 # RAS CustomAuthKey 13 → eap-tls (default mschapv2)
    cert = client.crt                         # eap-tls
    key = client.key                          # eap-tls (mode 0600)

The user name and password (``mschapv2``) go into a pppd options file, mode 0600 in the link's
0700 run folder, never on a command line. Each link has its own ``--ipparam`` (sstpc's socket
name), so two never clash.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

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
from opencm.links.modem import ppp_available
from opencm.links.settings import (
    check_seconds,
    config_settings,
    existing_netns,
    link_config_choice,
    link_config_files,
    read_link_config,
)
from opencm.links.tasks import LinkState
from opencm.process import end_async_child

SETTINGS = ("config", "netns", "timeout")
CONFIG_KEYS = ("server", "ca", "auth", "cert", "key")
AUTH_METHODS = ("mschapv2", "eap-tls")
RUNDIR_PREFIX = "sstp-"
PLUGIN = "sstp-pppd-plugin.so"


@dataclass(frozen=True)
class SstpConfig:
    server: str
    auth: str = "mschapv2"
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def parse_sstp_config(path: Path) -> SstpConfig:
    """Read the link's config; InputError names the file, line or key and what was expected."""
    values = read_link_config(path, CONFIG_KEYS, what="SSTP")
    server = values.get("server", "")
    if not server or any(c.isspace() for c in server) or server.startswith("-"):
        raise InputError("server is missing or not a host name", path=path, field="server")
    auth = link_config_choice(path, values, "auth", AUTH_METHODS, "mschapv2")
    files = link_config_files(path, values, ("ca", "cert", "key"))
    if auth == "eap-tls" and not ("cert" in files and "key" in files):
        raise InputError("auth eap-tls needs cert and key", path=path, field="cert")
    return SstpConfig(server, auth, files.get("ca"), files.get("cert"), files.get("key"))


def _quoted(value: str) -> str:
    """A pppd options-file word: double-quoted, with ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pppd_options(config: SstpConfig, credentials: Credentials, socket_name: str) -> str:
    """The pppd options file sstpc hands to pppd (``file`` option), one option per line."""
    lines = [
        f"plugin {PLUGIN}",
        f"sstp-sock /var/run/sstpc/sstpc-{socket_name}",
        "nodetach",
        "noauth",
        "nodefaultroute",
        "usepeerdns",
        "noipdefault",
        "refuse-pap",
        "refuse-chap",
        "refuse-mschap",
        "refuse-eap" if config.auth == "mschapv2" else "refuse-mschap-v2",
        "nobsdcomp",
        "nodeflate",
    ]
    if credentials.username:
        lines.append(f"user {_quoted(credentials.username)}")
    if config.auth == "mschapv2" and credentials.password is not None:
        lines.append(f"password {_quoted(credentials.password)}")
    if config.auth == "eap-tls":
        assert config.cert is not None and config.key is not None
        lines += [f"cert {_quoted(str(config.cert))}", f"key {_quoted(str(config.key))}"]
        if config.ca is not None:
            lines.append(f"ca {_quoted(str(config.ca))}")
    return "\n".join(lines) + "\n"


def sstpc_argv(config: SstpConfig, options: Path, socket_name: str) -> list[str]:
    """``sstpc`` in the foreground: TLS to the server, then pppd with the options file."""
    argv = ["sstpc", "--log-stderr", "--log-level", "2", "--ipparam", socket_name]
    if config.ca is not None:
        argv += ["--ca-cert", str(config.ca)]
    return [*argv, config.server, "file", str(options)]


def _ppp_interface(netns: str | None) -> tuple[str, str] | None:
    argv = ["ip", *(["-n", netns] if netns else []), "-j", "addr", "show"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    try:
        links = json.loads(done.stdout or "[]")
    except ValueError:
        return None
    for link in links:
        if str(link.get("ifname", "")).startswith("ppp"):
            for info in link.get("addr_info", []):
                if info.get("family") == "inet":
                    return str(link["ifname"]), str(info.get("local"))
    return None


@dataclass(eq=False)
class _Link(LinkState):
    entry: DialEntry
    process: asyncio.subprocess.Process
    rundir: Path


class SSTPDialer(LinkDialer[_Link]):
    """The ``sstp`` built-in dialer (see the module documentation).

    No dialog of its own: the session asks for the user name and password; nothing is stored
    per entry beyond a running link's run folder.
    """

    name = "sstp"
    profile_keys = ProfileKeys(required=("Config",), netns=True)
    helper = "sstpc"
    rundir_prefix = RUNDIR_PREFIX

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        entry = self.edit_entry(entry)
        netns = existing_netns(entry)
        config = parse_sstp_config(Path(entry.settings["config"]))
        if shutil.which("sstpc") is None:
            raise DialError(
                "sstpc is not installed (Debian: sstp-client)",
                code=codes.BAD_ENTRY,
                retryable=False,
            )
        if not ppp_available():
            raise DialError(
                f"{entry.name}: SSTP runs PPP inside TLS, and this kernel has no PPP"
                " (/dev/ppp does not open): no redial can fix that",
                code=codes.BAD_ENTRY,
                retryable=False,
            )
        if config.auth == "mschapv2" and not (credentials.username and credentials.password):
            raise DialError(
                f"{entry.name}: SSTP needs a user name and password",
                code=codes.AUTHENTICATION_FAILURE,
                retryable=False,
            )
        rundir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=RUNDIR_PREFIX))
        socket_name = f"opencm-{secrets.token_hex(4)}"
        options = rundir / "options"
        await asyncio.to_thread(
            _write_secret, options, pppd_options(config, credentials, socket_name)
        )
        process = await proc.spawn(
            proc.netns_argv(netns, sstpc_argv(config, options, socket_name)),
            log_path=rundir / "sstpc.log",
        )
        link = _Link(entry, process, rundir, on_down=on_down)
        timeout = float(entry.settings.get("timeout") or 30)
        async with self._coming_up(rundir.name, link):
            try:
                async with asyncio.timeout(timeout):
                    while (found := await asyncio.to_thread(_ppp_interface, netns)) is None:
                        if process.returncode is not None:
                            raise DialError(
                                f"{entry.name}: sstpc exited ({process.returncode})",
                                code=codes.VPN_FAILED,
                            )
                        await asyncio.sleep(0.1)
            except TimeoutError:
                raise DialError(
                    f"{entry.name}: no PPP link within {timeout:g} s", code=codes.VPN_FAILED
                ) from None
        interface, address = found
        link.up = True
        link.tasks.spawn(self._watch_process(link))
        return LinkInfo(
            entry=entry.name,
            interface=interface,
            client_ip=address,
            tunnel_server=config.server,
            handle={
                "id": rundir.name,
                "pid": str(process.pid),
                "rundir": str(rundir),
                "netns": netns or "",
            },
        )

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        settings = config_settings(
            entry,
            SETTINGS,
            needs="an SSTP entry needs 'config' (the link's config file)",
            no_such="no such SSTP config",
            check=parse_sstp_config,
        )
        check_seconds(entry, settings, ["timeout"])
        return replace(entry, settings=settings)

    async def _watch_process(self, link: _Link) -> None:
        status = await link.process.wait()
        down = LinkDown(DownReason.PROCESS_EXITED, f"sstpc exited ({status})")
        self._report_down(link, down)

    async def _stop(self, link: _Link) -> None:
        await end_async_child(link.process)
        shutil.rmtree(link.rundir, ignore_errors=True)


def _write_secret(path: Path, text: str) -> None:
    path.parent.chmod(0o700)
    path.touch(mode=0o600)
    path.write_text(text)


__all__ = ["SSTPDialer", "SstpConfig", "parse_sstp_config", "pppd_options", "sstpc_argv"]
