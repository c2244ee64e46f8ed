"""Importing a Windows Connection Manager profile: settings, RAS entries, actions, files.

The profile is read as cmstp installs it (``<short>.cmp`` beside a ``<short>\\`` folder); the
flat layout of a cabinet's members is rearranged into that first. What each part becomes:

- ``ServiceName``, the short name (Azure's 36-character GUIDs are kept: opencm accepts a GUID
  where CMAK's rule says eight characters), ``RedialCount``/``RedialDelay``, ``AutoReconnect``;
- the RAS phone book's VPN entries (``opencm.profile.rasbook``): IKEv2 → an ``ikev2`` link with
  its config, the gateway's root certificate from the profile's extra files; SSTP, L2TP and
  PPTP are reported (SSTP needs PPP in the kernel);
- an MS-CPSP POP book → the kit's phone book;
- the nine action sections: ``cmroute.dll,SetRoutes`` → opencm's built-in (the route file is
  checked and carried); other Windows programs are dropped, each with its reason;
- icons, the help file and the ``.inf``'s extra files are carried; the ``.inf``'s setup
  commands (``certutil``, ``reg add``) are dropped: opencm installs the certificate itself.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from opencm.actions.api import ActionPoint
from opencm.actions.cmroute import parse_route_file, parse_switches
from opencm.actions.parse import parse_section
from opencm.errors import InputError, OpencmError
from opencm.kit.spec import Action, KitSpec, PhoneBook, VpnServer, check_short_name
from opencm.migrate.draft import KitDraft, safe_name
from opencm.migrate.report import Report
from opencm.phonebook.limits import check_book_name
from opencm.profile.model import CM, ServiceProfile, load_profile, resolve_case_insensitive
from opencm.profile.rasbook import (
    BookKind,
    EntryMapping,
    Verdict,
    map_entry,
    parse_ras,
    sniff_phonebook,
)

#: The config's ``auth`` for a RAS credential kind, per link (docs/dialers.md).
AUTH_BY_LINK = {
    "ikev2": {
        "eap-tls": "eap-tls",
        "eap-mschapv2": "eap-mschapv2",
        "peap": "eap-mschapv2",
        "mschapv2": "eap-mschapv2",
    },
    "sstp": {
        "eap-tls": "eap-tls",
        "mschapv2": "mschapv2",
        "eap-mschapv2": "mschapv2",
        "peap": "mschapv2",
    },
}

#: The certificate and key a user holds in Windows' store and opencm needs as files.
CERT_SUFFIXES = (".cer", ".crt", ".pem")


@dataclass
class ClientFiles:
    """What the administrator hands in beside the profile (``--ca/--client-cert/--client-key``)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def installed_layout(folder: Path, scratch: Path) -> Path:
    """A folder in cmstp's layout: the flat members of a cabinet are moved under ``<short>/``."""
    cmps = [p for p in folder.iterdir() if p.suffix.casefold() == ".cmp" and p.is_file()]
    cmss = [p for p in folder.iterdir() if p.suffix.casefold() == ".cms" and p.is_file()]
    if not cmss:
        return folder  # the .cms is in the service folder already (or missing: load says so)
    short = (cmps[0] if cmps else cmss[0]).stem
    root = scratch / "profile"
    service = root / short
    service.mkdir(parents=True)
    for item in folder.iterdir():
        if item.is_symlink():
            continue
        if item.suffix.casefold() == ".cmp" and item.is_file():
            shutil.copy2(item, root / item.name)
        elif item.is_file():
            shutil.copy2(item, service / item.name)
    if not cmps:
        (root / f"{short}.cmp").write_bytes(
            f"[Connection Manager]\r\nCMSFile={short}\\{cmss[0].name}\r\n".encode()
        )
    return root


def _short_name(profile: ServiceProfile, report: Report) -> str:
    short = profile.short_name
    try:
        check_short_name(short)
    except InputError:
        raise InputError(
            f"the short name {short!r} is neither CMAK's 1-8 characters nor a GUID",
            path=profile.cmp_path or profile.cms_path,
        ) from None
    if len(short) > 8:
        report.carried(
            "short name",
            f"{short} kept (a GUID, as Azure writes; CMAK's 8-character rule would need a new"
            " name and every file renamed, which would break the profile's own references)",
            profile.cmp_path,
        )
    else:
        report.carried("short name", short, profile.cmp_path)
    return short


