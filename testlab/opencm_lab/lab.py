"""Real links between network namespaces, for tests and the end-to-end demo.

A :class:`Lab` owns everything it creates: network namespaces with a unique prefix (``ocm`` + a
short random part, so that parallel runs never collide and interface names stay within
IFNAMSIZ), the processes started in them and a scratch directory. :meth:`Lab.close` ends every
process by its PID, then every process still inside one of *its* namespaces (they can only be
ours), and only then deletes the namespaces: ``ip netns del`` alone leaves a namespace alive while
a process is in it.

Addresses are 10.x inside the namespaces only; nothing is added to the root namespace.

Typical use::

    with Lab() as lab:
        pair = lab.netns_pair()
        pki = lab.pki()
        server = start_openvpn_server(lab, pair, pki)
        # dial with DialEntry(settings={"config": str(server.client_config_path),
        #                               "netns": pair.client_ns})
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from opencm.process import ProcessMark, end_child, end_process

#: Interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
IFNAMSIZ_MAX = 15


class LabError(RuntimeError):
    """The lab could not set something up (a command failed or a server did not start)."""


def missing_tools(*names: str) -> list[str]:
    """The programs among ``names`` that are not on PATH (for skip reasons)."""
    return [name for name in names if shutil.which(name) is None]


def run(argv: Sequence[str], *, input_text: str | None = None, timeout: float = 20) -> str:
    """Run a command (never through a shell); return stdout; raise :class:`LabError` on failure."""
    result = subprocess.run(
        list(argv), input=input_text, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` (``ip netns exec`` execs in place: the PID stays the same)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


@dataclass(frozen=True)
class NetnsPair:
    """Two namespaces joined by a veth: the server side has ``.1``, the client side ``.2`` (/30)."""

    server_ns: str
    client_ns: str
    server_ip: str
    client_ip: str
    server_if: str
    client_if: str


@dataclass(frozen=True)
class Pki:
    """A throw-away PKI: CA, server and client certificates (EC P-256), tls-crypt key."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    tls_crypt_key: Path | None
    server_name: str


