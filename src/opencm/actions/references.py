"""``profile check``'s share that agrees with ``actions plan`` and ``connect``: what a profile
names and cannot have.

- a file it names that is not there (icons, help file, ``PBFile``, ``RegionFile``, a link's
  config and the certificates and keys that config names beside it, an included action program,
  a ``cmroute`` route file), or a route file with a bad line;
- a RAS phone book where a POP book is expected (a profile that dials);
- no link for its connection type: it tunnels but names no ``[opencm] VpnServer0`` (with what
  its RAS book offers and ``opencm import``), the same words ``connect`` uses;
- a Windows library with no replacement on Linux (what ``actions plan`` says will fail);
- a shipped link config naming an absolute path (it works only where that path exists) or key
  material readable by others (``opencm.secrecy``).
"""

from __future__ import annotations

import stat
from pathlib import Path, PureWindowsPath

from opencm.actions.api import ActionPoint
from opencm.actions.cmroute import parse_route_file, parse_switches
from opencm.actions.parse import parse_section
from opencm.actions.pyactions import PythonActions, replacement_name
from opencm.errors import OpencmError
from opencm.problems import Problem, Severity
from opencm.profile.model import CM, ServiceProfile, resolve_case_insensitive
from opencm.profile.rasbook import BookKind, ras_hint, sniff_phonebook
from opencm.secrecy import looks_secret

OPENCM = "opencm"
#: OpenVPN directives that name a file.
_FILE_DIRECTIVES = frozenset(
    {
        "ca",
        "cert",
        "key",
        "tls-auth",
        "tls-crypt",
        "tls-crypt-v2",
        "pkcs12",
        "extra-certs",
        "crl-verify",
        "secret",
        "auth-user-pass",
    }
)


def _error(message: str, path: str | Path | None, line: int | None) -> Problem:
    return Problem(message, path, line, severity=Severity.ERROR)


