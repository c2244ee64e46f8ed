"""Reading one action section (``[Connect Actions]`` …) into numbered action lines.

A section holds three kinds of keys ("Custom actions keys"): ``N`` (the action line), ``N&Flags``
and ``N&Description``; opencm adds ``N&Wait`` (docs/actions.md). Actions run in order 0, 1, 2,
… and, like CM's read loop, opencm stops at the first missing number: actions after a gap never
run (the plan says "follows a gap at N").
An empty ``N=`` counts as missing, because Windows' profile API cannot tell the two apart.

The action line itself (``docs/actions.md`` has the full grammar)::

    program [parameters]
    "program with spaces" [parameters]        (also +program with spaces+, CM's own quoting)
    dir\\library.dll,Entry [parameters]        (a library: the entry point follows the comma)
    python:NAME [parameters]                    (an opencm Python action)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from opencm.actions.cmint import parse_cm_int
from opencm.actions.macros import tokenize
from opencm.actions.source import EntryLike
from opencm.problems import Problem

#: Extensions that make a program a shared library, called in-process by CM (and out of
#: process by opencm). ``.so.1`` and the like count too.
_LIBRARY_SUFFIX = re.compile(r"\.(?:dll|so(?:\.[0-9]+)*)$", re.IGNORECASE)
#: An unquoted library line whose path contains spaces: ``C:\Program Files\x.dll,Entry …``.
_LIBRARY_WITH_COMMA = re.compile(r"(.+?\.(?:dll|so(?:\.[0-9]+)*)),(.*)", re.IGNORECASE | re.DOTALL)
#: CM reads key "1", never "01": leading zeros make a key that is never read.
_SUFFIXES = {"flags": "flags", "description": "description", "wait": "wait"}
#: ``N&Wait`` *(opencm)*: the longest wait, in seconds, for an executable or a document.
MAX_WAIT = 3600


def _index(text: str) -> int | None:
    """The action number a key names, or None (CM reads key "1", never "01" or "+1")."""
    if text.isascii() and text.isdigit() and (text[0] != "0" or text == "0"):
        return int(text)
    return None


def _basename(written: str) -> str:
    return written[max(written.rfind("\\"), written.rfind("/")) + 1 :]


def is_library_name(program: str) -> bool:
    return bool(_LIBRARY_SUFFIX.search(program))


def _problem(line: int | None, message: str, rule: str | None = None) -> Problem:
    """A problem of a section at a line of its file (None: not tied to one line); the caller
    that knows the file adds its path. ``rule`` is "numbering" for problems with the keys
    themselves, "duplicate" for a repeated key, None for a bad value.
    """
    return Problem(message, line=line, rule=rule)


@dataclass(slots=True)  # not frozen: cheaper to build for large sections; treat as read-only
class ActionLine:
    """One numbered action as written in the section, before anything is resolved."""

    index: int
    line: int
    #: The ``N=`` value as written.
    text: str
    #: The program as written, without quotes (``<short>\\cmroute.dll``, ``python:sync``).
    program: str
    #: For a library: the entry point named after the comma (or as first parameter).
    entry: str | None
    #: The parameter string after the program (and after a library's entry point).
    parameters: str
    flags: int = 0
    #: ``N&Description``, or None when absent or empty.
    description: str | None = None
    #: ``N&Wait`` *(opencm)*: wait up to this many seconds for an executable or document to
    #: exit (its exit status then counts); None: start it and go on (Microsoft's default).
    wait: int | None = None
    notes: tuple[str, ...] = ()
    #: The parameters split into arguments (before macro expansion; see macros.py).
    tokens: tuple[str, ...] = ()

    @property
    def is_library(self) -> bool:
        return is_library_name(self.program)

    @property
    def program_name(self) -> str:
        """The file name part of the program, the default description ("Incorporating Custom
        Actions")."""
        return _basename(self.program) or self.program


@dataclass(frozen=True)
class ParsedSection:
    section: str
    #: Every action line found, in number order, including those after a gap.
    actions: tuple[ActionLine, ...]
    #: The first missing number when actions follow it (they never run), else None.
    gap_at: int | None
    problems: tuple[Problem, ...] = field(default=())

    def runnable(self) -> tuple[ActionLine, ...]:
        """The actions CM's read loop reaches: those before the gap."""
        if self.gap_at is None:
            return self.actions
        return tuple(action for action in self.actions if action.index < self.gap_at)


def split_action_line(text: str) -> tuple[str, str | None, str, list[str]]:
    """Split an action line into (program, entry point, parameters, notes).

    The program is quoted (``"…"`` or ``+…+``) or runs up to the first whitespace; a library is
    ``file.dll,Entry`` (also ``.so``), and its entry point is the first token after the comma,
    removed from the parameters. A library written without the comma takes its first parameter
    as the entry point, which is how the CMAK dialog describes it.
    """
    notes: list[str] = []
    value = text.strip()
    comma_form = False
    if value[:1] in ('"', "+"):
        quote = value[0]
        end = value.find(quote, 1)
        if end < 0:
            notes.append(f"the program's opening {quote} is never closed; read to the end")
            program, rest = value[1:], ""
        else:
            program, rest = value[1:end], value[end + 1 :]
        if rest.startswith(",") and is_library_name(program):
            comma_form, rest = True, rest[1:]
    else:
        first, rest = _split_first_token(value)
        program = first
        head, comma, tail = first.partition(",")
        if comma and is_library_name(head):
            program, rest, comma_form = head, tail + rest, True
        elif "." not in _basename(first):
            # "C:\Program Files\x.dll,Entry": a library path with spaces, written unquoted.
            match = _LIBRARY_WITH_COMMA.fullmatch(value)
            if match:
                program, rest, comma_form = match.group(1), match.group(2), True
    rest = rest.strip()
    entry: str | None = None
    if is_library_name(program):
        entry, rest = _split_first_token(rest)
        rest = rest.strip()
        if not entry:
            entry = None
            notes.append("a library action needs an entry point: write file.dll,Entry")
        elif not comma_form:
            notes.append(f"no comma after the library; {entry!r} is taken as its entry point")
    return program.strip(), entry, rest, notes


_FIRST_TOKEN = re.compile(r"\s*(\S*)(.*)", re.DOTALL)


def _split_first_token(text: str) -> tuple[str, str]:
    match = _FIRST_TOKEN.match(text)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2)


