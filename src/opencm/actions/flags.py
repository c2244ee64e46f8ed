"""The ``N&Flags`` bits: which connections run an action, and how it behaves.

Connection bits ("Custom actions keys"; 0 means every connection):

====  ===============================================  ======================
bit   its wording                                       runs for
====  ===============================================  ======================
0x1   "all direct tunnel connections"                   direct
0x2   "all connections that involve dialing"            dial-up, double
0x4   "only connections that use direct dial-up"        dial-up
0x8   "only connections that involve a tunnel"          direct, double
====  ===============================================  ======================

When several connection bits are set the action runs if *any* of them matches (the bits widen,
never narrow: 0x1|0x4 runs for direct and for dial-up, not for double).

Behaviour bits (opencm's reading of the CMAK check boxes; the only real value seen is 48):

- 0x10: the program does *not* interact with the user. The "Program interacts with the
  user" box of "Incorporating Custom Actions" is selected by default, which is this bit's absence.
  Without it, the action is skipped when nobody is at the screen (logon, ``--unattended``).
- 0x20: the program is included in the profile: it is looked up in the profile folder only,
  never on ``PATH``.

Other bits are kept, shown in the plan and otherwise ignored.
"""

from __future__ import annotations

from opencm.profile.model import ConnectionType

DIRECT_ONLY = 0x1
DIALS = 0x2
DIALUP_ONLY = 0x4
TUNNELS = 0x8
CONNECTION_BITS = DIRECT_ONLY | DIALS | DIALUP_ONLY | TUNNELS
NON_INTERACTIVE = 0x10
INCLUDED = 0x20
KNOWN_BITS = CONNECTION_BITS | NON_INTERACTIVE | INCLUDED

#: Which connection types each connection bit admits.
_ADMITS: dict[int, frozenset[ConnectionType]] = {
    DIRECT_ONLY: frozenset({ConnectionType.DIRECT}),
    DIALS: frozenset({ConnectionType.DIALUP, ConnectionType.DOUBLE}),
    DIALUP_ONLY: frozenset({ConnectionType.DIALUP}),
    TUNNELS: frozenset({ConnectionType.DIRECT, ConnectionType.DOUBLE}),
}
_WORDS = {
    DIRECT_ONLY: "direct tunnel connections",
    DIALS: "connections that dial",
    DIALUP_ONLY: "dial-up-only connections",
    TUNNELS: "connections with a tunnel",
}
_TYPE_WORDS = {
    ConnectionType.DIALUP: "dial-up",
    ConnectionType.DIRECT: "direct tunnel",
    ConnectionType.DOUBLE: "double-dial (dial-up then tunnel)",
}


def _admitted(bits: int) -> frozenset[ConnectionType]:
    if not bits:
        return frozenset(ConnectionType)
    admitted: set[ConnectionType] = set()
    for bit, types in _ADMITS.items():
        if bits & bit:
            admitted |= types
    return frozenset(admitted)


#: admitted types for each of the 16 combinations of connection bits.
_ADMITTED = tuple(_admitted(bits) for bits in range(CONNECTION_BITS + 1))


def admitted_types(flags: int) -> frozenset[ConnectionType]:
    """The connection types an action with these flags runs for."""
    return _ADMITTED[flags & CONNECTION_BITS]


def runs_for(flags: int, connection_type: ConnectionType) -> bool:
    return connection_type in admitted_types(flags)


def interacts_with_user(flags: int) -> bool:
    return not flags & NON_INTERACTIVE


def included_in_profile(flags: int) -> bool:
    return bool(flags & INCLUDED)


def unknown_bits(flags: int) -> int:
    return flags & ~KNOWN_BITS


def connection_skip_reason(flags: int, connection_type: ConnectionType) -> str | None:
    """Why the connection filter skips the action, or None when it runs."""
    if runs_for(flags, connection_type):
        return None
    wanted = " or ".join(_WORDS[bit] for bit in _ADMITS if flags & bit)
    return (
        f"runs only for {wanted} (flags {flags & CONNECTION_BITS:#x});"
        f" this is a {_TYPE_WORDS[connection_type]} connection"
    )


def describe(flags: int) -> list[str]:
    """Each set bit in words, for the human plan."""
    words = [_WORDS[bit] for bit in _ADMITS if flags & bit] or ["all connections"]
    words.append("interacts with the user" if interacts_with_user(flags) else "non-interactive")
    if included_in_profile(flags):
        words.append("included in the profile")
    if unknown_bits(flags):
        words.append(f"unknown bits {unknown_bits(flags):#x}")
    return words
