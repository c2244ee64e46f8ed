"""Writing the keys the kit controls into a profile file without losing anyone's hand edits.

CMAK's "advanced customization" is a hand edit of the built files followed by a rebuild. opencm
keeps that workflow safe: a rebuild edits the existing file in place (the lossless INI engine
rewrites only the lines it touches) and touches only the keys the kit controls. For each of those
it compares three values: what the file holds now, what the previous build wrote (kept in the
build state), and what this build wants.

==========================  ==============================  ==========================
file now                    previous build wrote            what happens
==========================  ==============================  ==========================
= wanted                    anything                        nothing
= previous (untouched)      value                           set to wanted
differs (hand edit)         value, or never written         reported; kept unless
                                                             ``--overwrite``
absent (deleted by hand)    value                           reported; kept absent
                                                             unless ``--overwrite``
==========================  ==============================  ==========================

A key the previous build wrote that this build no longer wants is deleted when untouched and
reported when hand-edited. "List" sections (INF file lists, lines without ``=``) are controlled
as a whole and follow the same table, line by line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from opencm.errors import where
from opencm.profile.ini import IniFile, Line, unquote

#: (section, key) folded for comparison the way the profile API compares names.
Slot = tuple[str, str]
#: Marker key for a list section in the build state.
LIST_KEY = "*lines*"


def slot(section: str, key: str) -> Slot:
    return (section.strip().casefold(), key.strip().casefold())


@dataclass(frozen=True)
class Conflict:
    """A key the kit controls that somebody edited by hand."""

    file: str
    section: str
    key: str
    line: int | None
    #: The hand-edited value (None: deleted by hand).
    current: str | None
    #: What the build writes (None: the build would remove it).
    wanted: str | None
    overwritten: bool

    def __str__(self) -> str:
        location = where(self.file, self.line or None)
        what = "[" + self.section + "]" + ("" if self.key == LIST_KEY else f" {self.key}")
        now = "deleted by hand" if self.current is None else f"hand-edited to {self.current!r}"
        wanted = "removes it" if self.wanted is None else f"writes {self.wanted!r}"
        outcome = (
            "overwritten (--overwrite)"
            if self.overwritten
            else "kept; rebuild with --overwrite to replace it"
        )
        return f"{location}: {what} {now}, the kit {wanted}: {outcome}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "section": self.section,
            "key": None if self.key == LIST_KEY else self.key,
            "line": self.line,
            "current": self.current,
            "wanted": self.wanted,
            "overwritten": self.overwritten,
        }


@dataclass
class Desired:
    """Everything the kit writes into one file, in the order a new file gets it."""

    #: Sections in order; each with its key/value pairs (values as written, quotes included).
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    #: Sections whose whole body is a list of lines (INF file lists).
    lists: dict[str, list[str]] = field(default_factory=dict)

    def section(self, name: str, *pairs: tuple[str, str]) -> None:
        self.sections.append((name, list(pairs)))

    def add(self, name: str, key: str, value: str) -> None:
        for section_name, pairs in self.sections:
            if section_name == name:
                pairs.append((key, value))
                return
        self.sections.append((name, [(key, value)]))

    def list_section(self, name: str, lines: Sequence[str]) -> None:
        self.sections.append((name, []))
        self.lists[name] = list(lines)

    def keys(self) -> dict[Slot, tuple[str, str, str]]:
        return {
            slot(section, key): (section, key, value)
            for section, pairs in self.sections
            for key, value in pairs
        }

    def render(self, eol: str = "\r\n") -> bytes:
        """A new file: sections in order, a blank line between them, CMAK's CRLF."""
        out: list[str] = []
        for index, (name, pairs) in enumerate(self.sections):
            if index:
                out.append("")
            out.append(f"[{name}]")
            out.extend(f"{key}={value}" for key, value in pairs)
            out.extend(self.lists.get(name, []))
        return "".join(line + eol for line in out).encode("utf-8")

    def state(self) -> list[list[str]]:
        """What the build state remembers: [section, key, value] rows, list lines joined."""
        rows = [[section, key, value] for section, pairs in self.sections for key, value in pairs]
        rows += [[name, LIST_KEY, "\n".join(lines)] for name, lines in self.lists.items()]
        return rows


def _eol(ini: IniFile) -> str:
    return next((line.eol for line in ini.lines if line.eol), ini.default_eol)