def parse_section(section: str, entries: Sequence[EntryLike]) -> ParsedSection:
    """Read a section's entries (in file order) into its numbered actions and its problems."""
    problems: list[Problem] = []
    programs: dict[int, EntryLike] = {}
    flags: dict[int, EntryLike] = {}
    descriptions: dict[int, EntryLike] = {}
    waits: dict[int, EntryLike] = {}
    empty: dict[int, EntryLike] = {}
    for entry in entries:
        key = entry.key.strip()
        number, ampersand, suffix = key.partition("&")
        index = _index(number)
        kind = _SUFFIXES.get(suffix.lower()) if ampersand else "program"
        if index is None or kind is None:
            problems.append(
                _problem(
                    entry.line,
                    f"key {key!r} is never read: [{section}] holds N, N&Flags, N&Description"
                    " and N&Wait with N written without leading zeros",
                    "numbering",
                )
            )
            continue
        if kind == "program":
            target = programs
            if not entry.value.strip():
                if index not in programs and index not in empty:
                    empty[index] = entry
                    problems.append(
                        _problem(entry.line, f"action {index} has no program", "numbering")
                    )
                continue
        else:
            target = {"flags": flags, "description": descriptions, "wait": waits}[kind]
        if index in target:
            problems.append(
                _problem(
                    entry.line,
                    f"duplicate key {key!r}; the first one, on line {target[index].line}, is used",
                    "duplicate",
                )
            )
            continue
        target[index] = entry

    for table in (flags, descriptions, waits):
        for index, entry in table.items():
            if index not in programs:
                problems.append(
                    _problem(
                        entry.line,
                        f"{entry.key.strip()} belongs to no action: there is no key {index}",
                        "numbering",
                    )
                )

    gap_at = next(number for number in range(len(programs) + 1) if number not in programs)
    if not any(index > gap_at for index in programs):
        gap_at_or_none: int | None = None
    else:
        gap_at_or_none = gap_at
        late = sorted(index for index in programs if index > gap_at)
        problems.append(
            _problem(
                programs[late[0]].line,
                f"action{'s' if len(late) > 1 else ''} {', '.join(map(str, late))} follow"
                f"{'' if len(late) > 1 else 's'} a gap at {gap_at}: the numbers must run"
                f" 0, 1, 2, … without a hole, so {'they' if len(late) > 1 else 'it'} never run"
                f"{'' if len(late) > 1 else 's'}",
                "numbering",
            )
        )

    actions: list[ActionLine] = []
    for index in sorted(programs):
        entry = programs[index]
        # The INI layer strips one pair of outer quotes (Windows semantics); an action line
        # needs them ("C:\\dir with space\\x.exe" "arg"), so read the raw value when offered.
        text = getattr(entry, "raw_value", entry.value)
        program, entry_point, parameters, notes = split_action_line(text)
        if notes:
            problems.extend(_problem(entry.line, f"action {index}: {note}") for note in notes)
        flag_value = 0
        flag_entry = flags.get(index)
        if flag_entry is not None and flag_entry.value.isdigit() and flag_entry.value.isascii():
            flag_value = int(flag_entry.value)  # the common case, a plain number
        elif flag_entry is not None:
            parsed = parse_cm_int(flag_entry.value, 0)
            flag_value = parsed.value
            if parsed.value < 0:
                problems.append(
                    _problem(
                        flags[index].line, f"{index}&Flags {parsed.value} is negative; using 0"
                    )
                )
                flag_value = 0
            elif parsed.warning:
                problems.append(_problem(flags[index].line, f"{index}&Flags: {parsed.warning}"))
                notes.append(f"{index}&Flags: {parsed.warning}")
        wait: int | None = None
        wait_entry = waits.get(index)
        if wait_entry is not None:
            text_value = wait_entry.value.strip()
            if text_value.isdigit() and text_value.isascii() and int(text_value) <= MAX_WAIT:
                wait = int(text_value)
            else:
                problems.append(
                    _problem(
                        wait_entry.line,
                        f"{index}&Wait {text_value!r} is not a number of seconds from 0 to"
                        f" {MAX_WAIT}; the program is not waited for",
                    )
                )
        description_entry = descriptions.get(index)
        description = description_entry.value.strip() if description_entry is not None else ""
        tokens = tokenize(parameters)
        if tokens.unterminated_quote:
            notes.append("a double quote in the parameters is never closed")
        actions.append(
            ActionLine(
                index=index,
                line=entry.line,
                text=text,
                program=program,
                entry=entry_point,
                parameters=parameters,
                flags=flag_value,
                description=description or None,
                wait=wait,
                notes=tuple(notes),
                tokens=tokens.words,
            )
        )
    problems.sort(key=lambda problem: (problem.line is None, problem.line or 0))
    return ParsedSection(section, tuple(actions), gap_at_or_none, tuple(problems))


def numbering_problems(
    entries: Sequence[EntryLike], section: str = "this section"
) -> list[tuple[int, str]]:
    """The (line, message) list ``profile check`` shows for a section's keys: gaps, duplicates,
    keys CM never reads, flags or descriptions of missing actions."""
    parsed = parse_section(section, entries)
    return [
        (problem.line or 0, problem.message)
        for problem in parsed.problems
        if problem.rule in ("numbering", "duplicate")
    ]
