"""Checks that several built-in dialers make on an entry's settings.

Each dialer keeps its own words where they differ (what its config file is called); the checks
themselves live here once, so that every dialer refuses the same mistakes the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from opencm.errors import InputError
from opencm.links import codes, proc
from opencm.links.api import DialEntry, DialError


def check_settings(entry: DialEntry, known: Sequence[str]) -> dict[str, str]:
    """A copy of the entry's settings to normalise; refuse any setting the dialer does not know."""
    settings = dict(entry.settings)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise InputError(
            f"unknown setting(s) {', '.join(unknown)}; expected {', '.join(known)}",
            field=f"{entry.name}.{unknown[0]}",
        )
    return settings


def config_file(entry: DialEntry, *, needs: str, no_such: str) -> Path:
    """The absolute path of the entry's required ``config`` file.

    ``needs`` is the message when the setting is missing, ``no_such`` when the file is not there.
    """
    config = entry.settings.get("config", "").strip()
    if not config:
        raise InputError(needs, field=f"{entry.name}.config")
    path = Path(config).expanduser().absolute()
    if not path.is_file():
        raise InputError(no_such, path=path, field=f"{entry.name}.config")
    return path


def config_settings(
    entry: DialEntry,
    known: Sequence[str],
    *,
    needs: str,
    no_such: str,
    check: Callable[[Path], object],
) -> dict[str, str]:
    """The settings of a link run from a config file, checked (its entry dialog, minus the
    dialog): none but ``known``, ``config`` an existing file that ``check`` accepts (given back
    as its absolute path), ``netns`` a namespace name. ``needs``/``no_such`` as for
    :func:`config_file`."""
    settings = check_settings(entry, known)
    path = config_file(entry, needs=needs, no_such=no_such)
    check(path)
    settings["config"] = str(path)
    check_netns(entry, settings)
    return settings


def check_netns(entry: DialEntry, settings: Mapping[str, str]) -> None:
    """A ``netns`` setting, when given, must be a name ``ip netns`` accepts."""
    if settings.get("netns"):
        proc.check_netns_name(settings["netns"], field=f"{entry.name}.netns")


def check_seconds(entry: DialEntry, settings: Mapping[str, str], keys: Iterable[str]) -> None:
    """Each of ``keys`` that is set must be a positive number of seconds."""
    for key in keys:
        if settings.get(key):
            try:
                if float(settings[key]) <= 0:
                    raise ValueError
            except ValueError:
                raise InputError(
                    f"{settings[key]!r} is not a positive number of seconds",
                    field=f"{entry.name}.{key}",
                ) from None


def existing_netns(entry: DialEntry) -> str | None:
    """The entry's network namespace (None: the host's), which must exist when dialling."""
    netns = entry.settings.get("netns") or None
    if netns and not proc.netns_exists(netns):
        raise DialError(
            f"{entry.name}: network namespace {netns!r} does not exist",
            code=codes.BAD_ENTRY,
            retryable=False,
        )
    return netns


def read_link_config(path: Path, keys: Sequence[str], *, what: str) -> dict[str, str]:
    """opencm's own config file for a link (SSTP, IKEv2): ``key = value`` lines, ``#`` comments,
    each of ``keys`` (any case) at most once. The values by lower-case key; InputError names the
    file and line of a mistake."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the {what} config: {error}", path=path) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        key, equals, value = (part.strip() for part in text.partition("="))
        if not equals or key.lower() not in keys:
            raise InputError(
                f"expected `key = value` with key one of {', '.join(keys)}",
                path=path,
                line=number,
            )
        if key.lower() in values:
            raise InputError(f"{key} is given twice", path=path, line=number)
        values[key.lower()] = value
    return values


def link_config_choice(
    path: Path, values: Mapping[str, str], key: str, choices: Sequence[str], default: str
) -> str:
    """The value of ``key`` in a link config (any case, lower-cased), one of ``choices``."""
    value = values.get(key, default).lower()
    if value not in choices:
        raise InputError(
            f"expected {key} one of {', '.join(choices)}, got {value!r}", path=path, field=key
        )
    return value


def link_config_files(
    path: Path, values: Mapping[str, str], keys: Iterable[str]
) -> dict[str, Path]:
    """The files that ``keys`` name in a link config, relative to its folder; each must exist."""
    files: dict[str, Path] = {}
    for key in keys:
        if values.get(key):
            file = Path(values[key])
            file = file if file.is_absolute() else path.parent / file
            if not file.is_file():
                raise InputError(f"no such file {file}", path=path, field=key)
            files[key] = file
    return files