def _cms_int(profile: ServiceProfile, key: str, default: int) -> int:
    value = (profile.cms.get(CM, key) or "").strip()
    return int(value) if value.isdigit() else default


class WindowsImporter:
    def __init__(self, profile: ServiceProfile, report: Report, client: ClientFiles) -> None:
        self.profile = profile
        self.report = report
        self.client = client
        self.cms = profile.cms_path
        self.root = profile.profile_dir.resolve()

    def inside(self, path: Path, what: str) -> Path | None:
        """``path`` when it is a file inside the profile; a profile never carries other files
        (``Icon=/etc/shadow``, ``..\\..\\`` paths) into a kit."""
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root):
            self.report.dropped(
                what, f"{path} is outside the profile folder: not carried", self.cms
            )
            return None
        return resolved if resolved.is_file() else None

    def line(self, section: str, key: str) -> int | None:
        return self.profile.cms.line_of(section, key)

    def run(self) -> KitDraft:
        profile, report = self.profile, self.report
        short = _short_name(profile, report)
        service = profile.service_name
        report.carried("ServiceName", service, self.cms, self.line(CM, "ServiceName"))
        spec = KitSpec(service_name=service, short_name=short)
        draft = KitDraft(spec)
        self._redial(spec)
        self._links(draft)
        self._actions(draft)
        self._files(draft)
        for note in profile.notes:
            report.dropped("profile", note, self.cms)
        if not spec.vpn:
            spec.connection_types = []
        return draft

    def _redial(self, spec: KitSpec) -> None:
        spec.redial_count = _cms_int(self.profile, "RedialCount", 3)
        spec.redial_delay = _cms_int(self.profile, "RedialDelay", 5)
        spec.auto_reconnect = self.profile.cms.get_bool(CM, "AutoReconnect", True)
        self.report.carried(
            "RedialCount/RedialDelay",
            f"{spec.redial_count} × {spec.redial_delay} s (errors no redial can fix, such as a"
            " refused credential or a missing program, end the attempt at once)",
            self.cms,
            self.line(CM, "RedialCount"),
        )
        tunnel_dun = (self.profile.cms.get(CM, "TunnelDUN") or "").strip()
        if tunnel_dun:
            spec.tunnel_dun = tunnel_dun
        dun = (self.profile.cms.get(CM, "DUN") or "").strip()
        if dun:
            spec.dun = dun

    # -- links ---------------------------------------------------------------------------------

    def _links(self, draft: KitDraft) -> None:
        profile, report = self.profile, self.report
        book = profile.phonebook_path()
        tunnel_address = (profile.cms.get(CM, "TunnelAddress") or "").strip()
        if book is not None and book.exists() and self.inside(book, "PBFile") is None:
            book = None
        if book is None or not book.is_file():
            if book is not None:
                report.needed(
                    "PBFile", f"{book.name} is missing", self.cms, self.line("ISP", "PBFile")
                )
            if tunnel_address:
                report.needed(
                    "TunnelAddress",
                    f"{tunnel_address}: the profile names no VPN entry saying which protocol"
                    " to use; add a [[vpn]] server to kit.toml",
                    self.cms,
                    self.line(CM, "TunnelAddress"),
                )
            return
        data = book.read_bytes()
        kind = sniff_phonebook(data)
        if kind is BookKind.CPSP:
            self._pop_book(draft, book)
            return
        if kind is BookKind.EMPTY:
            report.dropped("PBFile", f"{book.name} is empty", book)
            return
        ras = parse_ras(data, book)
        for problem in ras.problems:
            report.dropped("RAS line", problem.message, book, problem.line)
        mappings = [map_entry(entry) for entry in ras.entries]
        tunnel_dun = (profile.cms.get(CM, "TunnelDUN") or "").strip().casefold()
        # The tunnel entry first (what CM dials for the tunnel), then the rest in file order.
        mappings.sort(key=lambda m: m.entry.casefold() != tunnel_dun)
        for mapping in mappings:
            self._entry(draft, book, mapping)
        if tunnel_address:
            report.mapped(
                "TunnelAddress",
                f"{tunnel_address}: the VPN server is the RAS entry's PhoneNumber",
                self.cms,
                self.line(CM, "TunnelAddress"),
            )

    def _pop_book(self, draft: KitDraft, book: Path) -> None:
        name = book.stem
        try:
            check_book_name(name)
        except InputError:
            self.report.dropped("PBFile", f"{book.name}: its name is not a phone-book name", book)
            return
        for suffix in (".pbk", ".pbr", ".ver"):
            companion = resolve_case_insensitive(book.parent, f"{name}{suffix}")
            if self.inside(companion, "phone book") is not None:
                draft.files[f"phonebook/{name}{suffix}"] = companion.read_bytes()
        draft.spec.phonebook = PhoneBook(name=name, dir="phonebook")
        self.report.carried("PBFile", f"{book.name}: MS-CPSP POP phone book", book)

    def _entry(self, draft: KitDraft, book: Path, mapping: EntryMapping) -> None:
        report = self.report
        what = f"RAS entry {mapping.entry!r}"
        if mapping.verdict is Verdict.REFUSED:
            report.dropped(what, mapping.reason, book, mapping.line)
            return
        if mapping.verdict is Verdict.UNSUPPORTED:
            report.dropped(what, mapping.reason, book, mapping.line)
            return
        self._link(draft, book, mapping)

    def _link(self, draft: KitDraft, book: Path, mapping: EntryMapping) -> None:
        """An ``ikev2`` or ``sstp`` link with its config file (docs/dialers.md)."""
        report, spec, link = self.report, draft.spec, mapping.link
        what = f"RAS entry {mapping.entry!r}"
        auth = AUTH_BY_LINK[link].get(mapping.credential)
        if auth is None:
            report.dropped(
                what, f"{mapping.credential_text}: no {link} method for it", book, mapping.line
            )
            return
        if mapping.credential == "peap":
            report.mapped("CustomAuthKey", f"PEAP → {auth} (the method inside PEAP)", book)
        lines = [
            f"# {link} link imported from {book.name} entry {mapping.entry} (docs/dialers.md)",
            f"server = {mapping.server}",
            f"auth = {auth}",
        ]
        if link == "ikev2":
            lines.insert(2, f"remote_id = {mapping.server}")
        ca = self._gateway_ca(draft)
        if ca is not None:
            lines.append(f"ca = {ca}")
        elif link == "ikev2":
            lines.append("ca = gateway-ca.crt")
            report.needed(
                "gateway certificate",
                "the CA that signs the gateway's certificate: give it with --ca",
                book,
            )
        if auth == "eap-tls":
            lines += self._client_certificate(draft, mapping)
        else:
            report.mapped("credentials", mapping.credential_text + " (asked at connect)", book)
        if report.chosen_link is None:
            report.chosen_link = link
            report.chosen_because = f"RAS entry {mapping.entry!r}: {mapping.reason}"
        config = draft.add_file(
            f"{safe_name(mapping.entry, 'link')}.{link}", ("\n".join(lines) + "\n").encode()
        )
        name = mapping.entry
        spec.vpn.append(VpnServer(name=name, address=mapping.server, link=link, config=config))
        note = (
            "; SSTP is PPP inside TLS: sstpc with pppd, which needs PPP in the kernel (/dev/ppp)"
            if link == "sstp"
            else ""
        )
        report.mapped(
            what,
            f"{mapping.reason} → {link} link to {mapping.server} ({mapping.credential_text});"
            f" config {config}{note}",
            book,
            mapping.line,
        )
        if mapping.dns:
            report.mapped("DNS", f"{', '.join(mapping.dns)}: reported, not applied", book)
        report.mapped(
            "IpPrioritizeRemote",
            "1: the gateway's routes plus a default route through the tunnel"
            if mapping.default_route
            else "0: only the routes the profile adds go through the tunnel",
            book,
        )

    def _gateway_ca(self, draft: KitDraft) -> str | None:
        if self.client.ca is not None:
            return _carry_into_config_dir(draft, self.client.ca, self.report, "--ca")
        for extra in self._extra_files():
            if extra.suffix.casefold() in CERT_SUFFIXES:
                return _carry_into_config_dir(draft, extra, self.report, "extra file")
        return None

    def _client_certificate(self, draft: KitDraft, mapping: EntryMapping) -> list[str]:
        if self.client.cert is None or self.client.key is None:
            self.report.needed(
                "client certificate",
                f"{mapping.credential_text}: Windows keeps it in the user's certificate store;"
                " give it with --client-cert and --client-key",
            )
            return ["cert = client.crt", "key = client.key"]
        cert = _carry_into_config_dir(draft, self.client.cert, self.report, "--client-cert")
        key = _carry_into_config_dir(draft, self.client.key, self.report, "--client-key")
        return [f"cert = {cert}", f"key = {key}"]

    # -- actions -------------------------------------------------------------------------------

    def _actions(self, draft: KitDraft) -> None:
        for point in ActionPoint:
            entries = self.profile.cms.entries(point.section)
            if not entries:
                continue
            parsed = parse_section(point.section, entries)
            for problem in parsed.problems:
                self.report.dropped(f"[{point.section}]", problem.message, self.cms, problem.line)
            for action in parsed.actions:
                self._action(draft, point, action)

    def _action(self, draft: KitDraft, point: ActionPoint, action: object) -> None:
        from opencm.actions.parse import ActionLine

        assert isinstance(action, ActionLine)
        report = self.report
        where = f"[{point.section}] {action.index}"
        name = PureWindowsPath(action.program).name
        stem, _, suffix = name.rpartition(".")
        interactive = not action.flags & 0x10
        if suffix.casefold() == "dll":
            if stem.casefold() == "cmroute" and (action.entry or "").casefold() == "setroutes":
                self._cmroute(draft, point, action, interactive)
                return
            report.dropped(
                where,
                f"{name},{action.entry}: a Windows library with no opencm replacement",
                self.cms,
                action.line,
            )
            return
        if suffix.casefold() in ("exe", "com", "bat", "cmd"):
            report.dropped(where, f"{name}: a Windows program", self.cms, action.line)
            return
        found = resolve_case_insensitive(self.profile.profile_dir, action.program)
        program = self.inside(found, where) if found.exists() else None
        if program is not None:
            kit_path = draft.add_file(program.name, program.read_bytes())
            draft.spec.actions.append(
                Action(
                    point,
                    kit_path,
                    action.parameters,
                    action.description or "",
                    include=True,
                    interactive=interactive,
                )
            )
            report.carried(where, f"{name} shipped with the profile", self.cms, action.line)
            return
        draft.spec.actions.append(
            Action(
                point,
                action.program,
                action.parameters,
                action.description or "",
                interactive=interactive,
            )
        )
        report.carried(where, f"{action.program} (found on PATH at connect)", self.cms, action.line)

    def _cmroute(
        self, draft: KitDraft, point: ActionPoint, action: object, interactive: bool
    ) -> None:
        from opencm.actions.parse import ActionLine

        assert isinstance(action, ActionLine)
        report = self.report
        where = f"[{point.section}] {action.index}"
        try:
            switches = parse_switches(" ".join(action.tokens))
        except OpencmError as error:
            report.dropped(where, f"cmroute.dll: {error.message}", self.cms, action.line)
            return
        if switches.static_file:
            found = resolve_case_insensitive(self.profile.service_dir, switches.static_file)
            routes = (self.inside(found, "route file") if found.exists() else None) or found
            if not routes.is_file() or not routes.resolve().is_relative_to(self.root):
                report.needed("route file", f"{switches.static_file} is missing", routes)
            else:
                data = routes.read_bytes()
                parsed = parse_route_file(data, routes)  # a bad line: file, line, expected
                kit_path = draft.add_file(routes.name, data)
                if kit_path.rsplit("/", 1)[-1] != routes.name:
                    raise InputError("two route files share a name", path=routes)
                draft.spec.additional_files.append(kit_path)
                report.carried("route file", f"{routes.name}: {len(parsed)} route line(s)", routes)
        draft.spec.actions.append(
            Action(
                point,
                "cmroute.dll",
                f"SetRoutes {action.parameters}".strip(),
                action.description or "",
                include=False,
                interactive=interactive,
            )
        )
        report.mapped(
            where,
            "cmroute.dll,SetRoutes → opencm's built-in cmroute.SetRoutes (the Windows DLL is"
            " not shipped)",
            self.cms,
            action.line,
        )

    # -- files ---------------------------------------------------------------------------------

    def _extra_files(self) -> list[Path]:
        inf = self.profile.inf
        if inf is None:
            return []
        found: list[Path] = []
        for entry in inf.entries("Extra Files"):
            path = resolve_case_insensitive(self.profile.service_dir, entry.value)
            inside = self.inside(path, "extra file") if path.exists() else None
            if inside is not None:
                found.append(inside)
        return found

    def _files(self, draft: KitDraft) -> None:
        profile, report, spec = self.profile, self.report, draft.spec
        for key, attribute in (
            ("Icon", "icon"),
            ("SmallIcon", "small_icon"),
            ("TrayIcon", "tray_icon"),
            ("HelpFile", "help_file"),
            ("Logo", "logo"),  # the logon dialog's banner (opencm-gui shows it)
        ):
            written = (profile.cms.get(CM, key) or "").strip()
            if not written:
                continue
            found = profile.resolve(written)
            path = self.inside(found, key) if found.exists() else None
            if path is not None:
                setattr(spec, attribute, draft.add_file(path.name, path.read_bytes()))
                report.carried(key, path.name, self.cms, self.line(CM, key))
            else:
                report.dropped(
                    key, f"{written} is not in the profile", self.cms, self.line(CM, key)
                )
        if (profile.cms.get(CM, "PBLogo") or "").strip():
            report.dropped(
                "PBLogo", "opencm shows no phone-book logo", self.cms, self.line(CM, "PBLogo")
            )
        for extra in self._extra_files():
            if extra.suffix.casefold() in CERT_SUFFIXES:
                continue  # carried as the gateway's CA (or reported)
            spec.additional_files.append(draft.add_file(extra.name, extra.read_bytes()))
            report.carried("extra file", extra.name, profile.inf_path)
        inf = profile.inf
        if inf is not None:
            for section in inf.sections():
                if section.casefold().startswith("run") and section.casefold().endswith(
                    "commandssection"
                ):
                    for entry in inf.entries(section):
                        text = entry.raw_value or entry.key
                        report.dropped(
                            f"[{section}]",
                            f"{text[:80]}: Windows setup command (opencm installs what the kit"
                            " names; the gateway certificate is the link's ca)",
                            profile.inf_path,
                            entry.line,
                        )


def _carry_into_config_dir(draft: KitDraft, source: Path, report: Report, what: str) -> str:
    """A certificate or key for the link config, named relative to it (both in files/)."""
    try:
        data = source.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {what}: {error.strerror}", path=source) from None
    data = _der_to_pem(data)
    kit_path = draft.add_file(source.name, data)
    if kit_path not in draft.spec.additional_files:
        # Shipped beside the link's config, which names it relative to itself.
        draft.spec.additional_files.append(kit_path)
    report.carried(what, f"{source.name} → {kit_path}")
    return kit_path.rsplit("/", 1)[-1]


def _der_to_pem(data: bytes) -> bytes:
    """Windows writes ``.cer`` files in DER or PEM; strongSwan reads both, but PEM is what
    an administrator can read."""
    if data.lstrip().startswith(b"-----BEGIN") or not data.startswith(b"\x30"):
        return data
    import base64

    body = base64.encodebytes(data).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()


def import_windows_profile(
    folder: Path, scratch: Path, report: Report, client: ClientFiles
) -> KitDraft:
    profile = load_profile(installed_layout(folder, scratch))
    return WindowsImporter(profile, report, client).run()


__all__ = ["ClientFiles", "import_windows_profile", "installed_layout"]
