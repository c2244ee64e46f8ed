"""Acting as another local user in tests: a forked child that has dropped to that uid.

The daemon learns who is asking from ``SO_PEERCRED``, so a request must really come from a
process of that uid; ``nobody`` (65534) stands for an unprivileged local user.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opencm.errors import OpencmError
from opencm.session.protocol import Client

NOBODY = 65534


def run_as(uid: int, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a child running as ``uid``; its JSON-able result, or
    ``{"raised": "<Type>: <message>"}``."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                result = function(*args)
            except Exception as error:
                result = {"raised": f"{type(error).__name__}: {error}"}
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    return json.loads(data) if data else {"raised": "the child wrote nothing"}


def request(socket_path: Path, message: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """One request's final answer (an error answer as a dict, not an exception)."""
    try:
        with Client(socket_path, timeout=timeout) as client:
            answer: dict[str, Any] = client.request(message)
            return answer
    except OpencmError as error:
        return {"ok": False, "error": str(error), "exit_code": error.exit_code}


def request_as(uid: int, socket_path: Path, message: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = run_as(uid, request, socket_path, message)
    return answer


def public_folder(prefix: str) -> Path:
    """A root-owned 0755 folder under /tmp that other users can reach (pytest's are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder
