"""The ``opencm`` entry point: the scriptable client commands on a lean path, the rest via click.

``opencm connect PROFILE --unattended [--json] [--socket S] [--entry E] [--type T]
[--credentials F] [--inet-credentials F] [--logon]`` and ``opencm status [--json] [--socket S]``
are what scripts, boot units and benchmarks run, often: they are parsed here and run without
importing click (click and the command modules cost about as much as the rest of the client;
benchmarks/connect.py). Anything else, including ``--help``, a terminal that may be asked for a
password, ``--foreground`` or an option this parser does not know, goes to the click command,
which behaves (and reports mistakes) as always.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from opencm.errors import EXIT_BAD_INPUT, OpencmError

#: Options that take a value, per lean command (flags are listed separately).
VALUES = {
    "connect": {"--socket", "--entry", "--type", "--credentials", "--inet-credentials"},
    "status": {"--socket"},
}
FLAGS = {"connect": {"--unattended", "--json", "--logon"}, "status": {"--json"}}
TYPES = ("direct", "dialup", "double")


def parse(argv: Sequence[str]) -> tuple[str, list[str], dict[str, str | bool]] | None:
    """(command, positional arguments, options), or None when click should handle it."""
    if not argv or argv[0] not in VALUES:
        return None
    command, rest = argv[0], list(argv[1:])
    positional: list[str] = []
    options: dict[str, str | bool] = {}
    while rest:
        word = rest.pop(0)
        name, equals, value = word.partition("=")
        if name in VALUES[command]:
            if not equals:
                if not rest:
                    return None
                value = rest.pop(0)
            options[name] = value
        elif word in FLAGS[command]:
            options[word] = True
        elif word.startswith("-"):
            return None  # --help, --foreground, --watch, a typo: click says what it means
        else:
            positional.append(word)
    return command, positional, options


def _connect(positional: list[str], options: dict[str, str | bool]) -> int | None:
    if len(positional) != 1:
        return None
    unattended = bool(options.get("--unattended") or options.get("--logon"))
    if not unattended and sys.stdin.isatty():
        return None  # someone may be asked for a password: the click command asks
    kind = options.get("--type")
    if kind is not None and kind not in TYPES:
        return None
    from opencm.cli.client import (
        credentials_json,
        finish,
        follow_request,
        unattended_credentials,
        wants_inet,
    )
    from opencm.profile.model import load_profile
    from opencm.session.locate import resolve_profile
    from opencm.session.protocol import Client

    path = resolve_profile(positional[0])
    profile = load_profile(path)  # once, for both kinds of credentials
    kind_name = str(kind) if kind else None
    creds_file = options.get("--credentials")
    credentials = unattended_credentials(profile, Path(str(creds_file)) if creds_file else None)
    inet_file = options.get("--inet-credentials")
    inet = None
    if inet_file or wants_inet(profile, kind_name):
        inet = unattended_credentials(
            profile, Path(str(inet_file)) if inet_file else None, kind="inet"
        )
    request = {
        "op": "connect",
        "profile": str(path),
        "type": kind_name,
        "entry": options.get("--entry") or None,
        "unattended": True,
        "logon": bool(options.get("--logon")),
        "credentials": credentials_json(credentials),
        "inet_credentials": credentials_json(inet),
    }
    socket = options.get("--socket")
    with Client(Path(str(socket)) if socket else None, timeout=None) as client:
        status = follow_request(client, request)
    return finish(status, bool(options.get("--json")))


def _status(positional: list[str], options: dict[str, str | bool]) -> int | None:
    if positional:
        return None
    from opencm.cli.client import show_status

    socket = options.get("--socket")
    return show_status(Path(str(socket)) if socket else None, bool(options.get("--json")))


LEAN: dict[str, Callable[[list[str], dict[str, str | bool]], int | None]] = {
    "connect": _connect,
    "status": _status,
}


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    parsed = parse(args)
    code: int | None = None
    if parsed is not None:
        command, positional, options = parsed
        try:
            code = LEAN[command](positional, options)
        except OpencmError as error:
            print(f"opencm: error: {error}", file=sys.stderr)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            print("opencm: aborted", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
    if code is None:
        from opencm.cli.main import main as full

        full(args)
        return
    sys.exit(code)


__all__ = ["main", "parse"]
