"""The Phone Book Administrator's limits ("How Connection Manager Works", "Performance
Limitations"), each with its own clear error.

Field lengths follow PBA's import page (name 30, area code 10, access number 35), which are
tighter than what MS-CPSP lets a client read (31, 11, 41): a book opencm writes is therefore
always readable by any client.
"""

from __future__ import annotations

import re

from opencm.errors import InputError, RefusedError

BOOK_NAME_MAX = 8
MAX_BOOKS = 100
MAX_POPS = 65_000
MAX_UPDATES = 32_676
#: A release carries deltas from this many previous versions, and the Phone Book Service sends
#: a client at most this many versions behind its delta (docs/pbs-protocol.md): one number for both.
DELTA_WINDOW = 5
IMPORT_UNPOSTED_MAX = 32_000
IMPORT_POSTED_MAX = 6_000

POP_NAME_MAX = 30
AREA_MAX = 10
ACCESS_MAX = 35
DUN_MAX = 50
REGION_NAME_MAX = 31
MAX_REGIONS = 32_000

_NAME_OK = re.compile(r"[A-Za-z0-9_]+")
_AREA = re.compile(r"[0-9]*")
_ACCESS = re.compile(r"[0-9#*\- ]*[0-9][0-9#*\- ]*")


def is_book_name(name: str) -> bool:
    """The phone-book name rule, the one every part applies (the PBA creating a book, the kit
    naming one, the publish store's folders, the PBS's ``pb=``): 1-8 ASCII letters, digits or
    '_', not all digits. The name becomes file and folder names on every side."""
    return (
        0 < len(name) <= BOOK_NAME_MAX
        and name.isascii()
        and _NAME_OK.fullmatch(name) is not None
        and not name.isdigit()
    )


def check_book_name(name: str, *, field: str = "name") -> str:
    """:func:`is_book_name`, or an :class:`InputError` saying which part of the rule fails."""
    if is_book_name(name):
        return name
    if not name:
        raise InputError("a phone book name cannot be empty", field=field)
    if len(name) > BOOK_NAME_MAX:
        raise InputError(
            f"phone book name {name!r} has {len(name)} characters; at most {BOOK_NAME_MAX}",
            field=field,
        )
    if name.isdigit():
        raise InputError(f"phone book name {name!r} cannot consist of all digits", field=field)
    bad = next(ch for ch in name if not (ch.isascii() and (ch.isalnum() or ch == "_")))
    raise InputError(
        f"phone book name {name!r} contains {bad!r}; use letters, digits and '_' only "
        "(no spaces or symbols)",
        field=field,
    )


def check_book_count(existing: int) -> None:
    if existing >= MAX_BOOKS:
        raise RefusedError(f"the workspace holds {existing} phone books; at most {MAX_BOOKS}")


def check_pop_count(count: int) -> None:
    if count > MAX_POPS:
        raise RefusedError(f"the phone book would hold {count:,} POPs; at most {MAX_POPS:,}")


def check_update_count(version: int) -> None:
    """``version`` is the release about to be made (release number = update count)."""
    if version > MAX_UPDATES:
        raise RefusedError(
            f"a phone book can be updated at most {MAX_UPDATES:,} times; this would be update "
            f"{version:,}"
        )


def check_import_size(rows: int, *, posted: bool, pending: int) -> None:
    """An import file's size: ≤ 32,000 POPs unposted, ≤ 6,000 operations per post once posted.

    ``pending`` counts the POP adds, edits and deletes already made since the last post.
    """
    if not posted:
        if rows > IMPORT_UNPOSTED_MAX:
            raise RefusedError(
                f"the import file holds {rows:,} POPs; a book not yet posted takes at most "
                f"{IMPORT_UNPOSTED_MAX:,} per import file"
            )
        return
    if rows + pending > IMPORT_POSTED_MAX:
        raise RefusedError(
            f"this import makes {rows:,} adds, edits and deletes, {pending:,} more are waiting "
            f"since the last post; a posted book takes at most {IMPORT_POSTED_MAX:,} per post "
            "(post first, then import the rest)"
        )


def check_text(value: str, field: str, limit: int) -> str:
    if "," in value or '"' in value or "\r" in value or "\n" in value:
        raise InputError(f"{value!r} cannot contain a comma, a quote or a line break", field=field)
    if not value.isascii() or not value.isprintable():
        raise InputError(
            f"{value!r} must be printable ASCII (MS-CPSP files are ASCII)", field=field
        )
    if len(value) > limit:
        raise InputError(f"{len(value)} characters; at most {limit}", field=field)
    return value


def check_area(value: str) -> str:
    value = value.replace("-", "").replace(" ", "")  # PBA accepts them; MS-CPSP wants digits
    if not _AREA.fullmatch(value):
        raise InputError(f"area code {value!r} must be digits", field="area")
    if len(value) > AREA_MAX:
        raise InputError(f"area code has {len(value)} digits; at most {AREA_MAX}", field="area")
    return value


def check_access(value: str) -> str:
    if not _ACCESS.fullmatch(value):
        raise InputError(
            f"access number {value!r} must hold digits and only '#', '*', '-' or spaces besides",
            field="access",
        )
    if len(value) > ACCESS_MAX:
        raise InputError(
            f"access number has {len(value)} characters; at most {ACCESS_MAX}", field="access"
        )
    return value
