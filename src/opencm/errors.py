"""The errors opencm shows to people, and their exit codes.

Every mistake a user or administrator can make (a malformed profile, a bad request, a missing
program) is raised as an :class:`OpencmError` subclass that names the file, line and field where
it can. The CLI prints these without a traceback; anything else is a bug.

Exit codes, shared by every command:

- ``0`` success
- ``1`` the command ran and found problems (a check with warnings, an action that failed)
- ``2`` bad input: unreadable or malformed files, wrong arguments
- ``3`` refused: a signature, a policy or an allow list said no
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


def where(path: str | Path | None, line: int | None = None, field: str | None = None) -> str:
    """Render a location as ``path:line: field`` with the parts that are known."""
    parts: list[str] = []
    if path is not None:
        parts.append(str(path) + (f":{line}" if line is not None else ""))
    elif line is not None:
        parts.append(f"line {line}")
    if field:
        parts.append(field)
    return ": ".join(parts)


class OpencmError(Exception):
    """A problem a person can fix; shown as one message, never as a traceback."""

    #: The process exit code when this error ends a command.
    exit_code: int = EXIT_PROBLEMS

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.field = field

    def __str__(self) -> str:
        location = where(self.path, self.line, self.field)
        return f"{location}: {self.message}" if location else self.message


class InputError(OpencmError):
    """Input that cannot be read or does not have the expected form."""

    exit_code = EXIT_BAD_INPUT


class RefusedError(OpencmError):
    """A signature check, a policy or an allow list refused the request."""

    exit_code = EXIT_REFUSED


class DiskFullError(OpencmError):
    """A write ran out of space (or quota); what was there before is left as it was."""

    exit_code = EXIT_PROBLEMS

    def __init__(self, path: str | Path, needed: int | None = None) -> None:
        import shutil

        target = Path(path)
        folder = next((p for p in (target, *target.parents) if p.is_dir()), Path("."))
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        parts = ["no space left on the device"]
        if needed is not None:
            parts.append(f"about {_size(needed)} needed")
        if free is not None:
            parts.append(f"{_size(free)} free in {folder}")
        super().__init__(
            "; ".join(parts) + " (nothing was changed: free some space and try again)",
            path=target,
        )


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def is_disk_full(error: BaseException, path: str | Path | None = None) -> bool:
    """True for the OS's "no space" and "quota exceeded" and SQLite's "disk is full"; and for
    SQLite's vaguer "disk I/O error" when ``path``'s file system has no space left (SQLite
    reports a full disk that way when it cannot grow its WAL index)."""
    import errno

    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if type(error).__module__ != "sqlite3":  # not imported here: start-up cost for every command
        return False
    text = str(error)
    if "disk is full" in text:
        return True
    if "disk I/O error" in text and path is not None:
        import shutil

        folder = next((p for p in (Path(path), *Path(path).parents) if p.is_dir()), None)
        try:
            return folder is not None and shutil.disk_usage(folder).free < 64 * 1024
        except OSError:
            return False
    return False
