"""Finding an action's program on Linux and deciding how it runs (its kind).

Profiles are written for Windows: ``<short>\\cmroute.dll``, ``CMDL32.EXE``. Paths are relative to
the folder of the ``.cmp`` ("Custom actions keys"), use backslashes, and Windows does not care about
case. opencm resolves them component by component, case-insensitively, under that folder.

How a program becomes a kind:

- ``python:NAME`` → a Python action (``pyactions``).
- ``x.dll`` → the Linux library ``x.so`` beside it (same stem, any case), else the Python action
  ``x.<Entry>``, else a failure that says the DLL is not available on Linux.
- ``x.so`` → that library.
- ``x.exe``/``.com``/``.bat``/``.cmd`` → that file if it is executable here, else an executable
  ``x`` (no extension) beside it or, for a bare name, on ``PATH``.
- anything else that exists: an executable file (execute permission) → executable; a file
  without extension or with a script's (``.sh``, ``.py``, ``.pl``, ``.run``) that lacks execute
  permission → a failure; any other file or folder → a document, opened with ``xdg-open``.

A bare name (no folder) that is not in the profile folder is looked up on ``PATH``, unless the
action's 0x20 flag says the program is included in the profile. A program that flag says is
included must really be inside the profile folder once links and ``..`` are resolved
(``..\\..\\bin\\sh``, ``/bin/sh`` or a link out of the folder will not run, and the plan says why).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from opencm.actions.api import ActionKind
from opencm.actions.parse import ActionLine
from opencm.actions.pyactions import GROUP, PythonActions, replacement_name

WINDOWS_EXECUTABLES = frozenset({".exe", ".com", ".bat", ".cmd"})
#: Suffixes of a missing program that was surely meant to be executed, not opened.
_SCRIPT_SUFFIXES = frozenset({"", ".sh", ".py", ".pl", ".run"})
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:|\\\\|//)")
PYTHON_PREFIX = "python:"


@dataclass(frozen=True)
class Program:
    """Where an action's program is and how it runs; ``failure`` says why it cannot."""

    kind: ActionKind
    path: Path | None = None
    python_name: str | None = None
    failure: str | None = None

    def display(self, written: str) -> str:
        if self.python_name is not None:
            return f"{PYTHON_PREFIX}{self.python_name}"
        return str(self.path) if self.path is not None else written


class PathFinder:
    """Case-insensitive lookup of Windows-style relative paths, with cached folder listings."""

    def __init__(self) -> None:
        self._listings: dict[Path, dict[str, str]] = {}

    def _listing(self, directory: Path) -> dict[str, str]:
        listing = self._listings.get(directory)
        if listing is None:
            try:
                names = os.listdir(directory)
            except OSError:
                names = []
            listing = {}
            for name in sorted(names):  # sorted: a stable choice when two names differ by case
                listing.setdefault(name.lower(), name)
            self._listings[directory] = listing
        return listing

    def child(self, directory: Path, name: str) -> Path | None:
        """``directory/name`` matched case-insensitively, or None."""
        actual = self._listing(directory).get(name.lower())
        return directory / actual if actual is not None else None

    def find(self, base: Path, written: str) -> Path | None:
        """The existing file or folder ``written`` names, relative to ``base``, or None."""
        text = written.replace("\\", "/")
        exact = Path(text) if text.startswith("/") else base / text
        if _exists(exact):  # one stat; list folders only when the case differs
            return exact
        current = Path("/") if text.startswith("/") else base
        for part in text.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                current = current.parent
                continue
            found = self.child(current, part)
            if found is None:
                return None
            current = found
        return current if _exists(current) else None


