"""The desktop client's line to the daemon: the CLI's protocol client on a worker thread.

A :class:`Conversation` is one socket connection to ``opencm daemon``
(docs/daemon-protocol.md). Requests are sent one after the other on it (``open`` and then the
logon's ``connect`` must share a connection: the daemon closes a session left at its logon
screen when the connection that opened it goes away); every line the daemon sends comes back
to the Qt thread as the :attr:`Conversation.line` signal, an error answer or a lost daemon as
:attr:`Conversation.failed`. Nothing here knows what the lines mean: the windows do.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from opencm.errors import OpencmError
from opencm.session.protocol import Client


class Conversation(QObject):
    #: Every line from the daemon: events (``"event"``) and answers (``"ok"``).
    line = Signal(dict)
    #: The daemon refused a request or could not be reached: (message, exit code).
    failed = Signal(str, int)

    def __init__(self, socket_path: Path | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.socket_path = socket_path
        self._requests: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._client: Client | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="opencm-gui-daemon", daemon=True)
        self._thread.start()

    def send(self, request: dict[str, Any]) -> None:
        self._requests.put(request)

    def close(self) -> None:
        """End the connection (a watch stops; a session held at its logon screen closes)."""
        self._closed = True
        self._requests.put(None)
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.sock.shutdown(socket.SHUT_RDWR)

    def wait_closed(self, seconds: float = 5.0) -> None:
        self._thread.join(seconds)

    def _work(self) -> None:
        try:
            with Client(self.socket_path, timeout=None) as client:
                self._client = client
                while True:
                    request = self._requests.get()
                    if request is None:
                        return
                    client.send(request)
                    for line in client.lines():
                        if self._closed:
                            return
                        if "event" in line:
                            self.line.emit(line)
                            continue
                        if line.get("ok"):
                            self.line.emit(line)
                        else:
                            self.failed.emit(
                                str(line.get("error", "the daemon refused")),
                                int(line.get("exit_code", 1)),
                            )
                        break
        except OpencmError as error:
            if not self._closed:
                self.failed.emit(str(error), error.exit_code)
        except OSError as error:
            if not self._closed:
                self.failed.emit(f"the connection to the opencm daemon broke: {error}", 5)


__all__ = ["Conversation"]
