"""The OpenVPN 2.6 dialer, driven through OpenVPN's management interface.

opencm starts ``openvpn --config FILE`` in the foreground with a management socket of its own
(``--management PATH unix``) and ``--management-hold``, so that nothing happens before opencm is
listening, and ``--management-query-passwords``, so that a user name and password go over that
private socket instead of a file. It then follows ``>STATE:`` until ``CONNECTED``.

Settings of an entry:

``config``
    Path of the ``.ovpn`` file (required). Relative paths inside it are relative to its folder.
``netns``
    Run the tunnel inside this network namespace (``ip netns exec NS openvpn …``): the tunnel
    device, its routes and its traffic then exist only there. Useful to give one application a
    VPN without touching the host's routing, and what the tests do.
``remote``
    ``HOST [PORT [PROTO]]`` replaces the config's ``remote`` lines (CM's tunnel address).
``timeout``
    Seconds to wait for ``CONNECTED`` (default 30).

Once up, a drop is detected from the management interface: a ``RECONNECTING`` or ``EXITING``
state carries OpenVPN's reason (``ping-restart``, ``connection-reset``,
``server-pushed-connection-reset`` …), which becomes the :class:`LinkDown` detail; a process that
simply dies is reported as ``process-exited`` with its status. opencm then ends the client rather
than letting it reconnect on its own: redial and ``AutoReconnect`` are the session's decisions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from opencm.errors import InputError
from opencm.links import codes, proc
from opencm.links import ovpn_mgmt as mgmt
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

SETTINGS = ("config", "netns", "remote", "timeout")
DEFAULT_TIMEOUT = 30.0
#: OpenVPN asks to be released from a hold with its back-off hint N; waiting min(N, cap) keeps a
#: client whose server is gone from retrying hundreds of times a second.
HOLD_WAIT_CAP = 1.0


@dataclass(eq=False)
class _Link(LinkState):
    entry: DialEntry
    credentials: Credentials
    process: asyncio.subprocess.Process
    rundir: Path
    remote_hint: str | None
    connected: asyncio.Future[mgmt.State]
    writer: asyncio.StreamWriter | None = None
    log: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    state: str = ""
    cause: str = ""
    interface: str | None = None
    gateway: str | None = None
    counts: mgmt.ByteCount = field(default_factory=lambda: mgmt.ByteCount(0, 0))

    def send(self, command: str) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(command.encode() + b"\n")

    def fail(self, error: DialError) -> None:
        if not self.connected.done():
            self.connected.set_exception(error)

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(list(self.log)[-lines:])


class OpenVPNDialer(LinkDialer[_Link]):
    """The ``openvpn`` built-in dialer (see the module documentation for its settings).

    It needs no dialog of its own (the session asks for credentials beforehand) and keeps no
    per-entry state beyond a running link.
    """

    name = "openvpn"
    profile_keys = ProfileKeys(required=("Config",), netns=True)
    helper = "openvpn"
    rundir_prefix = "ovpn-"

    def __init__(self, *, runtime_dir: Path | None = None, hold_wait_cap: float = HOLD_WAIT_CAP):
        super().__init__()
        self._runtime_dir = runtime_dir
        self._hold_wait_cap = hold_wait_cap

    # -- the five entry points -----------------------------------------------------------------

    async def dial(
        self, entry: DialEntry, credentials: Credentials, on_down: LinkDownCallback
    ) -> LinkInfo:
        entry = self.edit_entry(entry)
        settings = entry.settings
        netns = existing_netns(entry)
        if shutil.which("openvpn") is None:
            raise DialError("openvpn is not installed", code=codes.BAD_ENTRY, retryable=False)
        base = self._runtime_dir
        if base is not None:
            base.mkdir(parents=True, exist_ok=True, mode=0o700)
        rundir = Path(tempfile.mkdtemp(prefix="ovpn-", dir=base))
        config = Path(settings["config"])
        remote = settings.get("remote")
        if remote:
            config = _config_without_remotes(config, rundir)
        socket_path = rundir / "mgmt.sock"
        argv = [
            "openvpn", "--config", str(config),
            "--management", str(socket_path), "unix",
            "--management-hold", "--management-query-passwords",
            # After the config, so that it wins: OpenVPN may run its own helpers (ip) but no
            # scripts; opencm's custom actions take their place.
            "--script-security", "1",
        ]  # fmt: skip
        if remote:
            argv += ["--remote", *remote.split()]
        process = await proc.spawn(
            proc.netns_argv(netns, argv),
            log_path=rundir / "openvpn.log",
            cwd=Path(settings["config"]).parent,
        )
        loop = asyncio.get_running_loop()
        link = _Link(
            entry, credentials, process, rundir,
            remote.split()[0] if remote else None, loop.create_future(), on_down=on_down,
        )  # fmt: skip
        link_id = rundir.name
        timeout = float(settings.get("timeout") or DEFAULT_TIMEOUT)
        async with self._coming_up(link_id, link):
            try:
                async with asyncio.timeout(timeout):
                    await self._attach(link, socket_path)
                    state = await link.connected
            except TimeoutError:
                raise DialError(
                    f"{entry.name}: no connection to the server within {timeout:g} s "
                    f"(last state {link.state or 'none'}; {link.log_tail()})",
                    code=codes.VPN_FAILED,
                ) from None
        link.up = True
        if process.returncode is not None:  # it died between CONNECTED and now
            self._drop(
                link,
                link.cause,
                reason=DownReason.PROCESS_EXITED,
                detail=f"openvpn exited ({process.returncode}) right after connecting",
            )
        if link.interface is None:
            link.interface = await _interface_with_address(netns, state.local_ip)
        return LinkInfo(
            entry=entry.name,
            interface=link.interface,
            client_ip=state.local_ip or None,
            server_ip=link.gateway,
            tunnel_server=state.remote_ip or link.remote_hint,
            handle={
                "id": link_id,
                "pid": str(process.pid),
                "management": str(socket_path),
                "netns": netns or "",
                "rundir": str(rundir),
            },
        )

    def edit_entry(self, entry: DialEntry) -> DialEntry:
        settings = config_settings(
            entry,
            SETTINGS,
            needs="an OpenVPN entry needs 'config' (the .ovpn file)",
            no_such="no such OpenVPN config file",
            check=check_config,
        )
        if settings.get("remote"):
            _check_remote(settings["remote"], f"{entry.name}.remote")
        check_seconds(entry, settings, ["timeout"])
        return replace(entry, settings=settings)

    # -- extras the session may use ------------------------------------------------------------

    def byte_counts(self, link: LinkInfo) -> tuple[int, int]:
        """Bytes (received, sent) as last reported by ``>BYTECOUNT:`` (every second)."""
        state = self._links.get(link.handle.get("id", ""))
        return (state.counts.received, state.counts.sent) if state else (0, 0)

    # -- internals -----------------------------------------------------------------------------

    async def _attach(self, link: _Link, socket_path: Path) -> None:
        """Connect to the management socket as soon as OpenVPN creates it."""
        while True:
            if link.process.returncode is not None:
                raise self._exit_error(link)
            try:
                reader, writer = await asyncio.open_unix_connection(str(socket_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(0.001)
        link.writer = writer
        # Real-time states and log lines first, so that none is missed, then the hold release:
        # OpenVPN handles commands in order. Later holds (a restart while dialling) are released
        # from the >HOLD: handler after OpenVPN's own back-off.
        link.send("state on")
        link.send("log on")
        link.send("hold release")
        link.send("bytecount 1")
        link.tasks.spawn(self._read(link, reader))
        link.tasks.spawn(self._watch_process(link))

    async def _read(self, link: _Link, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            self._handle(link, mgmt.parse_line(line.decode(errors="replace")))

    def _handle(self, link: _Link, event: mgmt.Event) -> None:
        match event:
            case mgmt.State(name="CONNECTED") as state if not link.up:
                if not link.connected.done():
                    link.connected.set_result(state)
            case mgmt.State(name=("RECONNECTING" | "EXITING") as name, description=cause):
                link.state, link.cause = name, cause
                if link.up:
                    self._drop(link, cause)
                elif cause == "auth-failure":
                    link.fail(_auth_error(link))
            case mgmt.State(name=name):
                link.state = name
            case mgmt.Hold(wait=wait):
                if not link.up and not link.closing:
                    link.tasks.spawn(
                        self._release_hold(link, min(float(wait), self._hold_wait_cap))
                    )
            case mgmt.PasswordRequest(kind=kind):
                self._answer_password(link, kind)
            case mgmt.PasswordFailed():
                link.fail(_auth_error(link))
            case mgmt.ByteCount() as counts:
                link.counts = counts
            case mgmt.Log(text=text):
                link.log.append(text)
                link.interface = link.interface or mgmt.tun_device(text)
                link.gateway = link.gateway or mgmt.pushed_gateway(text)
            case mgmt.Fatal(text=text):
                link.log.append(f"FATAL: {text}")
            case _:
                pass

    async def _release_hold(self, link: _Link, wait: float) -> None:
        if wait > 0:
            await asyncio.sleep(wait)
        if not link.closing:
            link.send("hold release")

    def _answer_password(self, link: _Link, kind: str) -> None:
        creds = link.credentials
        if kind == "Auth" and creds.username is not None and creds.password is not None:
            link.send(f'username "Auth" {mgmt.quote(creds.username)}')
            link.send(f'password "Auth" {mgmt.quote(creds.password)}')
        elif kind != "Auth" and creds.password is not None:
            link.send(f"password {mgmt.quote(kind)} {mgmt.quote(creds.password)}")
        else:
            link.fail(
                DialError(
                    f"{link.entry.name}: the server asks for {kind!r} credentials "
                    "and none were given",
                    code=codes.AUTHENTICATION_FAILURE,
                    retryable=False,
                )
            )

    async def _watch_process(self, link: _Link) -> None:
        status = await link.process.wait()
        if not link.up:
            link.fail(self._exit_error(link))
        else:
            cause = link.cause or f"exit status {status}"
            explanation = mgmt.RESTART_CAUSES.get(link.cause, "")
            self._drop(
                link,
                link.cause,
                reason=DownReason.PROCESS_EXITED if not link.cause else None,
                detail=f"openvpn exited ({cause}{': ' + explanation if explanation else ''})",
            )

    def _exit_error(self, link: _Link) -> DialError:
        if link.cause == "auth-failure":
            return _auth_error(link)
        log_text = (
            (link.rundir / "openvpn.log").read_text(errors="replace")
            if link.rundir.exists()
            else ""
        )
        last = " | ".join(log_text.strip().splitlines()[-4:]) or link.log_tail()
        return DialError(
            f"{link.entry.name}: openvpn exited with status {link.process.returncode} "
            f"before connecting: {last}",
            code=codes.VPN_FAILED,
        )

    def _drop(
        self,
        link: _Link,
        cause: str,
        *,
        reason: DownReason | None = None,
        detail: str | None = None,
    ) -> None:
        """The link went down by OpenVPN's ``cause``: reported with its explanation and the
        server, and the client ended, since reconnecting is the session's decision."""
        if reason is None:
            reason = DownReason.PEER_GONE if cause in mgmt.PEER_CAUSES else DownReason.ERROR
        if detail is None:
            explanation = mgmt.RESTART_CAUSES.get(cause, "openvpn restarted the connection")
            detail = f"{cause}: {explanation}"
        server = link.remote_hint or ""
        detail += f" (server {server})" if server else ""
        self._report_down(link, LinkDown(reason, detail))

    async def _stop(self, link: _Link) -> None:
        process = link.process
        if process.returncode is None:
            # Ask politely over the socket first: OpenVPN then runs its --down script and sends
            # an exit notification to the server.
            link.send("signal SIGTERM")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    await process.wait()
            await end_async_child(process)
        if link.writer is not None:
            link.writer.close()
        shutil.rmtree(link.rundir, ignore_errors=True)


