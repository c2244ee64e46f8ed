"""One private strongSwan ``charon`` per link: its own config, VICI socket and pid file.

charon writes ``/var/run/charon.pid`` (compiled in) and refuses to start when that file names a
live process, so two charons on one machine clash. Each instance therefore runs in a private
mount namespace whose ``/run`` is the instance's own folder (``unshare -m`` + a bind mount),
with ``STRONGSWAN_CONF`` naming the instance's ``strongswan.conf`` and the VICI socket in the
same folder. ``ip netns exec`` and ``unshare`` exec in place, so the PID we hold is charon's.

ESP runs in userspace (``kernel-libipsec``, a TUN device): this kernel has no ESP module, and
the userspace path needs UDP encapsulation (``encap = yes``), which opencm always asks for.

DNS servers the gateway assigns are written by the ``resolve`` plugin to the instance's own
``resolv.conf`` (never the system's; resolvconf(8) is pointed at a path that does not exist);
opencm reports them and leaves the system resolver alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opencm.links import proc
from opencm.process import end_async_child

CHARON = Path("/usr/lib/ipsec/charon")

#: Plugins, loaded explicitly (``load_modular = no``): only what an IKEv2 client or the test
#: responder needs. ``kernel-libipsec`` before ``kernel-netlink``: userspace ESP, kernel routes.
PLUGINS = (
    "random nonce openssl pem pkcs1 pkcs8 x509 pubkey constraints revocation kdf hmac sha1 sha2"
    " md5 aes gcm curve25519 kernel-libipsec kernel-netlink socket-default vici attr resolve"
    " eap-identity eap-tls eap-mschapv2 eap-md5"
)


@dataclass(frozen=True)
class CharonTuning:
    """Timers: retransmissions decide how soon a dead peer is noticed (DPD sends, then these)."""

    retransmit_timeout: float = 1.0
    retransmit_base: float = 1.0
    retransmit_tries: int = 2
    #: IKE ports: 0 picks free ones (a client); a responder listens on 500/4500.
    port: int = 0
    port_nat_t: int = 0


def strongswan_conf(rundir: Path, tuning: CharonTuning) -> str:
    """The instance's ``strongswan.conf``."""
    return f"""charon {{
  load_modular = no
  load = {PLUGINS}
  port = {tuning.port}
  port_nat_t = {tuning.port_nat_t}
  retransmit_timeout = {tuning.retransmit_timeout:g}
  retransmit_base = {tuning.retransmit_base:g}
  retransmit_tries = {tuning.retransmit_tries}
  install_virtual_ip = yes
  filelog {{
    instance {{
      path = {rundir / "charon.log"}
      default = 1
      time_format = %H:%M:%S
    }}
  }}
  plugins {{
    vici {{
      socket = unix://{rundir / "charon.vici"}
    }}
    resolve {{
      file = {rundir / "resolv.conf"}
      resolvconf {{
        path = {rundir / "no-resolvconf"}
      }}
    }}
  }}
}}
"""


@dataclass
class CharonInstance:
    rundir: Path
    process: asyncio.subprocess.Process

    @property
    def vici_path(self) -> Path:
        return self.rundir / "charon.vici"

    @property
    def log_path(self) -> Path:
        return self.rundir / "charon.log"

    def log_tail(self, lines: int = 3) -> str:
        for name in ("charon.log", "stderr.log"):
            try:
                text = (self.rundir / name).read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                return " | ".join(text.splitlines()[-lines:])
        return ""

    def session(self) -> contextlib.AbstractContextManager[Any]:
        return vici_session(self.vici_path)


@contextlib.contextmanager
def vici_session(path: Path) -> Iterator[Any]:
    """A ``vici.Session`` on the instance's socket, closed afterwards (the package's
    ``Session`` never closes the socket it is given)."""
    import vici

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        yield vici.Session(sock)


def answers(path: Path) -> bool:
    """True once a VICI socket accepts connections."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def charon_argv(rundir: Path, netns: str | None) -> list[str]:
    """charon in a private mount namespace with the instance folder as its ``/run``."""
    script = f'mount --bind "$1" /run && STRONGSWAN_CONF="$2" exec {CHARON}'
    inner = [
        "unshare", "-m", "--propagation", "private",
        "sh", "-c", script, "charon",
        str(rundir / "run"), str(rundir / "strongswan.conf"),
    ]  # fmt: skip
    return proc.netns_argv(netns, inner)


def missing_programs() -> list[str]:
    missing = [str(CHARON)] if not CHARON.exists() else []
    return missing + [p for p in ("unshare", "mount", "ip") if shutil.which(p) is None]


def make_rundir(prefix: str, tuning: CharonTuning, parent: Path | None = None) -> Path:
    """The instance folder (0700): config, VICI socket, log, and the ``/run`` of its charon."""
    rundir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    rundir.chmod(0o700)
    (rundir / "run").mkdir(mode=0o700)
    (rundir / "strongswan.conf").write_text(strongswan_conf(rundir, tuning))
    return rundir


async def start_charon(
    netns: str | None,
    tuning: CharonTuning | None = None,
    *,
    prefix: str = "ikev2-",
    start_within: float = 10.0,
) -> CharonInstance:
    """Start an instance and wait for its VICI socket; raises TimeoutError or RuntimeError."""
    rundir = await asyncio.to_thread(make_rundir, prefix, tuning or CharonTuning())
    process = await proc.spawn(charon_argv(rundir, netns), log_path=rundir / "stderr.log")
    instance = CharonInstance(rundir, process)
    try:
        async with asyncio.timeout(start_within):
            # The socket file appears at bind(), a moment before listen(): wait until it answers.
            while not await asyncio.to_thread(answers, instance.vici_path):
                if process.returncode is not None:
                    raise RuntimeError(
                        f"charon exited ({process.returncode}): {instance.log_tail()}"
                    )
                await asyncio.sleep(0.01)
    except BaseException:
        await stop_charon(instance)
        raise
    return instance


async def stop_charon(instance: CharonInstance, *, keep_rundir: bool = False) -> None:
    await end_async_child(instance.process)
    if not keep_rundir:
        shutil.rmtree(instance.rundir, ignore_errors=True)


__all__ = [
    "CHARON",
    "CharonInstance",
    "CharonTuning",
    "answers",
    "charon_argv",
    "make_rundir",
    "missing_programs",
    "start_charon",
    "stop_charon",
    "strongswan_conf",
    "vici_session",
]
