"""What the desktop client says to people: states and error codes in words.

An error is shown as what failed, in the dialer's or action's own message, and then what to
try, from the code (the RAS numbers of :mod:`opencm.links.codes`, and opencm's own for actions
and dialers, :mod:`opencm.session.runner`). The number is shown too, last, for the help desk.
No Qt here.
"""

from __future__ import annotations

from typing import Any

from opencm.links import codes
from opencm.session.runner import (
    ERROR_ACTION_FAILED,
    ERROR_BAD_ENTRY,
    ERROR_DIALER_FAILED,
    ERROR_LINK_DROPPED,
    ERROR_NO_DIALER,
)

STATES = {
    "pre-init": "Starting…",
    "ready": "Ready to connect.",
    "pre-connect": "Preparing to connect…",
    "pre-dial": "Preparing to dial…",
    "dialing": "Dialing…",
    "pre-tunnel": "Preparing the VPN connection…",
    "tunnelling": "Connecting to the VPN server…",
    "post-connect": "Finishing the connection…",
    "connected": "Connected.",
    "prompting": "Waiting for your answer…",
    "disconnecting": "Disconnecting…",
    "dropped": "The connection was lost.",
    "failed": "The connection attempt failed.",
    "redial-wait": "Waiting to redial…",
    "cancelled": "Cancelled.",
    "disconnected": "Disconnected.",
}

#: What to try, by error code.
ADVICE: dict[int, str] = {
    codes.PORT_DISCONNECTED: "The line or the VPN program stopped. Try again.",
    codes.USER_DISCONNECTION: "The connection was cancelled.",
    codes.PORT_NOT_AVAILABLE: "The modem is missing or in use by another program. "
    "Check that it is plugged in and close other programs using it.",
    codes.FROM_DEVICE: "The modem reported an error. Turn it off and on, then try again.",
    codes.DEVICE_TIMEOUT: "The modem does not respond. Check its cable and power.",
    codes.LINE_BUSY: "The number is busy. Try again later or choose another number in Properties.",
    codes.NO_ANSWER: "The server did not answer. Check your Internet connection, or choose "
    "another server in Properties.",
    codes.NO_CARRIER: "The call was not answered by a modem. Try another number.",
    codes.NO_DIALTONE: "There is no dial tone. Check that the phone cable is plugged in.",
    codes.AUTHENTICATION_FAILURE: "The user name or password was not accepted. Type them "
    "again (check Caps Lock), or ask your administrator.",
    codes.VPN_FAILED: "The VPN server could not be reached or refused the connection. Try "
    "another server in Properties, or try later.",
    codes.BAD_ENTRY: "The profile's settings for this server are incomplete. Ask your "
    "administrator for an updated profile.",
    ERROR_ACTION_FAILED: "A program the administrator set up for this connection failed. "
    "Ask your administrator.",
    ERROR_LINK_DROPPED: "The connection went down while it was being set up. Try again.",
    ERROR_NO_DIALER: "This computer does not allow the kind of link the profile needs. Ask "
    "your administrator (see 'opencm dialers list').",
    ERROR_BAD_ENTRY: "The profile's settings for this server are incomplete. Ask your "
    "administrator for an updated profile.",
    ERROR_DIALER_FAILED: "The link program failed unexpectedly. Try again; if it keeps "
    "failing, send the log to your administrator.",
}

GENERIC_ADVICE = "Try again. If it keeps failing, ask your administrator."

REASONS = {
    "user-disconnect": "you disconnected",
    "monitored-apps-exited": "the last program using the connection closed",
    "prompt-timeout": 'nobody answered the "Stay online?" question in 30 seconds',
    "peer-gone": "the server stopped answering",
    "process-exited": "the VPN program stopped",
    "daemon-stopping": "the opencm service stopped",
    "opencm-restarted": "the opencm service restarted",
}


def state_words(state: str) -> str:
    return STATES.get(state, state)


def reason_words(reason: str | None) -> str:
    if not reason:
        return ""
    return REASONS.get(reason, reason)


def error_words(error: dict[str, Any] | None) -> str:
    """What failed, what to try, then the code and its source."""
    if not error:
        return ""
    code = error.get("code")
    advice = ADVICE.get(code, GENERIC_ADVICE) if isinstance(code, int) else GENERIC_ADVICE
    return f"{error.get('message')}\n\n{advice}\n\n(Error {code} from {error.get('source')}.)"


def outcome_words(status: dict[str, Any]) -> str:
    outcome = str(status.get("outcome") or status.get("state"))
    service = status.get("service") or "The connection"
    if outcome in ("failed", "dropped") and status.get("error"):
        what = "could not connect" if outcome == "failed" else "lost its connection"
        return f"{service} {what}.\n\n{error_words(status['error'])}"
    reason = reason_words(status.get("disconnect_reason"))
    text = {
        "disconnected": "is disconnected",
        "dropped": "was disconnected",
        "cancelled": "was cancelled",
        "closed": "was closed",
        "failed": "could not connect",
    }.get(outcome, outcome)
    return f"{service} {text}" + (f": {reason}." if reason else ".")


__all__ = ["error_words", "outcome_words", "reason_words", "state_words"]
