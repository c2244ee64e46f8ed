"""The profile files' share of ``opencm profile check``: what will not behave the way its author
expects.

Each problem names the file and line. Nothing here is fatal to reading the profile (that raises
:class:`~opencm.errors.InputError` earlier); these are the quiet surprises of the Windows profile
API — a repeated section that is never read, a second key that loses to the first, a number that
is not one. What the action engine will refuse or skip is the actions' share; the whole check,
both together, is :func:`opencm.actions.check.check_profile`.
"""

from __future__ import annotations

from opencm.problems import Problem, Severity, sort_problems
from opencm.profile.ini import IniFile
from opencm.profile.model import CM, ServiceProfile

#: Integer keys of ``[Connection Manager]`` whose garbage values CM would silently replace.
INTEGER_KEYS = (
    "RedialCount",
    "RedialDelay",
    "IdleTimeout",
    "Dialup",
    "Direct",
    "Tunnel",
    "ConnectionType",
    "AutoReconnect",
    "NoPromptReconnect",
    "DownloadDelay",
    "HideDomain",
    "PasswordHandling",
    "UseSameUserName",
    "TunnelReferences",
)


def check_ini_structure(ini: IniFile, *, keys_need_equals: bool) -> list[Problem]:
    """Repeated sections and keys, stray lines: things the profile API silently ignores."""
    problems: list[Problem] = []
    seen_sections: dict[str, int] = {}
    seen_keys: dict[str, int] = {}
    in_section = False
    ignored_section = False
    for number, line in enumerate(ini.lines, start=1):
        if line.is_blank or line.is_comment:
            continue
        if line.is_section:
            in_section = True
            name = line.section_name.casefold()
            seen_keys = {}
            ignored_section = name in seen_sections
            if "]" not in line.stripped:
                problems.append(_warn(ini, number, f"section header {line.stripped!r} has no ']'"))
            if name in seen_sections:
                problems.append(
                    _warn(
                        ini,
                        number,
                        f"[{line.section_name}] repeats the section at line "
                        f"{seen_sections[name]}; only the first is ever read",
                    )
                )
            else:
                seen_sections[name] = number
            continue
        if not in_section:
            problems.append(_warn(ini, number, "text before the first [section] is never read"))
            continue
        if not line.has_key:
            if keys_need_equals:
                problems.append(_warn(ini, number, f"{line.stripped!r} has no '=': not a key"))
            continue
        key = line.key.casefold()
        if ignored_section:
            continue  # keys of a section that is never read are not compared with anything
        if key in seen_keys:
            problems.append(
                _warn(
                    ini,
                    number,
                    f"{line.key} repeats line {seen_keys[key]}; only the first value is read",
                )
            )
        else:
            seen_keys[key] = number
    return problems


def _warn(ini: IniFile, line: int, message: str) -> Problem:
    return Problem(message, ini.path, line)


def check_profile_files(profile: ServiceProfile) -> list[Problem]:
    """The problems of the profile's files as INI files, in file then line order."""
    problems: list[Problem] = [Problem(note, profile.cms_path) for note in profile.notes]
    if profile.cmp is not None:
        problems += check_ini_structure(profile.cmp, keys_need_equals=True)
    problems += check_ini_structure(profile.cms, keys_need_equals=True)
    if profile.inf is not None:
        # INF file lists are lines without '=' by design.
        problems += check_ini_structure(profile.inf, keys_need_equals=False)
    if not profile.cms.has_section(CM):
        problems.append(
            Problem("no [Connection Manager] section", profile.cms_path, severity=Severity.ERROR)
        )
    profile.cms.diagnostics.clear()
    for key in INTEGER_KEYS:
        profile.cms.get_int(CM, key, 0)
    problems += profile.cms.diagnostics
    return sort_problems(problems)
