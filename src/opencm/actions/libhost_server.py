"""The library host process: calls custom-action library entry points, one forked child per call.

Started by :class:`opencm.actions.libhost.LibraryHost` as ``python -I -S libhost_server.py``; it
uses the standard library only, so it starts fast and imports nothing of the caller's.

Why a host and a child per call:

- a library runs native code; if it crashes or hangs, only the child dies (or is killed by PID
  at the timeout), never opencm;
- CM unloads the DLL after the call ("Incorporating Custom Actions"): the child exits after the
call, so the library
  and everything it did to its process are gone;
- forking an already-running host costs about a millisecond, where starting a Python per call
  would cost tens.

Protocol on the host's stdin/stdout: frames of a 4-byte big-endian length and a JSON object.

Request: ``{"path": str, "entry": str, "command_line": str, "timeout": float}``.
Answers: ``{"status": "returned", "value": int}``, ``{"status": "error", "message": str}`` (the
library cannot be loaded, or has no such entry point), ``{"status": "signal", "signal": int}``,
``{"status": "exited", "code": int}`` (the library ended the process), ``{"status": "timeout"}``.

The host's own stdout (fd 1) is moved to its stderr so a library that prints cannot corrupt the
answers.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import struct
import sys
import time
from typing import Any

HEADER = struct.Struct(">I")
_MAX_FRAME = 1 << 24
_PR_SET_PDEATHSIG = 1


def read_exact(fd: int, count: int) -> bytes | None:
    chunks: list[bytes] = []
    while count:
        chunk = os.read(fd, count)
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> Any:
    header = read_exact(fd, HEADER.size)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > _MAX_FRAME:
        raise ValueError(f"frame of {length} bytes")
    body = read_exact(fd, length)
    if body is None:
        return None
    return json.loads(body)


def write_frame(fd: int, message: Any) -> None:
    body = json.dumps(message).encode()
    data = HEADER.pack(len(body)) + body
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _child(request: dict[str, Any], result_fd: int) -> None:
    """In the forked child: load, call, report, exit. Never returns."""
    status = 0
    try:
        # Die with the host, so a hung call never outlives it.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            library = ctypes.CDLL(request["path"], mode=os.RTLD_NOW | os.RTLD_LOCAL)
        except OSError as error:
            answer: dict[str, Any] = {"status": "error", "message": f"cannot load: {error}"}
        else:
            try:
                function = getattr(library, request["entry"])
            except AttributeError:
                answer = {"status": "error", "message": f"has no entry point {request['entry']!r}"}
            else:
                # HRESULT fn(HWND parent, HINSTANCE instance, LPCSTR command_line, DWORD reserved)
                function.argtypes = (
                    ctypes.c_void_p,
                    ctypes.c_void_p,
                    ctypes.c_char_p,
                    ctypes.c_uint32,
                )
                function.restype = ctypes.c_int32
                line = request["command_line"].encode("utf-8", "surrogateescape")
                value = function(None, library._handle, line, 0)
                answer = {"status": "returned", "value": int(value)}
        os.write(result_fd, json.dumps(answer).encode() + b"\n")
    except BaseException:  # the child must never return into the host's loop
        status = 70
    finally:
        os._exit(status)


def call(request: dict[str, Any], protocol_fds: tuple[int, ...] = ()) -> dict[str, Any]:
    """Fork a child for one call and wait for it, at most ``request["timeout"]`` seconds.

    ``protocol_fds`` are closed in the child, and its stdin is ``/dev/null``, so a library can
    neither read the host's requests nor write into its answers.
    """
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        for fd in protocol_fds:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        _child(request, write_fd)
    os.close(write_fd)
    deadline = time.monotonic() + float(request["timeout"])
    pidfd = os.pidfd_open(pid)
    data = b""
    try:
        # Wait for the answer line, the end of the pipe, or the child's exit (pidfd readable).
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _kill(pid)
            ready = select.select([read_fd, pidfd], [], [], remaining)[0]
            if read_fd in ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                data += chunk
            elif pidfd in ready:
                # Gone; whatever it wrote just before is still in the pipe.
                while len(data) < _MAX_FRAME and select.select([read_fd], [], [], 0)[0]:
                    chunk = os.read(read_fd, 65536)
                    if not chunk:
                        break
                    data += chunk
                break
        # A child that has answered exits at once; wait for it until the deadline, no longer.
        remaining = deadline - time.monotonic()
        if not select.select([pidfd], [], [], max(0.0, remaining))[0]:
            return _kill(pid) if b"\n" not in data else _kill_after_answer(pid, data)
        _, wait_status = os.waitpid(pid, 0)
    finally:
        os.close(read_fd)
        os.close(pidfd)
    line, newline, _ = data.partition(b"\n")
    if newline:
        answer: dict[str, Any] = json.loads(line)
        return answer
    if os.WIFSIGNALED(wait_status):
        return {"status": "signal", "signal": os.WTERMSIG(wait_status)}
    return {"status": "exited", "code": os.waitstatus_to_exitcode(wait_status)}


def _kill(pid: int) -> dict[str, Any]:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return {"status": "timeout"}


def _kill_after_answer(pid: int, data: bytes) -> dict[str, Any]:
    """The child answered but did not exit (a library thread holding it): the answer stands."""
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    answer: dict[str, Any] = json.loads(data.partition(b"\n")[0])
    return answer


def main() -> None:
    requests = sys.stdin.fileno()
    answers = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller decides when the host ends
    while True:
        request = read_frame(requests)
        if request is None:
            return
        write_frame(answers, call(request, (answers,)))


if __name__ == "__main__":
    main()
