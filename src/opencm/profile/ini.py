"""Lossless INI files with the Windows profile-API semantics Connection Manager relies on.

Real ``.cms``, ``.cmp`` and ``.inf`` files come from Windows tools: CRLF or LF, UTF-16LE with a
BOM or an ANSI code page, duplicate sections and keys, INF lines without ``=``, ``&``-joined
names, and text nobody expanded (``${ServerCertificate}``). No library reads them the way Windows
does *and* writes them back unchanged, so this module keeps every line as it was read:

- ``IniFile.parse(data).render() == data`` for any input, byte for byte;
- look-ups follow ``GetPrivateProfileString``: section and key names are case-insensitive and
  trimmed, only the **first** section of a repeated name is read, the **first** key wins, a line
  starting with ``;`` is a comment (a *value* starting with ``;`` is not), and matching outer
  quotes are stripped from a value;
- an edit rewrites only the line it touches, or inserts one in the file's own line ending and
  encoding.

Usage::

    ini = IniFile.load("Contoso.cms")
    ini.get("Connection Manager", "ServiceName")       # 'Contoso VPN'
    ini.get_int("Connection Manager", "RedialCount", 3)
    ini.set("Connection Manager", "RedialDelay", "10")
    ini.save()                                          # atomic; untouched lines unchanged
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, SupportsIndex

from opencm.errors import InputError
from opencm.fsutil import atomic_write
from opencm.problems import Problem

_EOL = re.compile(r"\r\n|\n|\r")
#: Characters str.splitlines() also breaks on; INI files only break on CR and LF.
_OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_INT_PREFIX = re.compile(r"[+-]?(0[xX][0-9A-Fa-f]+|[0-9]+)")


@dataclass(frozen=True)
class Encoding:
    """How a file's bytes map to text, kept so that writing gives the same bytes back."""

    #: Python codec name: "utf-16-le", "utf-8" or "cp1252".
    codec: str
    bom: bytes = b""

    @property
    def label(self) -> str:
        names = {"utf-16-le": "UTF-16LE", "utf-8": "UTF-8", "cp1252": "cp1252"}
        return names[self.codec] + (" with BOM" if self.bom else "")

    def decode(self, data: bytes) -> str:
        # surrogateescape keeps bytes the code page does not map, so they are written back as-is.
        errors = "surrogatepass" if self.codec == "utf-16-le" else "surrogateescape"
        return data.decode(self.codec, errors=errors)

    def encode(self, text: str) -> bytes:
        errors = "surrogatepass" if self.codec == "utf-16-le" else "surrogateescape"
        return text.encode(self.codec, errors=errors)


def detect_encoding(data: bytes) -> Encoding:
    """UTF-16LE and UTF-8 by their BOM, UTF-8 when the bytes are valid UTF-8, else cp1252."""
    if data.startswith(codecs.BOM_UTF16_LE):
        try:
            data[2:].decode("utf-16-le", errors="surrogatepass")
            return Encoding("utf-16-le", codecs.BOM_UTF16_LE)
        except UnicodeDecodeError:
            return Encoding("cp1252")  # an odd byte count: not really UTF-16, keep the bytes
    if data.startswith(codecs.BOM_UTF8):
        return Encoding("utf-8", codecs.BOM_UTF8)
    try:
        data.decode("utf-8")
        return Encoding("utf-8")
    except UnicodeDecodeError:
        return Encoding("cp1252")


class Line:
    """One physical line: its text without the terminator, and the terminator itself.

    What kind of line it is gets worked out once, when the text is set: look-ups over files
    with thousands of action lines ask every line several times.
    """

    __slots__ = ("_text", "eol", "is_blank", "is_comment", "is_section", "stripped")

    def __init__(self, text: str, eol: str) -> None:
        self.eol = eol
        self.text = text

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        self._text = value
        self.stripped = value.strip(" \t")
        first = self.stripped[:1]
        self.is_blank = not first
        self.is_comment = first == ";"
        self.is_section = first == "["

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Line) and (self.text, self.eol) == (other.text, other.eol)

    def __repr__(self) -> str:
        return f"Line({self.text!r}, {self.eol!r})"

    @property
    def section_name(self) -> str:
        inner = self.stripped[1:]
        end = inner.find("]")
        return (inner if end < 0 else inner[:end]).strip(" \t")

    @property
    def has_key(self) -> bool:
        return not (self.is_section or self.is_comment or self.is_blank) and "=" in self._text

    @property
    def key(self) -> str:
        return self._text.partition("=")[0].strip(" \t")

    @property
    def raw_value(self) -> str:
        return self._text.partition("=")[2].strip(" \t")

    def key_and_value(self) -> tuple[str, str]:
        key, _, value = self._text.partition("=")
        return key.strip(" \t"), value.strip(" \t")