def _exists(path: Path) -> bool:
    """``path.exists()``, False also for names the OS cannot even look up (a component over
    255 bytes, a NUL): such a program simply is not there."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_bare(written: str) -> bool:
    return "/" not in written and "\\" not in written


def _split_windows(written: str) -> tuple[str, str]:
    """(folder part with its trailing separator, file name)."""
    match = re.match(r"(.*[\\/])?(.*)", written)
    assert match is not None
    return match.group(1) or "", match.group(2)


def _executable_file(path: Path | None) -> bool:
    return path is not None and path.is_file() and os.access(path, os.X_OK)


def _outside(path: Path, base: Path) -> bool:
    return not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(base))


def _contained(program: Program, base: Path, written: str) -> Program:
    """``program`` unless its file lies outside ``base``: then why it will not run."""
    if program.path is None or program.failure is not None or not _outside(program.path, base):
        return program
    return Program(
        program.kind,
        failure=(
            f"{written} resolves to {os.path.realpath(program.path)}, outside the profile folder "
            f"({base}), but flag 0x20 says the program is included in the profile"
        ),
    )


def locate(
    action: ActionLine,
    base: Path,
    *,
    included: bool,
    python: PythonActions,
    finder: PathFinder,
) -> Program:
    """Resolve ``action``'s program under ``base`` (the profile folder) into a :class:`Program`."""
    program = _locate(action, base, included=included, python=python, finder=finder)
    return _contained(program, base, action.program) if included else program


def _locate(
    action: ActionLine,
    base: Path,
    *,
    included: bool,
    python: PythonActions,
    finder: PathFinder,
) -> Program:
    written = action.program
    if written.lower().startswith(PYTHON_PREFIX):
        name = written[len(PYTHON_PREFIX) :].strip()
        if name and python.has(name):
            return Program(ActionKind.PYTHON, python_name=name)
        return Program(
            ActionKind.PYTHON,
            failure=f"no Python action named {name!r} is registered (entry-point group {GROUP})",
        )
    if _WINDOWS_ABSOLUTE.match(written):
        kind = ActionKind.LIBRARY if action.is_library else ActionKind.EXECUTABLE
        return Program(
            kind, failure=f"{written} is an absolute Windows path, which does not exist on Linux"
        )
    folder, name = _split_windows(written)
    suffix = os.path.splitext(name)[1].lower()
    may_search_path = _is_bare(written) and not included
    expected = base / written.replace("\\", "/")

    if action.is_library:
        if suffix != ".dll":
            path = finder.find(base, written)
            if path is None:
                return Program(
                    ActionKind.LIBRARY, failure=f"library {written} not found ({expected})"
                )
            return Program(ActionKind.LIBRARY, path=path)
        stem = name[: -len(".dll")]
        path = finder.find(base, f"{folder}{stem}.so")
        if path is not None:
            return Program(ActionKind.LIBRARY, path=path)
        entry = action.entry or ""
        substitute = replacement_name(stem, entry)
        if entry and python.has(substitute):
            return Program(ActionKind.PYTHON, python_name=substitute)
        return Program(
            ActionKind.LIBRARY,
            failure=(
                f"{name} is a Windows library, not available on Linux: no {stem}.so beside it"
                f" ({expected.parent}) and no Python action {substitute!r} registered"
                f" (entry-point group {GROUP})"
            ),
        )

    path = finder.find(base, written)
    if suffix in WINDOWS_EXECUTABLES:
        if _executable_file(path):
            return Program(ActionKind.EXECUTABLE, path=path)
        stem = name[: -len(suffix)]
        native = finder.find(base, f"{folder}{stem}")
        if not _executable_file(native) and may_search_path:
            which = shutil.which(stem)
            native = Path(which) if which else None
        if native is not None and _executable_file(native):
            return Program(ActionKind.EXECUTABLE, path=native)
        where = " or on PATH" if may_search_path else ""
        return Program(
            ActionKind.EXECUTABLE,
            failure=(
                f"{name} is a Windows program, not available on Linux: no executable {stem!r}"
                f" beside it ({expected.parent}){where}"
            ),
        )

    if path is None and may_search_path:
        which = shutil.which(written)
        if which:
            return Program(ActionKind.EXECUTABLE, path=Path(which))
    if path is None:
        kind = ActionKind.EXECUTABLE if suffix in _SCRIPT_SUFFIXES else ActionKind.DOCUMENT
        where = " nor on PATH" if may_search_path else ""
        return Program(
            kind, failure=f"{written} not found: not in the profile folder ({expected}){where}"
        )
    if _executable_file(path):
        return Program(ActionKind.EXECUTABLE, path=path)
    if suffix in _SCRIPT_SUFFIXES and path.is_file():
        return Program(
            ActionKind.EXECUTABLE,
            path=path,
            failure=f"{path} is not executable (it needs execute permission: chmod +x)",
        )
    return Program(ActionKind.DOCUMENT, path=path)
