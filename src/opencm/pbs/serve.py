"""The lean process ``opencm pbs serve`` turns into: runs the app on opencm's own server
(:mod:`opencm.pbs.server`, the default), granian or uvicorn.

``opencm pbs serve`` checks its options and then replaces itself (``exec``, same PID) with
``python -m opencm.pbs.serve``: uvicorn's and granian's workers are started with
multiprocessing's *spawn*, which re-imports the main module in every worker, and this module
imports only what serving needs, not the whole CLI (less memory in every worker).

Settings come in the environment (``OPENCM_PBS_*``, set by the CLI); see ``docs/pbs-protocol.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path

TARGET = "opencm.pbs.app:app_from_env"
log = logging.getLogger("opencm.pbs")


def _limits_from_env() -> tuple[float, float, int]:
    env = os.environ
    return (
        float(env.get("OPENCM_PBS_HEADER_TIMEOUT", "10")),
        float(env.get("OPENCM_PBS_IDLE_TIMEOUT", "30")),
        int(env.get("OPENCM_PBS_MAX_CONNECTIONS", "4096")),
    )


def _raise_file_limit(wanted: int) -> None:
    """Room for the connection cap plus the store's files (the cap, not the limit, says no)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _worker(sock: socket.socket, cert: str, key: str) -> None:
    from opencm.pbs.app import app_from_env
    from opencm.pbs.server import Limits, serve_forever

    header, idle, cap = _limits_from_env()
    app = app_from_env()
    limits = Limits(header, idle, cap, app.max_upload)
    context = None
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve_forever(app, limits, sock, ssl=context)

    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):  # uvloop comes with uvicorn[standard]
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def run_opencm(host: str, port: int, workers: int, cert: str, key: str) -> None:
    """opencm's own server: ``workers`` processes sharing one listening socket."""
    _raise_file_limit(_limits_from_env()[2] + 1024)
    sock = _listen(host, port)
    if workers == 1:
        _worker(sock, cert, key)
        return
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                _worker(sock, cert, key)
            except BaseException:
                log.exception("pbs worker failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while children:
        try:
            pid, _status = os.wait()
        except ChildProcessError:
            break
        if pid in children:
            children.remove(pid)
            forward(signal.SIGTERM, None)  # one worker gone: stop all (the supervisor restarts)


def run(server: str, host: str, port: int, workers: int, cert: str, key: str) -> None:
    if server == "opencm":
        run_opencm(host, port, workers, cert, key)
        return
    _header, idle, cap = _limits_from_env()  # granian/uvicorn have no header timeout
    if server == "granian":
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces

        Granian(
            TARGET,
            address=host,
            port=port,
            interface=Interfaces.RSGI,  # granian's native interface: faster than its ASGI
            workers=workers,
            http=HTTPModes.http1,
            websockets=False,
            factory=True,
            log_access=False,
            backpressure=cap,
            ssl_cert=Path(cert) if cert else None,
            ssl_key=Path(key) if key else None,
        ).serve()
        return
    import uvicorn

    uvicorn.run(
        TARGET,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_keep_alive=int(idle),
        limit_concurrency=cap,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_level="warning",
        ssl_certfile=cert or None,
        ssl_keyfile=key or None,
    )


def main() -> None:
    env = os.environ
    run(
        env.get("OPENCM_PBS_SERVER", "opencm"),
        env.get("OPENCM_PBS_HOST", "127.0.0.1"),
        int(env.get("OPENCM_PBS_PORT", "8080")),
        int(env.get("OPENCM_PBS_WORKERS", "1")),
        env.get("OPENCM_PBS_TLS_CERT", ""),
        env.get("OPENCM_PBS_TLS_KEY", ""),
    )


def exec_server() -> None:
    """Replace this process with ``python -m opencm.pbs.serve`` (keeps the PID)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "opencm.pbs.serve"])


if __name__ == "__main__":
    main()