def _split_lines(text: str) -> list[Line]:
    """Lines with their own terminators (CRLF, LF or CR), the last one possibly without."""
    lines: list[Line] = []
    if not _OTHER_BREAKS.search(text):
        # Fast path: splitlines runs in C and, without the exotic breaks, splits like _EOL.
        for chunk in text.splitlines(keepends=True):
            if chunk.endswith("\r\n"):
                lines.append(Line(chunk[:-2], "\r\n"))
            elif chunk[-1] in "\r\n":
                lines.append(Line(chunk[:-1], chunk[-1]))
            else:
                lines.append(Line(chunk, ""))
        return lines
    position = 0
    for match in _EOL.finditer(text):
        lines.append(Line(text[position : match.start()], match.group()))
        position = match.end()
    if position < len(text):
        lines.append(Line(text[position:], ""))
    return lines


def unquote(value: str) -> str:
    """Strip one pair of matching outer quotes, as GetPrivateProfileString does."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


@dataclass(frozen=True)
class IniEntry:
    """A ``key=value`` line as the profile API sees it, with where it stands in the file."""

    key: str
    #: The value with Windows semantics: trimmed, one pair of outer quotes removed.
    value: str
    #: The value trimmed but with its quotes: what a parser of its own syntax should read
    #: (custom-action lines quote program paths that contain spaces).
    raw_value: str
    #: 1-based line number.
    line: int


@dataclass(frozen=True)
class ContentLine:
    """A non-blank, non-comment line of a section, including INF lines without ``=``."""

    text: str
    line: int


def _check_writable_names(section: str, key: str) -> None:
    """Refuse a section or key name that would not read back as itself.

    Windows reads ``[a]b]`` as section ``a``, a key ``a=b`` as key ``a`` with value ``b=…``, a key
    starting with ``;`` as a comment and one starting with ``[`` as a section header; blanks
    around either name are dropped on reading. Writing such a name would silently change the
    profile, so it is refused here instead.
    """
    field = f"[{section}] {key}"
    problems: list[str] = []
    if not section or section != section.strip(" \t") or any(c in section for c in "]\r\n\0"):
        problems.append(
            f"section name {section!r}: expected a non-empty name without ']', line breaks,"
            " NUL or surrounding blanks"
        )
    if not key or key != key.strip(" \t") or key[0] in ";[" or any(c in key for c in "=\r\n\0"):
        problems.append(
            f"key name {key!r}: expected a non-empty name without '=', line breaks, NUL or"
            " surrounding blanks, not starting with ';' or '['"
        )
    if problems:
        raise InputError("; ".join(problems), field=field)


class _Lines(list[Line]):
    """The file's lines; any change to the list drops the owner's section index."""

    def __init__(self, lines: list[Line], on_change: Callable[[], None]) -> None:
        super().__init__(lines)
        self._on_change = on_change

    def _changed(self) -> None:
        self._on_change()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._changed()

    def __delitem__(self, index: Any) -> None:
        super().__delitem__(index)
        self._changed()

    def __iadd__(self, other: Iterable[Line]) -> Self:  # type: ignore[override, misc]
        super().__iadd__(other)
        self._changed()
        return self

    def append(self, value: Line) -> None:
        super().append(value)
        self._changed()

    def extend(self, values: Iterable[Line]) -> None:
        super().extend(values)
        self._changed()

    def insert(self, index: SupportsIndex, value: Line) -> None:
        super().insert(index, value)
        self._changed()

    def pop(self, index: SupportsIndex = -1) -> Line:
        value = super().pop(index)
        self._changed()
        return value

    def remove(self, value: Line) -> None:
        super().remove(value)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()


@dataclass(frozen=True)
class _SectionSpan:
    name: str
    header: int  # index of the header line
    end: int  # index one past the section's last line


class IniFile:
    """A whole INI file as lines, with profile-API look-ups and line-preserving edits."""

    def __init__(self, lines: list[Line], encoding: Encoding, path: Path | None = None) -> None:
        self._span_cache: list[_SectionSpan] | None = None
        self._first_by_name: dict[str, _SectionSpan] = {}
        self._lines = _Lines(lines, self._forget_spans)
        self.encoding = encoding
        self.path = path
        #: The line ending for the first line added to a file that has none yet.
        self.default_eol = "\r\n"
        #: Warnings from look-ups (integers that were not integers, …), in the order met;
        #: the caller decides where they are shown (``profile check``, the CLI's stderr, a log).
        self.diagnostics: list[Problem] = []

    @property
    def lines(self) -> list[Line]:
        """The physical lines; edit through the methods, or this list (it keeps the index true)."""
        return self._lines

    @lines.setter
    def lines(self, lines: list[Line]) -> None:
        self._lines = _Lines(lines, self._forget_spans)
        self._forget_spans()

    def _forget_spans(self) -> None:
        self._span_cache = None

    # -- reading and writing -------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, path: str | Path | None = None) -> IniFile:
        encoding = detect_encoding(data)
        text = encoding.decode(data[len(encoding.bom) :])
        return cls(_split_lines(text), encoding, Path(path) if path is not None else None)

    @classmethod
    def load(cls, path: str | Path) -> IniFile:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise InputError(f"cannot read: {error.strerror}", path=path) from error
        return cls.parse(data, path)

    @classmethod
    def new(cls, path: str | Path | None = None, *, eol: str = "\r\n") -> IniFile:
        """An empty file that will be written the way CMAK writes: cp1252-compatible, CRLF."""
        ini = cls([], Encoding("utf-8"), Path(path) if path is not None else None)
        ini.default_eol = eol
        return ini

    def render(self) -> bytes:
        text = "".join(line.text + line.eol for line in self.lines)
        return self.encoding.bom + self.encoding.encode(text)

    def save(self, path: str | Path | None = None) -> None:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("no path to save to")
        atomic_write(target, self.render())
        self.path = target

    # -- structure -----------------------------------------------------------------------

    def _spans(self) -> list[_SectionSpan]:
        # Any change to the list of lines drops the cache (see _Lines); a line's text changes
        # only through set(), which never turns a key line into a section header.
        if self._span_cache is None:
            self._span_cache = self._scan_spans()
            # Look-ups by name go through this index: a scan per look-up made listing every
            # section of a large file quadratic.
            self._first_by_name = {}
            for span in self._span_cache:
                self._first_by_name.setdefault(span.name.casefold(), span)
        return self._span_cache

    def _scan_spans(self) -> list[_SectionSpan]:
        spans: list[_SectionSpan] = []
        for index, line in enumerate(self.lines):
            if line.is_section:
                if spans:
                    spans[-1] = _SectionSpan(spans[-1].name, spans[-1].header, index)
                spans.append(_SectionSpan(line.section_name, index, len(self.lines)))
        return spans

    def _first_span(self, section: str) -> _SectionSpan | None:
        self._spans()
        return self._first_by_name.get(section.strip().casefold())

    def sections(self) -> list[str]:
        """Section names in file order, repeats included (only the first is ever read)."""
        return [span.name for span in self._spans()]

    def has_section(self, section: str) -> bool:
        return self._first_span(section) is not None

    def _key_lines(self, span: _SectionSpan) -> Iterator[tuple[int, Line]]:
        for index in range(span.header + 1, span.end):
            line = self.lines[index]
            if line.has_key:
                yield index, line

    def entries(self, section: str) -> list[IniEntry]:
        """The ``key=value`` lines of the first section named ``section``, in file order.

        Repeated keys are all listed (a caller that wants Windows' answer uses :meth:`get`).
        """
        span = self._first_span(section)
        if span is None:
            return []
        entries = []
        for index, line in self._key_lines(span):
            key, raw = line.key_and_value()
            entries.append(IniEntry(key, unquote(raw), raw, index + 1))
        return entries

    def content_lines(self, section: str) -> list[ContentLine]:
        """Every line of the first such section that is not blank or a comment."""
        span = self._first_span(section)
        if span is None:
            return []
        return [
            ContentLine(self.lines[i].stripped, i + 1)
            for i in range(span.header + 1, span.end)
            if not (self.lines[i].is_blank or self.lines[i].is_comment)
        ]

    def _find(self, section: str, key: str) -> tuple[int, Line] | None:
        span = self._first_span(section)
        if span is None:
            return None
        wanted = key.strip().casefold()
        return next(
            ((i, line) for i, line in self._key_lines(span) if line.key.casefold() == wanted),
            None,
        )

    # -- look-ups ------------------------------------------------------------------------

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        """The value GetPrivateProfileString would return, or ``default`` when absent."""
        found = self._find(section, key)
        return default if found is None else unquote(found[1].raw_value)

    def line_of(self, section: str, key: str) -> int | None:
        """1-based line number of the key that :meth:`get` reads."""
        found = self._find(section, key)
        return None if found is None else found[0] + 1

    def get_int(self, section: str, key: str, default: int) -> int:
        """An integer the way "Custom actions keys" describes: ``1.1`` reads as 1, garbage gives
        ``default``.

        Hex (``0x0040``, as in ``[ISP]`` masks) is accepted. Anything not a clean integer leaves
        a diagnostic naming the file and line.
        """
        found = self._find(section, key)
        if found is None:
            return default
        index, line = found
        value = unquote(line.raw_value)
        match = _INT_PREFIX.match(value)
        if match is None:
            self._warn(index, f"[{section}] {key}={value!r} is not an integer; using {default}")
            return default
        digits = match.group()
        if re.fullmatch(r"[+-]?0[0-9]+", digits) and digits.lstrip("+-0"):
            # 08 or 010: Windows reads decimal, C (and Python's base 0) octal; say so.
            raise InputError(
                f"{value!r} is not a clear integer: a leading 0 reads as octal in some tools "
                f"and decimal in others; write {int(digits, 10)}",
                path=self.path,
                line=index + 1,
                field=f"[{section}] {key}",
            )
        number = int(digits, 0)
        if match.end() != len(value):
            self._warn(index, f"[{section}] {key}={value!r} read as the integer {number}")
        return number

    def get_bool(self, section: str, key: str, default: bool) -> bool:
        return self.get_int(section, key, int(default)) != 0

    def _warn(self, index: int, message: str) -> None:
        diagnostic = Problem(message, self.path, index + 1)
        if diagnostic not in self.diagnostics:
            self.diagnostics.append(diagnostic)

    # -- edits ---------------------------------------------------------------------------

    def _eol(self) -> str:
        """The file's own line ending: the most common one, CRLF for a new file."""
        counts: dict[str, int] = {}
        for line in self.lines:
            if line.eol:
                counts[line.eol] = counts.get(line.eol, 0) + 1
        if counts:
            return max(counts, key=lambda eol: counts[eol])
        return self.default_eol

    def _check_encodable(self, text: str) -> None:
        try:
            text.encode(self.encoding.codec)
        except UnicodeEncodeError as error:
            raise InputError(
                f"{text!r} cannot be written in this file's encoding ({self.encoding.label})",
                path=self.path,
            ) from error

    def _insert(self, index: int, text: str) -> None:
        eol = self._eol()
        new = Line(text, eol)
        if index > 0 and not self.lines[index - 1].eol:
            # Appending after a last line without a newline: that line gets one, and the new
            # last line goes without, so the file keeps its "no final newline" shape.
            self.lines[index - 1].eol = eol
            new.eol = ""
        self.lines.insert(index, new)

    def set(self, section: str, key: str, value: str) -> None:
        """Set ``key`` in the first ``section``: rewrite its line, or add one (and the section)."""
        if "\n" in value or "\r" in value:
            raise InputError(f"a value cannot span lines: {value!r}", field=f"[{section}] {key}")
        _check_writable_names(section, key)
        self._check_encodable(section + key + value)
        found = self._find(section, key)
        if found is not None:
            line = found[1]
            before, after = line.text.split("=", 1)
            lead = after[: len(after) - len(after.lstrip(" \t"))]
            trail = after[len(after.rstrip(" \t")) :] if after.strip(" \t") else ""
            line.text = f"{before}={lead}{value}{trail}"
            return
        span = self._first_span(section)
        if span is None:
            if self.lines and not self.lines[-1].is_blank:
                self._insert(len(self.lines), "")
            self._insert(len(self.lines), f"[{section}]")
            self._insert(len(self.lines), f"{key}={value}")
            return
        # After the section's last non-blank line, as WritePrivateProfileString does.
        last = span.header
        for index in range(span.header + 1, span.end):
            if not self.lines[index].is_blank:
                last = index
        self._insert(last + 1, f"{key}={value}")

    def delete(self, section: str, key: str) -> bool:
        """Remove the key :meth:`get` would read; True if there was one."""
        found = self._find(section, key)
        if found is None:
            return False
        index = found[0]
        removed = self.lines.pop(index)
        if not removed.eol and index > 0:
            self.lines[index - 1].eol = ""  # keep "no final newline" as it was
        return True