#: The directives a client config may use. opencm runs openvpn as root, so this is an allow
#: list: anything else (scripts, plug-ins, logs, status or PID files, ``genkey``, other config
#: files, daemon mode, another management interface, credentials files sent to a server) is
#: refused, including options a later OpenVPN adds. Options that read key material (``ca``,
#: ``cert``, ``key``, …) are allowed: the admin ships that material with the profile.
ALLOWED_DIRECTIVES = frozenset(
    {
        # the link
        "client", "pull", "tls-client", "dev", "dev-type", "proto", "proto-force", "remote",
        "remote-random", "remote-random-hostname", "resolv-retry", "connect-retry",
        "connect-retry-max", "connect-timeout", "server-poll-timeout", "nobind", "bind", "lport",
        "rport", "port", "local", "float", "persist-key", "persist-tun", "persist-remote-ip",
        "persist-local-ip", "topology", "tun-mtu", "tun-mtu-extra", "tun-mtu-max", "link-mtu",
        "mssfix", "fragment", "mtu-disc", "mtu-test", "sndbuf", "rcvbuf", "fast-io", "txqueuelen",
        "keepalive", "ping", "ping-restart", "ping-exit", "ping-timer-rem", "inactive",
        "explicit-exit-notify", "disable-dco", "tun-ipv6", "mark", "socket-flags",
        "single-session", "remap-usr1", "user", "group", "nice",
        # what the server may push, and how it is applied
        "redirect-gateway", "redirect-private", "route", "route-ipv6", "route-gateway",
        "route-ipv6-gateway", "route-metric", "route-delay", "route-nopull", "route-noexec",
        "ifconfig-nowarn", "pull-filter", "dhcp-option", "block-outside-dns", "setenv",
        "setenv-safe", "push-peer-info", "ignore-unknown-option", "allow-pull-fqdn",
        "allow-recursive-routing",
        # compression, logging to the management socket
        "comp-lzo", "compress", "allow-compression", "comp-noadapt", "verb", "mute",
        "mute-replay-warnings", "replay-window", "no-replay", "suppress-timestamps",
        "machine-readable-output",
        # authentication (credentials come over the management socket, never from a file)
        "auth-user-pass", "auth-nocache", "auth-retry", "auth-token-user", "static-challenge",
        # crypto and the key material the profile ships
        "cipher", "ciphers", "data-ciphers", "data-ciphers-fallback", "ncp-ciphers",
        "ncp-disable", "auth", "key-direction", "tls-version-min", "tls-version-max",
        "tls-cipher", "tls-ciphersuites", "tls-groups", "ecdh-curve", "remote-cert-tls",
        "remote-cert-ku", "remote-cert-eku", "ns-cert-type", "verify-x509-name", "tls-timeout",
        "reneg-sec", "reneg-bytes", "reneg-pkts", "hand-window", "tran-window", "tls-exit",
        "key-method", "cert-profile", "verify-hash", "peer-fingerprint", "ca", "cert", "key",
        "tls-auth", "tls-crypt", "tls-crypt-v2", "pkcs12", "extra-certs", "crl-verify", "secret",
        # proxies, without a credentials file (see _check_proxy)
        "http-proxy", "http-proxy-option", "http-proxy-retry", "socks-proxy",
        "socks-proxy-retry",
        # script-security is harmless without scripts; the import report removes it anyway
        "script-security",
    }
)  # fmt: skip

