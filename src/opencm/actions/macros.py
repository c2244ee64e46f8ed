"""Parameter strings: tokens, ``%Macro%`` expansion and the command line a library receives.

The order matters for safety. The parameter string *as written by the administrator* is split
into tokens first (whitespace separates, double quotes group and are removed); only then is each
token's ``%Macro%`` replaced. A macro value therefore never creates, removes or regroups
arguments: a user name with spaces, quotes, ``;``, ``$()`` or newlines stays one argument, with
its exact text, and nothing ever passes through a shell.

Libraries and Python actions get one string instead of an argv (``pszCommandLine``). It is the
expanded tokens joined by single spaces, and a token is wrapped in double quotes only when it
contains whitespace or is empty, exactly as "Incorporating Custom Actions" shows::

    LogUserAndPopToServer %UserPrefix% %UserName% %UserSuffix% %PopName% %AutoRedial%
    → NULL jobrown "Seattle 28,800" 0          (the entry point is removed; see parse.py)

Macro names match case-insensitively (``%PROFILE%`` = ``%Profile%``). A known macro without a
value becomes ``NULL``, as in CM. Unknown ``%Words%`` are left as written (they may be meant for
the program). Expansion is one pass: a ``%…%`` inside a value is never expanded again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

#: Every macro of "Incorporating Custom Actions" and "How Connection Manager Works", spelled as
#: documented.
KNOWN_MACROS: tuple[str, ...] = (
    "ServiceName",
    "UserPrefix",
    "UserSuffix",
    "UserName",
    "Profile",
    "ServiceDir",
    "Domain",
    "InetUserName",
    "ConnectionType",
    "DialRasPhoneBook",
    "TunnelRasPhoneBook",
    "DialRasEntry",
    "TunnelRasEntry",
    "AutoRedial",
    "PopName",
    "ErrorCode",
    "LastErrorSource",
    "CurrentFavorite",
    "TunnelServerAddress",
    "ClientIPAddress",
    "ServerIPAddress",
    "Interactive",
    # opencm's own: set at the disconnect point only, NULL everywhere else like any macro
    # without a value (docs/session.md).
    "DisconnectReason",
)
_KNOWN_LOWER = frozenset(name.lower() for name in KNOWN_MACROS)

#: What CM substitutes for a macro that has no value.
UNDEFINED = "NULL"


class Tokens(NamedTuple):  # a NamedTuple: built once per action line, and cheap to build
    words: tuple[str, ...]
    #: True when a double quote was opened and never closed (the rest became one token).
    unterminated_quote: bool = False


def tokenize(parameters: str) -> Tokens:
    """Split a parameter string on whitespace; double quotes group words and are removed.

    There is no escape character: backslashes are path separators in profiles. ``""`` is an
    empty argument.
    """
    if '"' not in parameters:
        return Tokens(tuple(parameters.split()))
    return _tokenize_quoted(parameters)


def _tokenize_quoted(parameters: str) -> Tokens:
    words: list[str] = []
    current: list[str] = []
    in_token = False
    quoted = False
    for char in parameters:
        if char == '"':
            quoted = not quoted
            in_token = True
        elif char.isspace() and not quoted:
            if in_token:
                words.append("".join(current))
                current, in_token = [], False
        else:
            current.append(char)
            in_token = True
    if in_token:
        words.append("".join(current))
    return Tokens(tuple(words), unterminated_quote=quoted)


def macro_table(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """Macro values keyed by lower-case name, every known macro present (None: no value)."""
    table: dict[str, str | None] = dict.fromkeys(_KNOWN_LOWER)
    for name, value in values.items():
        table[name.lower()] = value
    return table


def expand(text: str, table: Mapping[str, str | None]) -> str:
    """Replace every ``%Name%`` of ``table`` (lower-case keys) in one pass; see module doc."""
    if "%" not in text:
        return text
    if len(text) > 2 and text[0] == "%" and text[-1] == "%" and text.count("%") == 2:
        # The common case, a token that is exactly one macro.
        name = text[1:-1].lower()
        if name in table:
            return table[name] or UNDEFINED
        return text
    out: list[str] = []
    position = 0
    length = len(text)
    while position < length:
        start = text.find("%", position)
        if start < 0:
            out.append(text[position:])
            break
        end = text.find("%", start + 1)
        if end < 0:
            out.append(text[position:])
            break
        name = text[start + 1 : end].lower()
        if name and name in table:
            out.append(text[position:start])
            value = table[name]
            out.append(value if value else UNDEFINED)
            position = end + 1
        else:
            # Not a macro: keep the first "%" and look again from the next character, so that
            # "50%%UserName%" still finds %UserName%.
            out.append(text[position : start + 1])
            position = start + 1
    return "".join(out)


def expand_parameters(parameters: str, table: Mapping[str, str | None]) -> tuple[list[str], bool]:
    """Tokenise, then expand each token: the argv that follows the program, and whether a quote
    was left open."""
    tokens = tokenize(parameters)
    return [expand(word, table) for word in tokens.words], tokens.unterminated_quote


def command_line(arguments: Sequence[str]) -> str:
    """The single string a library or Python action receives (quotes only around whitespace)."""
    return " ".join(_quote_if_needed(argument) for argument in arguments)


_WHITESPACE = re.compile(r"\s")


def _quote_if_needed(argument: str) -> str:
    if not argument or _WHITESPACE.search(argument):
        return f'"{argument}"'
    return argument