class _Checker:
    def __init__(self, profile: ServiceProfile, python: PythonActions) -> None:
        self.profile = profile
        self.python = python
        self.cms = profile.cms_path
        self.problems: list[Problem] = []

    def named_file(self, section: str, key: str, value: str) -> Path | None:
        path = self.profile.resolve(value)
        if not path.is_file():
            self.problems.append(
                _error(
                    f"[{section}] {key}={value} names a file that is not in the profile",
                    self.cms,
                    self.profile.cms.line_of(section, key),
                )
            )
            return None
        return path

    def files(self) -> None:
        for section, key in (
            (CM, "Icon"),
            (CM, "SmallIcon"),
            (CM, "TrayIcon"),
            (CM, "Logo"),
            (CM, "HelpFile"),
            ("ISP", "PBFile"),
            ("ISP", "RegionFile"),
        ):
            value = (self.profile.cms.get(section, key) or "").strip()
            if value:
                self.named_file(section, key, value)

    def phonebook(self) -> None:
        book = self.profile.phonebook_path()
        if book is None or not book.is_file():
            return
        try:
            kind = sniff_phonebook(book.read_bytes())
        except OSError:
            return
        dials = any(kind_.dials for kind_ in self.profile.supported_types())
        if kind is BookKind.RAS and dials:
            self.problems.append(
                _error(
                    "[ISP] PBFile is a RAS phone book (VPN/dial-up entries) where this dial-up"
                    " profile expects an MS-CPSP POP phone book",
                    self.cms,
                    self.profile.cms.line_of("ISP", "PBFile"),
                )
            )

    def links(self) -> None:
        cms = self.profile.cms
        tunnels = any(kind.tunnels for kind in self.profile.supported_types())
        servers = [e for e in cms.entries(OPENCM) if e.key.casefold().startswith("vpnserver")]
        if tunnels and not servers:
            self.problems.append(
                _error(
                    "no link for its tunnel: [opencm] VpnServer0 is missing"
                    + ras_hint(self.profile),
                    self.cms,
                    cms.line_of(CM, "Tunnel"),
                )
            )
        for entry in cms.entries(OPENCM):
            if not entry.key.casefold().startswith("config&") or not entry.value:
                continue
            path = self.named_file(OPENCM, entry.key, entry.value)
            if path is not None:
                self.shipped_config(path)

    def shipped_config(self, path: Path) -> None:
        try:
            data = path.read_bytes()
            mode = path.stat().st_mode
        except OSError:
            return
        if looks_secret(path.name, data) and stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO):
            self.problems.append(
                _error(
                    f"holds key material but is mode {stat.S_IMODE(mode):04o}: others can"
                    " read it (chmod 600)",
                    path,
                    None,
                )
            )
        if path.suffix.casefold() not in (".ovpn", ".conf", ".ikev2"):
            return
        for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            words = raw.split("#", 1)[0].replace("=", " ").split()
            if len(words) < 2:
                continue
            directive = words[0].removeprefix("--").lower()
            if directive not in _FILE_DIRECTIVES:
                continue
            if words[1].startswith("/"):
                self.problems.append(
                    Problem(
                        f"{directive} names the absolute path {words[1]}: the profile works"
                        " only on a machine where it exists (`opencm import` carries the"
                        " file instead)",
                        path,
                        number,
                    )
                )
            elif words[1] != "[inline]" and not (path.parent / words[1]).is_file():
                # The links read these beside the config (OpenVPN runs in its folder, the
                # IKEv2 link resolves them there): a kit built without them cannot connect.
                self.problems.append(
                    _error(
                        f"{directive} names {words[1]}, which is not in the profile (beside"
                        f" {path.name}): the link cannot start without it",
                        path,
                        number,
                    )
                )

    def actions(self) -> None:
        for point in ActionPoint:
            parsed = parse_section(point.section, self.profile.cms.entries(point.section))
            for action in parsed.actions:
                name = PureWindowsPath(action.program).name
                stem, dot, suffix = name.rpartition(".")
                if dot and suffix.casefold() == "dll":
                    self.windows_library(point, action.program, stem, action.entry, action.line)
                if stem.casefold() == "cmroute" and (action.entry or "").casefold() == "setroutes":
                    self.route_file(" ".join(action.tokens), action.line)
                elif action.flags & 0x20 and not dot.endswith("dll"):
                    program = resolve_case_insensitive(self.profile.profile_dir, action.program)
                    if not program.exists():
                        self.problems.append(
                            _error(
                                f"[{point.section}] {action.index}: {action.program} is"
                                " included (0x20) but not in the profile",
                                self.cms,
                                action.line,
                            )
                        )

    def windows_library(
        self, point: ActionPoint, program: str, stem: str, entry: str | None, line: int
    ) -> None:
        folder = program[: len(program) - len(PureWindowsPath(program).name)]
        native = resolve_case_insensitive(self.profile.profile_dir, f"{folder}{stem}.so")
        if native.exists() or (entry and self.python.has(replacement_name(stem, entry))):
            return
        self.problems.append(
            _error(
                f"[{point.section}] {PureWindowsPath(program).name},{entry or ''}: a Windows"
                " library with no Linux replacement (no .so beside it, no built-in)",
                self.cms,
                line,
            )
        )

    def route_file(self, arguments: str, line: int) -> None:
        try:
            switches = parse_switches(arguments)
        except OpencmError as error:
            self.problems.append(_error(error.message, self.cms, line))
            return
        if not switches.static_file:
            return
        path = resolve_case_insensitive(self.profile.service_dir, switches.static_file)
        if not path.is_file():
            self.problems.append(
                _error(
                    f"cmroute's route file {switches.static_file} is not in the profile",
                    self.cms,
                    line,
                )
            )
            return
        try:
            parse_route_file(path.read_bytes(), path)
        except OpencmError as error:
            self.problems.append(_error(error.message, error.path, error.line))


def reference_problems(
    profile: ServiceProfile, python: PythonActions | None = None
) -> list[Problem]:
    checker = _Checker(profile, python or PythonActions())
    checker.files()
    checker.phonebook()
    checker.links()
    checker.actions()
    return checker.problems


__all__ = ["reference_problems"]