#: Inline blocks (``<ca>…</ca>``) a config may carry: key material and <connection> blocks,
#: whose directives are checked like the rest.
INLINE_BLOCKS = frozenset(
    {
        "ca", "cert", "key", "tls-auth", "tls-crypt", "tls-crypt-v2", "pkcs12", "extra-certs",
        "crl-verify", "secret", "peer-fingerprint", "http-proxy-user-pass", "connection",
    }
)  # fmt: skip


def _check_proxy(words: list[str]) -> str | None:
    """``http-proxy HOST PORT [AUTHFILE|auto|auto-nct] …`` and ``socks-proxy HOST [PORT
    [AUTHFILE]]``: a credentials file would be read as root and sent to the proxy."""
    if len(words) > 3 and words[3] not in ("auto", "auto-nct", "stdin"):
        return f"'{words[0]}' must not name a credentials file ({words[3]!r})"
    return None


def check_config(path: Path) -> None:
    """Refuse a config that uses a directive outside :data:`ALLOWED_DIRECTIVES`.

    ``auth-user-pass`` is allowed only without a file (opencm answers over the management
    socket); key-material inline blocks are skipped, ``<connection>`` blocks are checked.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        hint = ""
        if isinstance(error, PermissionError) and os.geteuid() != 0:
            # An all-users profile keeps its keys readable by root only (docs/security.md).
            hint = (
                ": it is root's; connect through the daemon (opencm connect without --foreground)"
            )
        raise InputError(
            f"cannot read the OpenVPN config: {error.strerror}{hint}", path=path
        ) from None
    inline: str | None = None
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if text.startswith("</") and text.endswith(">"):
            if text == f"</{inline}>":
                inline = None
            continue
        if inline is not None and inline != "connection":
            continue
        if text.startswith("<") and text.endswith(">"):
            block = text[1:-1].strip().lower()
            if block not in INLINE_BLOCKS or inline is not None:
                raise InputError(
                    f"inline block <{block}> is not allowed here: expected one of"
                    f" {', '.join(sorted(INLINE_BLOCKS))}",
                    path=path,
                    line=number,
                )
            inline = block
            continue
        words = text.split()
        if not words or words[0][0] in "#;":
            continue
        directive = words[0].removeprefix("--").lower()
        problem: str | None = None
        if directive not in ALLOWED_DIRECTIVES:
            problem = (
                f"'{directive}' is not allowed: opencm runs OpenVPN as root and accepts only"
                " client options that neither run programs nor write files (custom actions run"
                " scripts; see docs/dialers.md)"
            )
        elif directive == "auth-user-pass" and len(words) > 1:
            problem = "'auth-user-pass' must not name a file: opencm passes the credentials itself"
        elif directive in ("http-proxy", "socks-proxy"):
            problem = _check_proxy([directive, *words[1:]])
        if problem is not None:
            raise InputError(problem, path=path, line=number)


def _auth_error(link: _Link) -> DialError:
    return DialError(
        f"{link.entry.name}: the server refused the user name or password",
        code=codes.AUTHENTICATION_FAILURE,
        retryable=False,
    )


def _check_remote(value: str, where: str) -> None:
    parts = value.split()
    ok = 1 <= len(parts) <= 3 and not parts[0].startswith("-")
    if ok and len(parts) >= 2:
        ok = parts[1].isdigit() and 0 < int(parts[1]) < 65536
    if ok and len(parts) == 3:
        ok = parts[2] in ("udp", "udp4", "udp6", "tcp", "tcp4", "tcp6", "tcp-client")
    if not ok:
        raise InputError(f"{value!r} is not 'HOST [PORT [udp|tcp]]'", field=where)


def _config_without_remotes(config: Path, rundir: Path) -> Path:
    """A copy of ``config`` without its ``remote`` lines, so that the entry's remote wins."""
    lines = config.read_text(errors="replace").splitlines()
    if any(line.strip().startswith("<connection>") for line in lines):
        raise DialError(
            f"{config}: 'remote' cannot replace <connection> blocks; edit the config instead",
            code=codes.BAD_ENTRY,
            retryable=False,
        )
    kept = [line for line in lines if line.split()[:1] != ["remote"]]
    copy = rundir / "config.ovpn"
    copy.write_text("\n".join(kept) + "\n")
    copy.chmod(0o600)
    return copy


async def _interface_with_address(netns: str | None, address: str) -> str | None:
    """The interface that holds ``address`` (when the log did not name the TUN device)."""
    if not address:
        return None
    process = await asyncio.create_subprocess_exec(
        *(["ip", "-n", netns] if netns else ["ip"]), "-o", "-4", "addr", "show",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await process.communicate()
    for line in out.decode().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3].split("/")[0] == address:
            return fields[1]
    return None
