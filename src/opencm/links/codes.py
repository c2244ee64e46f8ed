"""Error codes a dialer puts in :class:`~opencm.links.api.DialError` (``%ErrorCode%``).

They are the RAS error numbers Windows' Connection Manager shows, so that help texts and scripts
written for CM keep their meaning.
"""

from __future__ import annotations

#: The port was disconnected (the serial line or the link process went away).
PORT_DISCONNECTED = 628
#: The user cancelled (ERROR_USER_DISCONNECTION).
USER_DISCONNECTION = 631
#: The port or device is not available (missing, in use, not a tty).
PORT_NOT_AVAILABLE = 633
#: The device gave an error response (modem ``ERROR``, a failed command).
FROM_DEVICE = 651
#: Nothing came back from the device (modem timeout).
DEVICE_TIMEOUT = 652
#: ``BUSY``.
LINE_BUSY = 676
#: ``NO ANSWER`` or a dial that timed out waiting for the far end.
NO_ANSWER = 678
#: ``NO CARRIER``.
NO_CARRIER = 679
#: ``NO DIALTONE``.
NO_DIALTONE = 680
#: The server refused the user name or password.
AUTHENTICATION_FAILURE = 691
#: The VPN could not be established (no answer from the server, TLS failure, timeout).
VPN_FAILED = 800
#: The entry's settings are unusable (a missing config file or namespace).
BAD_ENTRY = 87
