"""The plan of one action point: what will run, with which argv, and why anything will not.

Planning has no side effects (it reads the profile folder and the registered Python actions,
nothing more), so ``opencm actions plan`` can show an administrator exactly what a connection
would do, and the engine runs precisely what it planned.

Why an action does not run, checked in this order:

1. it follows a gap in the numbering (``follows a gap at N``);
2. its connection bits exclude this connection type;
3. it interacts with the user (no 0x10 bit) and nobody is at the screen;
4. the connection runs at logon with system rights and the program is not allowed then;
5. it cannot run here (program missing, a Windows DLL without a Linux replacement …): the plan
   says ``will fail: …`` and, at a fatal point, the actions after it do not run either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from opencm.actions import flags as flagbits
from opencm.actions.api import FATAL_POINTS, ActionKind, ActionPoint, RunContext
from opencm.actions.macros import command_line, expand, macro_table
from opencm.actions.parse import ParsedSection
from opencm.actions.programs import PathFinder, Program, locate
from opencm.actions.pyactions import PythonActions

#: Decides whether a planned action may run at logon (system rights); see engine.LogonAllowList.
LogonCheck = Callable[["PlannedAction"], bool]


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which makes building
# one several times slower, and plans hold thousands (benchmarks/actions.py times them).
@dataclass(slots=True)
class PlannedAction:
    """One action of a point as it will (or will not) run. Treat it as read-only."""

    point: ActionPoint
    index: int
    #: Line of ``N=`` in the service file.
    line: int
    kind: ActionKind
    #: The program as written in the profile.
    written: str
    #: The file that runs (resolved path), ``python:NAME``, or the written program if unresolved.
    program: str
    path: Path | None
    python_name: str | None
    entry: str | None
    #: The expanded parameters: the argv after the program, one element per written token.
    args: tuple[str, ...]
    #: What a library or Python action receives, and what people see for executables.
    command_line: str
    flags: int
    description: str
    #: A reason the action is skipped (gap, connection type, unattended, logon), or None.
    skip_reason: str | None
    #: Why it cannot run here (it will be reported as failed), or None.
    failure: str | None
    #: At a fatal point, the earlier action whose certain failure stops this one.
    blocked_by: int | None = None
    notes: tuple[str, ...] = ()
    #: ``N&Wait`` for an executable or document: seconds the session waits for it to exit
    #: (then its exit status counts); None: started, not waited for. Libraries and Python
    #: actions always run to their end.
    wait: int | None = None

    @property
    def waits(self) -> str:
        """How the session treats the action's end: "returns", "waits N s" or "started"."""
        if self.kind in (ActionKind.LIBRARY, ActionKind.PYTHON):
            return "returns"
        return "started" if self.wait is None else f"waits {self.wait} s"

    @property
    def runs(self) -> bool:
        return self.skip_reason is None and self.failure is None and self.blocked_by is None

    @property
    def reason(self) -> str | None:
        """The single "why not" shown in the plan."""
        if self.skip_reason is not None:
            return self.skip_reason
        if self.failure is not None:
            return f"will fail: {self.failure}"
        if self.blocked_by is not None:
            return f"the point stops at the failure of action {self.blocked_by}"
        return None

    @property
    def argv(self) -> list[str]:
        """The exact argv of an executable or document (no shell is ever involved)."""
        if self.kind is ActionKind.DOCUMENT:
            return ["xdg-open", self.program]
        return [self.program, *self.args]

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "kind": self.kind.value,
            "program": self.program,
            "entry": self.entry,
            "args": list(self.args),
            "command_line": self.command_line,
            "flags": self.flags,
            "description": self.description,
            "wait": self.wait,
            "synchronous": self.kind in (ActionKind.LIBRARY, ActionKind.PYTHON)
            or self.wait is not None,
            "runs": self.runs,
            "skip_reason": self.reason,
        }


def context_macros(context: RunContext) -> dict[str, str | None]:
    """The macro table of a run: the caller's values plus those the context itself knows."""
    table = macro_table(context.macros)
    table["connectiontype"] = str(int(context.connection_type))
    table["interactive"] = "1" if context.interactive else "0"
    return table


def plan_section(
    point: ActionPoint,
    parsed: ParsedSection,
    context: RunContext,
    *,
    python: PythonActions,
    logon_allowed: LogonCheck,
    finder: PathFinder | None = None,
    macros: Mapping[str, str | None] | None = None,
) -> list[PlannedAction]:
    """Plan every action of ``parsed`` for ``context``; see the module docstring."""
    finder = finder or PathFinder()
    table = macros if macros is not None else context_macros(context)
    planned: list[PlannedAction] = []
    stopped_by: int | None = None
    # A profile names few distinct programs; resolve each once per plan.
    located: dict[tuple[str, bool, str | None], tuple[Program, str]] = {}
    connection_type = context.connection_type
    for action in parsed.actions:
        included = flagbits.included_in_profile(action.flags)
        key = (action.program, included, action.entry)
        found = located.get(key)
        if found is None:
            resolved = locate(
                action, context.profile_dir, included=included, python=python, finder=finder
            )
            found = located[key] = (resolved, resolved.display(action.program))
        program, display = found
        failure = program.failure
        notes = action.notes
        kind = program.kind
        if point is ActionPoint.MONITORED and kind is not ActionKind.EXECUTABLE and not failure:
            failure = (
                f"monitored applications must be executables (they are watched until they"
                f" exit); {action.program} is a {kind.value} action"
            )
        args = [expand(word, table) for word in action.tokens]
        if failure is None and kind is ActionKind.LIBRARY and not action.entry:
            failure = f"{action.program} names no entry point: write {action.program},Entry"
        if failure is None:
            failure = _unpassable(args)
        if kind is ActionKind.DOCUMENT and args:
            notes += ("a document is opened with xdg-open; its parameters are not passed",)

        skip: str | None = None
        if parsed.gap_at is not None and action.index > parsed.gap_at:
            skip = f"follows a gap at {parsed.gap_at}"
        elif connection_type not in flagbits.admitted_types(action.flags):
            skip = flagbits.connection_skip_reason(action.flags, connection_type)
        elif flagbits.interacts_with_user(action.flags) and not context.interactive:
            skip = (
                "interacts with the user (flag 0x10 not set) and nobody is at the screen"
                " (unattended)"
            )
        entry = PlannedAction(
            point=point,
            index=action.index,
            line=action.line,
            kind=kind,
            written=action.program,
            program=display,
            path=program.path,
            python_name=program.python_name,
            entry=action.entry,
            args=tuple(args),
            command_line=command_line(args),
            flags=action.flags,
            description=action.description or action.program_name,
            wait=action.wait if kind in (ActionKind.EXECUTABLE, ActionKind.DOCUMENT) else None,
            skip_reason=skip,
            failure=failure,
            blocked_by=stopped_by if skip is None else None,
            notes=notes,
        )
        if skip is None and context.logon and not logon_allowed(entry):
            entry = replace(
                entry,
                skip_reason="runs at logon with system rights and the program is not on the logon"
                " allow list",
                blocked_by=None,
            )
        elif skip is None and stopped_by is None and failure is not None and point in FATAL_POINTS:
            stopped_by = action.index
        planned.append(entry)
    return planned


def _unpassable(args: list[str]) -> str | None:
    """Why an argument cannot reach a program exactly as written, or None."""
    for argument in args:
        if "\0" in argument:
            # execve and C strings end at NUL: the argument could not arrive as written.
            return "a parameter contains a NUL character, which no program can receive"
        if not argument.isascii():
            try:
                argument.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                return f"a parameter cannot be encoded for the system: {argument!r}"
    return None
