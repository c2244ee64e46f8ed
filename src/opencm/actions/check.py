"""The action sections' share of ``opencm profile check``: numbering and value problems.

Registered with :func:`opencm.profile.check.register_check` when the ``actions`` CLI group is
loaded. Repeated keys are left to the INI structure check (it reports them for every section);
whether a program exists on this machine is not a property of the profile, so it is shown by
``opencm actions plan`` rather than here.
"""

from __future__ import annotations

from opencm.actions.api import ActionPoint
from opencm.actions.parse import parse_section
from opencm.profile.check import Problem, Severity, register_check
from opencm.profile.model import ServiceProfile


def action_section_problems(profile: ServiceProfile) -> list[Problem]:
    problems: list[Problem] = []
    for point in ActionPoint:
        parsed = parse_section(point.section, profile.cms.entries(point.section))
        problems.extend(
            Problem(
                Severity.WARNING,
                profile.cms_path,
                problem.line,
                f"[{point.section}] {problem.message}",
            )
            for problem in parsed.problems
            if problem.category != "duplicate"
        )
    return problems


_registered: list[bool] = []


def register() -> None:
    """Add the action checks to ``profile check`` (once, however often it is called)."""
    if not _registered:
        register_check(action_section_problems)
        _registered.append(True)
