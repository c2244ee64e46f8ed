"""A real strongSwan IKEv2 responder in a lab namespace, and the client config to reach it.

The responder is a charon of its own (opencm.links.charon: private config, VICI socket and
``/run``), configured over VICI like Azure's point-to-site gateway: certificate on the gateway,
clients authenticated by certificate (``pubkey`` or ``eap-tls``) or by ``eap-mschapv2`` user
name and password, a virtual-IP pool with a DNS server, and the traffic selectors of the
networks behind it (the routes a profile's route file names).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from opencm.links.charon import (
    CharonTuning,
    answers,
    charon_argv,
    make_rundir,
    vici_session,
)
from opencm_lab.lab import Lab, LabError, NetnsPair, Pki


@dataclass(frozen=True)
class IKEv2Server:
    process: subprocess.Popen[bytes]
    netns: str
    address: str
    rundir: Path
    #: The networks behind the gateway (each with the gateway's address ``.1`` on lo).
    networks: tuple[str, ...]
    pool: str
    dns: str
    client_config_path: Path


def start_ikev2_server(
    lab: Lab,
    pair: NetnsPair,
    pki: Pki,
    *,
    auth: str = "pubkey",
    users: Mapping[str, str] | None = None,
    networks: int = 2,
    dpd: float = 1.0,
    ready_timeout: float = 15.0,
) -> IKEv2Server:
    """Start the responder in ``pair.server_ns``; write a client config (certs beside it)."""
    nets = [lab.subnet() for _ in range(networks)]
    pool_net = lab.subnet()
    for net in nets:
        subprocess.run(
            ["ip", "-n", pair.server_ns, "addr", "add", f"{net}.1/32", "dev", "lo"], check=True
        )
    rundir = make_rundir("ikev2-srv-", CharonTuning(port=500, port_nat_t=4500), lab.workdir)
    process = lab.spawn(charon_argv(rundir, None), netns=pair.server_ns, log_name="charon-srv.log")
    vici_path = rundir / "charon.vici"
    deadline = time.monotonic() + ready_timeout
    while not answers(vici_path):
        if process.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"the strongSwan responder did not start (see {rundir})")
        time.sleep(0.01)
    with vici_session(vici_path) as session:
        session.load_cert({"type": "X509", "flag": "CA", "data": pki.ca_cert.read_bytes()})
        session.load_key({"type": "any", "data": pki.server_key.read_bytes()})
        for user, password in (users or {}).items():
            session.load_shared({"type": "EAP", "data": password, "owners": [user]})
        dns = f"{pool_net}.53"
        session.load_pool({"pool": {"addrs": f"{pool_net}.16/28", "dns": [dns]}})
        remote: dict[str, object] = {"auth": auth}
        if auth in ("pubkey", "eap-tls"):  # the client's certificate must chain to the CA
            remote["cacerts"] = [pki.ca_cert.read_bytes()]
        if auth.startswith("eap"):
            remote["eap_id"] = "%any"
        session.load_conn(
            {
                "rw": {
                    "version": "2",
                    "local_addrs": [pair.server_ip],
                    "pools": ["pool"],
                    "encap": "yes",
                    "dpd_delay": f"{dpd:g}s",
                    "local": {
                        "auth": "pubkey",
                        "certs": [pki.server_cert.read_bytes()],
                        "id": pki.server_name,
                    },
                    "remote": remote,
                    "children": {"rw": {"local_ts": [f"{net}.0/24" for net in nets]}},
                }
            }
        )
    config = write_client_config(
        lab.workdir / f"ikev2-{len(lab.processes)}", pair.server_ip, pki, auth=auth
    )
    return IKEv2Server(
        process,
        pair.server_ns,
        pair.server_ip,
        rundir,
        tuple(f"{net}.0/24" for net in nets),
        f"{pool_net}.16/28",
        dns,
        config,
    )


def write_client_config(
    folder: Path, server: str, pki: Pki, *, auth: str = "pubkey", extra: Sequence[str] = ()
) -> Path:
    """The ikev2 link's config with the CA, client certificate and key beside it (0600 key)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    lines = [
        f"server = {server}",
        f"remote_id = {pki.server_name}",
        f"auth = {auth}",
        "ca = ca.crt",
    ]
    if auth != "eap-mschapv2":
        (folder / "client.crt").write_bytes(pki.client_cert.read_bytes())
        key = folder / "client.key"
        key.touch(mode=0o600)
        key.write_bytes(pki.client_key.read_bytes())
        lines += ["cert = client.crt", "key = client.key"]
    path = folder / "client.ikev2"
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


__all__ = ["IKEv2Server", "start_ikev2_server", "write_client_config"]