def _section_range(ini: IniFile, section: str) -> tuple[int, int] | None:
    """Header index and end index (exclusive) of the first section of that name."""
    wanted = section.casefold()
    header: int | None = None
    for index, line in enumerate(ini.lines):
        if line.is_section:
            if header is not None:
                return header, index
            if line.section_name.casefold() == wanted:
                header = index
    return None if header is None else (header, len(ini.lines))


def ensure_section(ini: IniFile, section: str) -> None:
    """Add an empty ``[section]`` at the end when the file has none (CMAK writes empty ones)."""
    if _section_range(ini, section) is not None:
        return
    eol = _eol(ini)
    if ini.lines and not ini.lines[-1].eol:
        ini.lines[-1].eol = eol
    if ini.lines and not ini.lines[-1].is_blank:
        ini.lines.append(Line("", eol))
    ini.lines.append(Line(f"[{section}]", eol))


def list_lines(ini: IniFile, section: str) -> list[str] | None:
    found = _section_range(ini, section)
    if found is None:
        return None
    return [c.text for c in ini.content_lines(section)]


def replace_list(ini: IniFile, section: str, lines: Sequence[str]) -> None:
    """Make the section's body exactly ``lines`` (comments and blank lines around are kept)."""
    ensure_section(ini, section)
    found = _section_range(ini, section)
    assert found is not None
    header, end = found
    eol = _eol(ini)
    kept_tail: list[Line] = []
    body = ini.lines[header + 1 : end]
    # Trailing blank lines separate this section from the next one: keep them after the list.
    while body and body[-1].is_blank:
        kept_tail.insert(0, body.pop())
    comments = [line for line in body if line.is_comment]
    new_body = comments + [Line(text, eol) for text in lines]
    if end == len(ini.lines) and not kept_tail and new_body:
        ini.lines[header].eol = ini.lines[header].eol or eol
    ini.lines[header + 1 : end] = new_body + kept_tail


def reconcile(
    ini: IniFile,
    desired: Desired,
    previous: Mapping[Slot, str] | None,
    *,
    file_label: str,
    overwrite: bool,
) -> list[Conflict]:
    """Bring ``ini`` to ``desired`` following the table in the module docstring."""
    conflicts: list[Conflict] = []
    previous = previous or {}
    for section, _pairs in desired.sections:
        ensure_section(ini, section)
    wanted = desired.keys()
    for key_slot, (section, key, value) in wanted.items():
        current = ini.get(section, key)
        if current == unquote(value):
            continue
        if key_slot in previous:
            hand_edited = current != unquote(previous[key_slot])
        else:
            hand_edited = current is not None
        if hand_edited:
            conflicts.append(
                Conflict(
                    file_label,
                    section,
                    key,
                    ini.line_of(section, key),
                    current,
                    unquote(value),
                    overwrite,
                )
            )
            if not overwrite:
                continue
        ini.set(section, key, value)
    for key_slot, old in previous.items():
        if key_slot in wanted or key_slot[1] == LIST_KEY.casefold():
            continue
        section, key = _spelled(ini, *key_slot)
        current = ini.get(section, key)
        if current is None:
            continue
        if current != unquote(old):
            conflicts.append(
                Conflict(
                    file_label, section, key, ini.line_of(section, key), current, None, overwrite
                )
            )
            if not overwrite:
                continue
        ini.delete(section, key)
    for section, lines in desired.lists.items():
        current_lines = list_lines(ini, section) or []
        if current_lines == lines:
            continue
        old_lines = previous.get(slot(section, LIST_KEY))
        hand_edited = (
            current_lines != (old_lines.split("\n") if old_lines else [])
            if old_lines is not None
            else bool(current_lines)
        )
        if hand_edited:
            conflicts.append(
                Conflict(
                    file_label,
                    section,
                    LIST_KEY,
                    None,
                    "; ".join(current_lines),
                    "; ".join(lines),
                    overwrite,
                )
            )
            if not overwrite:
                continue
        replace_list(ini, section, lines)
    return conflicts


def _spelled(ini: IniFile, section: str, key: str) -> tuple[str, str]:
    """The section and key as the file spells them (the build state keeps them folded)."""
    spelled_section = next((n for n in ini.sections() if n.casefold() == section), section)
    spelled_key = next((e.key for e in ini.entries(section) if e.key.casefold() == key), key)
    return spelled_section, spelled_key


def previous_from_rows(rows: Iterable[Sequence[str]]) -> dict[Slot, str]:
    return {slot(row[0], row[1]): row[2] for row in rows if len(row) == 3}
