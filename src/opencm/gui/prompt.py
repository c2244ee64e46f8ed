"""The "Stay online" / "Disconnect now" dialog, with its 30-second countdown.

"Incorporating Custom Actions": when the last monitored application closes, the user can click
Stay Online, click Disconnect Now, or do nothing, and the connection closes after 30 seconds.
The countdown reads an injectable clock (:class:`opencm.clock.Clock`; tests drive a
:class:`opencm.testing.FakeClock`), and when it runs out the dialog tells the daemon
``timed-out``, so the session disconnects as its own timer would (``%DisconnectReason%`` =
``prompt-timeout``). Enter is "Disconnect now" (the default button); Esc closes the question
and stays online.
"""

from __future__ import annotations

import math
from typing import Protocol

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from opencm.session.prompt import PROMPT_TIMEOUT, Choice


class Monotonic(Protocol):
    def monotonic(self) -> float: ...


class StayOnlineDialog(QDialog):
    #: The user's answer, or ``timed-out`` (a :class:`Choice` value).
    answered = Signal(str)

    def __init__(
        self,
        service_name: str,
        clock: Monotonic,
        *,
        seconds: float = PROMPT_TIMEOUT,
        icon: QIcon | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.clock = clock
        self.deadline = clock.monotonic() + seconds
        self.choice: Choice | None = None
        self._silenced = False
        self.setWindowTitle(service_name)
        if icon is not None:
            self.setWindowIcon(icon)
        layout = QVBoxLayout(self)
        question = QLabel(
            f"The last program using {service_name} has closed.\nDo you want to stay online?"
        )
        question.setObjectName("question")
        layout.addWidget(question)
        self.countdown = QLabel()
        self.countdown.setObjectName("countdown")
        layout.addWidget(self.countdown)
        buttons = QHBoxLayout()
        self.stay_button = QPushButton("&Stay online")
        self.stay_button.setObjectName("stay")
        self.disconnect_button = QPushButton("&Disconnect now")
        self.disconnect_button.setObjectName("disconnect")
        self.disconnect_button.setDefault(True)
        buttons.addWidget(self.stay_button)
        buttons.addWidget(self.disconnect_button)
        layout.addLayout(buttons)
        QWidget.setTabOrder(self.stay_button, self.disconnect_button)
        self.disconnect_button.setFocus()
        self.stay_button.clicked.connect(self.stay_online)
        self.disconnect_button.clicked.connect(self.disconnect_now)
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self.tick)
        self.timer.start()
        self.tick()

    def stay_online(self) -> None:
        self._answer(Choice.STAY_ONLINE)

    def disconnect_now(self) -> None:
        self._answer(Choice.DISCONNECT_NOW)

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock.monotonic())

    def tick(self) -> None:
        left = self.remaining()
        if left <= 0:
            self._answer(Choice.TIMED_OUT)
            return
        seconds = math.ceil(left)
        self.countdown.setText(f"Disconnecting in {seconds} second{'' if seconds == 1 else 's'}.")

    def _answer(self, choice: Choice) -> None:
        if self.choice is not None or self._silenced:
            return
        self.choice = choice
        self.timer.stop()
        self.answered.emit(str(choice))
        self.done(0 if choice is Choice.STAY_ONLINE else 1)

    def reject(self) -> None:
        """Esc: the question is closed, the connection stays."""
        self._answer(Choice.STAY_ONLINE)

    def close_unanswered(self) -> None:
        """The session stopped asking (answered elsewhere, dropped): close without an answer."""
        self._silenced = True
        self.timer.stop()
        self.done(0)


__all__ = ["StayOnlineDialog"]