@dataclass
class Lab:
    """Namespaces, processes and files of one test or demo run; use as a context manager."""

    prefix: str = field(default_factory=lambda: f"ocm{secrets.token_hex(3)}")
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="opencm-lab-")))
    namespaces: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Machine-wide files our processes make and may leave behind when killed (UAPI sockets).
    leftovers: list[Path] = field(default_factory=list)
    #: Second octet of every 10.x address this lab hands out.
    octet: int = field(default_factory=lambda: 16 + secrets.randbelow(230))
    _next_net: int = 0

    def __post_init__(self) -> None:
        if len(self.prefix) + 3 > IFNAMSIZ_MAX - 2:
            raise ValueError(f"lab prefix {self.prefix!r} is too long for interface names")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- addresses and namespaces ---------------------------------------------------------------

    def subnet(self) -> str:
        """A fresh ``10.<octet>.<n>`` prefix (a /24 whose hosts the caller numbers)."""
        self._next_net += 1
        if self._next_net > 250:
            raise LabError("this lab ran out of subnets")
        return f"10.{self.octet}.{self._next_net}"

    def netns(self, role: str) -> str:
        """Create an empty namespace with loopback up; its name is unique to this lab."""
        name = f"{self.prefix}{role}{len(self.namespaces)}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def netns_pair(self) -> NetnsPair:
        """Two namespaces joined by a veth pair created directly inside them."""
        server_ns, client_ns = self.netns("s"), self.netns("c")
        net = self.subnet()
        index = len(self.namespaces)
        server_if, client_if = f"{self.prefix}v{index}a", f"{self.prefix}v{index}b"
        run(
            [
                "ip",
                "link",
                "add",
                server_if,
                "netns",
                server_ns,
                "type",
                "veth",
                "peer",
                "name",
                client_if,
                "netns",
                client_ns,
            ]
        )
        pair = NetnsPair(server_ns, client_ns, f"{net}.1", f"{net}.2", server_if, client_if)
        for ns, ifname, ip in (
            (server_ns, server_if, pair.server_ip),
            (client_ns, client_if, pair.client_ip),
        ):
            run(["ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", ifname])
            run(["ip", "-n", ns, "link", "set", ifname, "up"])
        return pair

    # -- processes ------------------------------------------------------------------------------

    def spawn(
        self,
        argv: Sequence[str],
        *,
        netns: str | None = None,
        log_name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a foreground process (optionally in ``netns``); :meth:`close` ends it by PID."""
        log_path = self.workdir / (log_name or f"proc{len(self.processes)}.log")
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                in_netns(netns, argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if env is None else {**os.environ, **env},
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one of our processes (SIGKILL simulates a crash) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)

    def ping(self, netns: str, address: str, *, timeout: float = 10.0) -> float:
        """Ping ``address`` from ``netns`` until one answer comes; return the seconds it took."""
        start = time.monotonic()
        while True:
            result = subprocess.run(
                in_netns(netns, ["ping", "-c1", "-W0.3", "-n", "-q", address]),
                capture_output=True,
                check=False,
            )
            if result.returncode == 0:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise LabError(f"no answer from {address} in {netns} within {timeout} s")
            time.sleep(0.02)

    def close(self) -> None:
        """End our processes by PID, then any left in our namespaces, then delete those."""
        for process in reversed(self.processes):
            end_child(process, grace=2.0)
        self.processes.clear()
        for ns in reversed(self.namespaces):
            # Whatever still runs in a namespace of ours was started for this lab (a dialer's
            # openvpn that a failed test never hung up, say): end it so the namespace can go.
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                mark = ProcessMark.of(int(pid))
                if mark is not None:
                    end_process(mark, grace=1.0)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.namespaces.clear()
        for path in self.leftovers:
            with contextlib.suppress(OSError):
                path.unlink()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- PKI ------------------------------------------------------------------------------------

    def pki(self, name: str = "pki") -> Pki:
        """Generate a PKI in this lab's directory (see :func:`generate_pki`)."""
        return generate_pki(self.workdir / name, server_name=f"{self.prefix}-server")


def generate_pki(directory: Path, *, server_name: str = "opencm-lab-server") -> Pki:
    """CA, server certificate (serverAuth) and client certificate (clientAuth), EC P-256.

    Takes about a quarter of a second, so every test run can have its own. The tls-crypt key
    needs the ``openvpn`` binary; without it, :attr:`Pki.tls_crypt_key` is ``None``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    run(
        [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-days",
            "30",
            "-subj",
            "/CN=opencm-lab-ca",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_cert),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    names = {"server": server_name, "client": "opencm-lab-client"}
    for who, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        key, csr, cert = (directory / f"{who}.{ext}" for ext in ("key", "csr", "crt"))
        run(
            [
                "openssl",
                "req",
                *ec,
                "-subj",
                f"/CN={names[who]}",
                "-keyout",
                str(key),
                "-out",
                str(csr),
            ]
        )
        extfile = directory / f"{who}.ext"
        extfile.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\nsubjectAltName=DNS:{names[who]}\n"
        )
        sign = ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert)]
        sign += ["-CAkey", str(ca_key), "-CAcreateserial", "-days", "30"]
        run([*sign, "-out", str(cert), "-extfile", str(extfile)])
    tls_crypt: Path | None = directory / "tc.key"
    if shutil.which("openvpn"):
        run(["openvpn", "--genkey", "tls-crypt", str(tls_crypt)])
    else:
        tls_crypt = None
    for key_file in directory.glob("*.key"):
        key_file.chmod(0o600)
    return Pki(
        directory,
        ca_cert,
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
        tls_crypt,
        server_name,
    )


# -- OpenVPN ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenVPNServer:
    """A running OpenVPN server and a client configuration that reaches it."""

    process: subprocess.Popen[bytes]
    netns: str
    address: str
    port: int
    proto: str
    #: The server's own address inside the tunnel (``%ServerIPAddress%`` on the client side).
    tunnel_ip: str
    tunnel_prefix: str
    client_config_path: Path
    client_config_text: str


def _inline(tag: str, path: Path) -> str:
    return f"<{tag}>\n{path.read_text().strip()}\n</{tag}>\n"


def start_openvpn_server(
    lab: Lab,
    pair: NetnsPair,
    pki: Pki,
    *,
    proto: str = "udp4",
    port: int = 1194,
    client_ping_restart: int = 2,
    users: Mapping[str, str] | None = None,
    explicit_exit_notify: bool = False,
    listen_ip: str | None = None,
    ready_timeout: float = 15.0,
) -> OpenVPNServer:
    """Start an OpenVPN 2.6 server in ``pair.server_ns`` and write a matching client config.

    The client configuration is self-contained (certificates inline), uses the same protocol and
    pings every second with ``ping-restart client_ping_restart`` so that a dead server is noticed
    within a few seconds. With ``users``, the server also asks for a user name and password
    (checked by a small verify script) and the client config carries ``auth-user-pass``.
    ``listen_ip`` (default ``pair.server_ip``) lets the server listen elsewhere, such as on the
    far end of a modem line for a double dial.
    """
    address = listen_ip or pair.server_ip
    net = lab.subnet()
    server_dev = f"{lab.prefix}t{len(lab.processes)}"
    argv = [
        "openvpn", "--server", f"{net}.0", "255.255.255.0", "--topology", "subnet",
        "--proto", proto, "--local", address, "--port", str(port),
        "--dev", server_dev, "--dev-type", "tun", "--disable-dco",
        "--ca", str(pki.ca_cert), "--cert", str(pki.server_cert), "--key", str(pki.server_key),
        "--dh", "none", "--ping", "1", "--ping-restart", "10", "--verb", "3",
    ]  # fmt: skip
    if pki.tls_crypt_key is not None:
        argv += ["--tls-crypt", str(pki.tls_crypt_key)]
    if explicit_exit_notify and proto.startswith("udp"):
        argv += ["--explicit-exit-notify", "1"]
    if users:
        argv += _user_check_options(lab, users)
    log_name = f"openvpn-server-{len(lab.processes)}.log"
    process = lab.spawn(argv, netns=pair.server_ns, log_name=log_name)
    _wait_for_log(
        lab.workdir / log_name, "Initialization Sequence Completed", process, ready_timeout
    )

    client_proto = "tcp-client" if proto.startswith("tcp") else proto
    text = (
        "client\ndev tun\ndev-type tun\n"
        f"proto {client_proto}\nremote {address} {port}\n"
        "nobind\ndisable-dco\nremote-cert-tls server\n"
        f"verify-x509-name {pki.server_name} name\n"
        f"ping 1\nping-restart {client_ping_restart}\nverb 3\n"
        + ("auth-user-pass\n" if users else "")
        + _inline("ca", pki.ca_cert)
        + _inline("cert", pki.client_cert)
        + _inline("key", pki.client_key)
        + (_inline("tls-crypt", pki.tls_crypt_key) if pki.tls_crypt_key else "")
    )
    config_path = lab.workdir / f"client-{len(lab.processes)}.ovpn"
    config_path.write_text(text)
    config_path.chmod(0o600)
    return OpenVPNServer(
        process, pair.server_ns, address, port, proto, f"{net}.1", net, config_path, text
    )


def _user_check_options(lab: Lab, users: Mapping[str, str]) -> list[str]:
    """A verify script that accepts exactly ``users`` (the file holds one ``user:password``)."""
    table = lab.workdir / f"users-{len(lab.processes)}"
    table.write_text("".join(f"{user}:{password}\n" for user, password in users.items()))
    table.chmod(0o600)
    script = lab.workdir / f"check-user-{len(lab.processes)}.sh"
    # OpenVPN passes a file with the user name on line 1 and the password on line 2.
    script.write_text(
        f'#!/bin/sh\nentry="$(sed -n 1p "$1"):$(sed -n 2p "$1")"\ngrep -qxF -- "$entry" "{table}"\n'
    )
    script.chmod(0o700)
    return ["--script-security", "2", "--auth-user-pass-verify", str(script), "via-file"]


def _wait_for_log(
    path: Path, marker: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if marker in text:
            return
        if process.poll() is not None:
            raise LabError(f"{path.name}: process exited ({process.returncode}):\n{text[-2000:]}")
        time.sleep(0.02)
    raise LabError(f"{path.name}: no {marker!r} within {timeout} s")


# -- WireGuard ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireGuardKeys:
    private: str
    public: str


def wireguard_keys() -> WireGuardKeys:
    """A fresh key pair from ``wg genkey`` / ``wg pubkey``."""
    private = run(["wg", "genkey"]).strip()
    public = run(["wg", "pubkey"], input_text=private + "\n").strip()
    return WireGuardKeys(private, public)


@dataclass(frozen=True)
class WireGuardPeer:
    """A wireguard-go server in ``netns`` and a client config (``wg setconf`` format) for it."""

    process: subprocess.Popen[bytes]
    netns: str
    interface: str
    tunnel_ip: str
    client_ip: str
    client_config_path: Path
    client_config_text: str


def start_wireguard_server(
    lab: Lab, pair: NetnsPair, *, port: int = 51820, ready_timeout: float = 10.0
) -> WireGuardPeer:
    """Start a wireguard-go peer in ``pair.server_ns``; write the client side's config.

    The client config is an opencm WireGuard config: ``wg setconf`` syntax plus ``Address``
    (like wg-quick) in ``[Interface]``. Both ends keep alive every second so that a dead peer
    shows as an rx stall within a few seconds.
    """
    net = lab.subnet()
    server, client = wireguard_keys(), wireguard_keys()
    ifname = f"{lab.prefix}w{len(lab.processes)}"
    process = lab.spawn(
        ["wireguard-go", "-f", ifname], netns=pair.server_ns, log_name=f"{ifname}.log"
    )
    socket_path = Path(f"/var/run/wireguard/{ifname}.sock")
    lab.leftovers.append(socket_path)
    deadline = time.monotonic() + ready_timeout
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"wireguard-go {ifname} did not start")
        time.sleep(0.01)
    key_file = lab.workdir / f"{ifname}.key"
    key_file.write_text(server.private + "\n")
    key_file.chmod(0o600)
    ns = ["ip", "netns", "exec", pair.server_ns]
    peer = ["peer", client.public, "allowed-ips", f"{net}.2/32", "persistent-keepalive", "1"]
    run([*ns, "wg", "set", ifname, "listen-port", str(port), "private-key", str(key_file), *peer])
    run(["ip", "-n", pair.server_ns, "addr", "add", f"{net}.1/24", "dev", ifname])
    run(["ip", "-n", pair.server_ns, "link", "set", ifname, "up"])
    text = (
        "[Interface]\n"
        f"PrivateKey = {client.private}\n"
        f"Address = {net}.2/24\n\n"
        "[Peer]\n"
        f"PublicKey = {server.public}\n"
        f"Endpoint = {pair.server_ip}:{port}\n"
        f"AllowedIPs = {net}.0/24\n"
        "PersistentKeepalive = 1\n"
    )
    config_path = lab.workdir / f"{ifname}-client.conf"
    config_path.write_text(text)
    config_path.chmod(0o600)
    return WireGuardPeer(process, pair.server_ns, ifname, f"{net}.1", f"{net}.2", config_path, text)


# -- Modem line ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModemLine:
    """A running modem emulator; with a far end, IP flows between ``near_ip`` and ``far_ip``."""

    emulator: subprocess.Popen[bytes]
    device: Path
    log_path: Path
    far_end: subprocess.Popen[bytes] | None
    far_ns: str | None
    near_ip: str
    far_ip: str

    def events(self) -> str:
        """The emulator's event log so far (one line per event)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_modem_emulator(
    lab: Lab,
    numbers: Mapping[str, str | Sequence[str]],
    *,
    far_ns: str | None = None,
    dial_delay: float = 0.2,
    guard: float = 0.2,
    ready_timeout: float = 10.0,
    login: tuple[str, str] | None = None,
) -> ModemLine:
    """Start opencm's modem emulator on a pty; with ``far_ns`` the line ends in that namespace.

    ``numbers`` maps a number to its scripted results (``["BUSY", "CONNECT 28800"]`` or a
    comma-separated string). The far end is the SLIP bridge on the emulator's second pty, inside
    ``far_ns``, with address ``far_ip``; the dialer gets ``near_ip``.
    """
    import sys

    index = len(lab.processes)
    device = lab.workdir / f"ttyOCM{index}"
    remote = lab.workdir / f"ttyOCM{index}-far"
    log_path = lab.workdir / f"modem{index}.events"
    argv = [
        sys.executable, "-m", "opencm_lab.modem_emulator", "--link", str(device),
        "--dial-delay", str(dial_delay), "--guard", str(guard), "--log", str(log_path),
    ]  # fmt: skip
    for number, results in numbers.items():
        script = results if isinstance(results, str) else ",".join(results)
        argv += ["--number", f"{number}={script}"]
    if far_ns:
        argv += ["--remote", str(remote)]
    if login is not None:
        argv += ["--login", f"{login[0]}:{login[1]}"]
    emulator = lab.spawn(argv, log_name=f"modem{index}.log")
    deadline = time.monotonic() + ready_timeout
    while "ready on" not in (log_path.read_text() if log_path.exists() else ""):
        if emulator.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"the modem emulator did not start: {lab.workdir / f'modem{index}.log'}")
        time.sleep(0.01)
    net = lab.subnet()
    far_end = None
    if far_ns:
        far_dev = f"{lab.prefix}f{index}"
        slip_argv = [sys.executable, "-m", "opencm.links.slip", "--port", str(remote)]
        slip_argv += ["--dev", far_dev, "--addr", f"{net}.1", "--peer", f"{net}.2"]
        far_end = lab.spawn(slip_argv, netns=far_ns, log_name=f"slip-far{index}.log")
        _wait_for_log(lab.workdir / f"slip-far{index}.log", "up", far_end, ready_timeout)
    return ModemLine(emulator, device, log_path, far_end, far_ns, f"{net}.2", f"{net}.1")
