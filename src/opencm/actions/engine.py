"""The action engine: plans and runs the custom actions of one service profile.

:class:`ActionEngine` implements :class:`opencm.actions.api.ActionRunner`. It runs exactly what
:meth:`ActionEngine.plan` shows, in number order:

- libraries (``.so``, or a ``.dll``'s Linux replacement) are called out of process by the
  library host, with ``context.timeout``; they block the point;
- Python actions are called in-process; they block the point;
- executables and documents are started (``Popen`` with an argv list, never a shell) and
  returned unawaited in ``ActionResult.process``: Microsoft's "Custom Actions" runs them
  asynchronously; a caller that honours ``N&Wait`` (``ActionResult.wait``) waits for them.

A failure reads ``Custom Action <Description> failed <value>`` (a return value) or
``Custom Action <Description> failed: <reason>``; at a fatal point (pre-init … post-connect) the
first failure ends the point, the rest are reported as not run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Collection, Mapping

from opencm.actions.api import (
    FATAL_POINTS,
    ActionKind,
    ActionPoint,
    ActionResult,
    PointResult,
    RunContext,
)
from opencm.actions.libhost import LibraryHost
from opencm.actions.parse import ParsedSection, parse_section
from opencm.actions.plan import LogonCheck, PlannedAction, plan_section
from opencm.actions.pyactions import CURRENT_CONTEXT, PythonAction, PythonActions
from opencm.actions.source import ActionSource
from opencm.errors import OpencmError
from opencm.problems import Problem

#: What may run at logon: None (nothing, the default), program paths / ``python:NAME`` names,
#: or a predicate over the planned action.
LogonAllowList = Collection[str] | Callable[[PlannedAction], bool] | None


def logon_check(allowed: LogonAllowList) -> LogonCheck:
    """Turn an allow list into a predicate; privileged runs are off unless allowed."""
    if allowed is None:
        return lambda _action: False
    if callable(allowed):
        return allowed
    names = frozenset(allowed)
    return lambda action: action.program in names


def running_text(description: str) -> str:
    """What the status pane shows while a synchronous action runs ("Incorporating Custom
    Actions")."""
    return f"Running Custom Action {description}"


def failure_message(description: str, value: int | str) -> str:
    """The user-facing text of a failed action ("Incorporating Custom Actions")."""
    if isinstance(value, int):
        return f"Custom Action {description} failed {value}"
    return f"Custom Action {description} failed: {value}"


class ActionEngine:
    """Plans and runs one profile's actions; close it (or use ``with``) to end its library host."""

    def __init__(
        self,
        source: ActionSource,
        *,
        logon_allowed: LogonAllowList = None,
        python_actions: PythonActions | Mapping[str, PythonAction] | None = None,
        library_host: LibraryHost | None = None,
        on_running: Callable[[PlannedAction, str], None] | None = None,
    ) -> None:
        """``on_running(action, text)`` is called before each action that runs, with CM's
        status text, "Running Custom Action <Description>" ("Incorporating Custom Actions"),
        for the status pane. For a library or Python action the caller's window is frozen until
        it returns; an executable the session waits for shows the same line *(opencm)*."""
        self.source = source
        self._logon_allowed = logon_check(logon_allowed)
        self.python = (
            python_actions
            if isinstance(python_actions, PythonActions)
            else PythonActions(python_actions)
        )
        self._host = library_host
        self._owns_host = library_host is None
        self._parsed: dict[ActionPoint, ParsedSection] = {}
        self._on_running = on_running

    def __enter__(self) -> ActionEngine:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._host is not None and self._owns_host:
            self._host.close()

    @property
    def library_host(self) -> LibraryHost:
        if self._host is None:
            self._host = LibraryHost()
        return self._host

    # -- reading and planning ---------------------------------------------------------------

    def parsed(self, point: ActionPoint) -> ParsedSection:
        if point not in self._parsed:
            self._parsed[point] = parse_section(point.section, self.source.entries(point.section))
        return self._parsed[point]

    def has_actions(self, point: ActionPoint) -> bool:
        return bool(self.parsed(point).actions)

    def problems(self) -> list[tuple[ActionPoint, Problem]]:
        """Every problem of every action section, for warnings and ``profile check``."""
        return [
            (point, problem) for point in ActionPoint for problem in self.parsed(point).problems
        ]

    def plan(self, point: ActionPoint, context: RunContext) -> list[PlannedAction]:
        """What ``run_point`` would do, without doing any of it."""
        return plan_section(
            point,
            self.parsed(point),
            context,
            python=self.python,
            logon_allowed=self._logon_allowed,
        )

    # -- running ----------------------------------------------------------------------------

    def run_point(self, point: ActionPoint, context: RunContext) -> PointResult:
        result = PointResult(point)
        stopped_by: int | None = None
        for planned in self.plan(point, context):
            if stopped_by is not None:
                result.results.append(
                    _not_run(planned, f"not run: action {stopped_by} failed at a fatal point")
                )
                continue
            if planned.skip_reason is not None:
                result.results.append(_not_run(planned, planned.skip_reason))
                continue
            outcome = self._run_one(planned, context)
            result.results.append(outcome)
            if not outcome.ok and point in FATAL_POINTS:
                stopped_by = planned.index
        return result

    def start_monitored(self, context: RunContext) -> list[subprocess.Popen[bytes]]:
        """Start the monitored applications (``[Auto Applications]``); the caller watches them.

        Raises nothing: a monitored entry that is not an executable is a failed result of
        ``run_point(ActionPoint.MONITORED, …)``; this returns the processes that started.
        """
        point = self.run_point(ActionPoint.MONITORED, context)
        return [result.process for result in point.results if result.process is not None]

    def _run_one(self, planned: PlannedAction, context: RunContext) -> ActionResult:
        started = time.monotonic()
        result = _result(planned, ran=False)
        if planned.failure is not None:
            result.ok = False
            result.message = failure_message(planned.description, planned.failure)
            return result
        if self._on_running is not None:
            self._on_running(planned, running_text(planned.description))
        if planned.kind is ActionKind.LIBRARY:
            self._call_library(planned, context, result)
        elif planned.kind is ActionKind.PYTHON:
            self._call_python(planned, context, result)
        else:
            self._start_process(planned, context, result)
        result.duration = time.monotonic() - started
        return result

    def _call_library(
        self, planned: PlannedAction, context: RunContext, result: ActionResult
    ) -> None:
        assert planned.path is not None and planned.entry is not None
        call = self.library_host.call(
            planned.path, planned.entry, planned.command_line, context.timeout
        )
        result.ran = True
        result.return_value = call.value
        if not call.ok:
            result.ok = False
            detail: int | str = call.value if call.value is not None else call.describe()
            result.message = failure_message(planned.description, detail)

    def _call_python(
        self, planned: PlannedAction, context: RunContext, result: ActionResult
    ) -> None:
        assert planned.python_name is not None
        result.ran = True
        token = CURRENT_CONTEXT.set(context)
        try:
            function = self.python.load(planned.python_name)
            value = function(None, None, planned.command_line, 0)
        except OpencmError as error:  # a built-in action's verdict on what the profile says
            result.ok = False
            result.message = failure_message(planned.description, str(error))
            return
        except Exception as error:  # a plug-in's bug is this action's failure, not opencm's
            result.ok = False
            result.message = failure_message(
                planned.description, f"raised {type(error).__name__}: {error}"
            )
            return
        finally:
            CURRENT_CONTEXT.reset(token)
        if isinstance(value, bool) or not isinstance(value, int):
            result.ok = False
            result.message = failure_message(
                planned.description, f"returned {value!r}, not an integer"
            )
            return
        result.return_value = value
        if value < 0:
            result.ok = False
            result.message = failure_message(planned.description, value)

    def _start_process(
        self, planned: PlannedAction, context: RunContext, result: ActionResult
    ) -> None:
        argv = list(planned.argv)
        # A relative program path was resolved against the caller's folder (a profile given as
        # build/X/X.cmp); the process starts in the profile folder, so it needs the full path.
        index = 1 if planned.kind is ActionKind.DOCUMENT else 0
        if os.sep in argv[index] and not os.path.isabs(argv[index]):
            argv[index] = os.path.abspath(argv[index])
        if planned.kind is ActionKind.DOCUMENT:
            opener = shutil.which("xdg-open")
            if opener is None:
                result.ok = False
                result.message = failure_message(
                    planned.description, "cannot open a document: xdg-open is not installed"
                )
                return
            argv[0] = opener
        try:
            # Never a shell: the argv goes to execve as it is. Output goes to stderr so it never
            # mixes with what opencm prints on stdout (--json).
            process = subprocess.Popen(
                argv,
                shell=False,
                cwd=context.profile_dir if context.profile_dir.is_dir() else None,
                stdin=subprocess.DEVNULL,
                stdout=2,
            )
        except (OSError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            result.ok = False
            result.message = failure_message(
                planned.description, f"cannot start {argv[0]}: {reason}"
            )
            return
        result.ran = True
        result.process = process


def _result(planned: PlannedAction, *, ran: bool) -> ActionResult:
    library_like = planned.kind in (ActionKind.LIBRARY, ActionKind.PYTHON)
    return ActionResult(
        index=planned.index,
        description=planned.description,
        kind=planned.kind,
        program=planned.program,
        argv=list(planned.args) if library_like else planned.argv,
        command_line=planned.command_line,
        flags=planned.flags,
        ran=ran,
        wait=planned.wait,
    )


def _not_run(planned: PlannedAction, reason: str) -> ActionResult:
    result = _result(planned, ran=False)
    result.skip_reason = reason
    return result


__all__ = ["ActionEngine", "LogonAllowList", "failure_message", "logon_check", "running_text"]
