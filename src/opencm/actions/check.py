"""``opencm profile check``: the profile files' problems and the action sections' ones together.

:func:`check_profile` is the whole check, for the CLI and any library caller alike; the files'
share comes from :mod:`opencm.profile.check`, the numbering and value problems of the nine action
sections from here. Repeated keys are left to the INI structure check (it reports them for every
section); whether a program exists on this machine is not a property of the profile, so it is
shown by ``opencm actions plan`` rather than here. What the profile names and cannot have (files,
a link for its connection type, a replacement for a Windows library) is
:mod:`opencm.actions.references`, and says what ``plan`` and ``connect`` say.
"""

from __future__ import annotations

from dataclasses import replace

from opencm.actions.api import ActionPoint
from opencm.actions.parse import parse_section
from opencm.actions.references import reference_problems
from opencm.problems import Problem, sort_problems
from opencm.profile.check import check_profile_files
from opencm.profile.model import ServiceProfile


def action_section_problems(profile: ServiceProfile) -> list[Problem]:
    problems: list[Problem] = []
    for point in ActionPoint:
        parsed = parse_section(point.section, profile.cms.entries(point.section))
        problems.extend(
            replace(problem, path=profile.cms_path, message=f"[{point.section}] {problem.message}")
            for problem in parsed.problems
            if problem.rule != "duplicate"
        )
    return problems


def check_profile(profile: ServiceProfile) -> list[Problem]:
    """Every problem ``opencm profile check`` reports for ``profile``, in file then line order."""
    return sort_problems(
        check_profile_files(profile)
        + action_section_problems(profile)
        + reference_problems(profile)
    )
