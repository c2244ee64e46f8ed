"""The lean process ``opencm pbs serve`` turns into: runs the app under uvicorn or granian.

``opencm pbs serve`` checks its options and then replaces itself (``exec``, same PID) with
``python -m opencm.pbs.serve``: uvicorn's and granian's workers are started with
multiprocessing's *spawn*, which re-imports the main module in every worker, and this module
imports only what serving needs, not the whole CLI (less memory in every worker).

Settings come in the environment (``OPENCM_PBS_*``, set by the CLI); see ``docs/pbs-protocol.md``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TARGET = "opencm.pbs.app:app_from_env"


def run(server: str, host: str, port: int, workers: int, cert: str, key: str) -> None:
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
        env.get("OPENCM_PBS_SERVER", "uvicorn"),
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
