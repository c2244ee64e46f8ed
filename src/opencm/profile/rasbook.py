"""RAS phone books (the ``rasphone.pbk`` format) and how their entries map to opencm's links.

Windows keeps its own dial-up and VPN entries in ``rasphone.pbk``; Azure's point-to-site
profiles ship one as ``[ISP] PBFile=`` where CMAK's key name suggests an MS-CPSP POP book. The
two formats are told apart by content (:func:`sniff_phonebook`): a RAS book is INI-style
(``[<entry name>]`` then ``Key=value`` lines), a POP book holds comma-separated records.

The reader keeps everything as written: entries in order, keys in order *with repeats*
(``CustomAuthData=`` appears several times in real books), each with its line number, and the
sub-blocks that keys such as ``MEDIA=`` and ``DEVICE=`` introduce. It never raises for what a
file says; lines that are not ``Key=value`` are reported as problems with their line.

Lives in the profile layer because a RAS book is a file of a Windows profile: ``profile
check``, the phone-book commands, the session and ``opencm import`` all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from opencm.errors import InputError
from opencm.problems import Problem
from opencm.profile.model import ServiceProfile

#: ``Type=`` values (RASET_*): only VPN entries become links.
ENTRY_TYPES = {1: "phone", 2: "vpn", 3: "direct", 4: "internet", 5: "broadband"}

#: ``VpnStrategy=`` (RASEO VS_*): the protocols Windows tries, in order.
VPN_STRATEGIES: dict[int, tuple[str, ...]] = {
    0: ("ikev2", "sstp", "pptp", "l2tp"),  # VS_Default ("Automatic")
    1: ("pptp",),  # VS_PptpOnly
    2: ("pptp", "l2tp"),  # VS_PptpFirst
    3: ("l2tp",),  # VS_L2tpOnly
    4: ("l2tp", "pptp"),  # VS_L2tpFirst
    5: ("sstp",),  # VS_SstpOnly
    6: ("sstp", "ikev2", "pptp", "l2tp"),  # VS_SstpFirst
    7: ("ikev2",),  # VS_Ikev2Only
    8: ("ikev2", "sstp", "pptp", "l2tp"),  # VS_Ikev2First
    9: ("gre",),  # VS_GREOnly
    12: ("pptp", "sstp"),  # VS_PptpSstp
    13: ("l2tp", "sstp"),  # VS_L2tpSstp
    14: ("ikev2", "sstp"),  # VS_Ikev2Sstp
}

#: ``Device=``/``PreferredDevice=`` names that pin a protocol when VpnStrategy is absent.
_MINIPORTS = {
    "wan miniport (ikev2)": "ikev2",
    "wan miniport (sstp)": "sstp",
    "wan miniport (l2tp)": "l2tp",
    "wan miniport (pptp)": "pptp",
}

#: The links opencm can run, by protocol (the dialer names in docs/dialers.md).
RUNNABLE = ("ikev2", "sstp")

#: ``CustomAuthKey=`` EAP method types and the credential the user must supply.
EAP_CREDENTIALS = {
    13: ("eap-tls", "a client certificate and its private key"),
    26: ("eap-mschapv2", "a user name and password"),
    25: ("peap", "a user name and password (PEAP, MS-CHAPv2 inside)"),
}

#: Keys that open a sub-block of an entry (the blank-line-separated groups of the format).
#: Upper case only: ``Device=`` (mixed case) is an ordinary key inside the ``MEDIA=`` block.
_BLOCK_KEYS = ("NETCOMPONENTS", "MEDIA", "DEVICE")


class BookKind(Enum):
    """What a ``.pbk`` holds, by content."""

    RAS = "RAS phone book (rasphone.pbk: [entry] sections of Key=value lines)"
    CPSP = "MS-CPSP POP phone book (comma-separated POP records)"
    EMPTY = "empty phone book"


def decode_book(data: bytes) -> str:
    """Text of a phone book: UTF-16 with a BOM, UTF-8 (with or without BOM), else Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def sniff_phonebook(data: bytes) -> BookKind:
    """RAS or MS-CPSP, by the first line that is neither blank nor a ``;`` comment."""
    for line in decode_book(data).splitlines():
        text = line.strip()
        if not text or text.startswith(";"):
            continue
        return BookKind.RAS if text.startswith("[") else BookKind.CPSP
    return BookKind.EMPTY


def require_pop_book(data: bytes, path: str | Path, command: str) -> None:
    """Raise (exit 2) when ``data`` is a RAS book where ``command`` needs a POP book."""
    if sniff_phonebook(data) is BookKind.RAS:
        book = parse_ras(data, path)
        names = ", ".join(repr(e.name) for e in book.entries[:3]) or "no entries"
        raise InputError(
            f"this is a {BookKind.RAS.value} with {len(book.entries)} entr"
            f"{'y' if len(book.entries) == 1 else 'ies'} ({names}); {command} expected an "
            f"{BookKind.CPSP.value}. A RAS book describes VPN/dial-up entries, not POPs: "
            "`opencm import` turns a Windows profile that carries one into opencm links",
            path=path,
        )


@dataclass(frozen=True)
class RasKey:
    key: str
    value: str
    line: int


@dataclass
class RasEntry:
    """One ``[name]`` section: every key as written, in order, repeats kept."""

    name: str
    line: int
    keys: list[RasKey] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        """The first value of ``key`` (case-insensitive), as written."""
        wanted = key.casefold()
        return next((k.value for k in self.keys if k.key.casefold() == wanted), None)

    def get_all(self, key: str) -> list[str]:
        wanted = key.casefold()
        return [k.value for k in self.keys if k.key.casefold() == wanted]

    def line_of(self, key: str) -> int:
        wanted = key.casefold()
        return next((k.line for k in self.keys if k.key.casefold() == wanted), self.line)

    def get_int(self, key: str) -> int | None:
        value = (self.get(key) or "").strip()
        return int(value) if value.isdigit() else None

    def blocks(self) -> list[list[RasKey]]:
        """The keys split where ``NETCOMPONENTS=``, ``MEDIA=`` or ``DEVICE=`` open a block."""
        groups: list[list[RasKey]] = [[]]
        for key in self.keys:
            if key.key in _BLOCK_KEYS and groups[-1]:
                groups.append([])
            groups[-1].append(key)
        return groups


@dataclass
class RasBook:
    path: str | Path | None
    entries: list[RasEntry]
    problems: list[Problem]

    def entry(self, name: str) -> RasEntry | None:
        wanted = name.casefold()
        return next((e for e in self.entries if e.name.casefold() == wanted), None)


def parse_ras(data: bytes, path: str | Path | None = None) -> RasBook:
    """Read a RAS phone book; never raises for its content."""
    entries: list[RasEntry] = []
    problems: list[Problem] = []
    current: RasEntry | None = None
    for number, raw in enumerate(decode_book(data).splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith(";"):
            continue
        if text.startswith("["):
            if not text.endswith("]") or len(text) < 3:
                problems.append(
                    Problem("expected an entry header `[name]`", path, number, text[:40])
                )
                current = None
                continue
            current = RasEntry(text[1:-1], number)
            entries.append(current)
            continue
        key, equals, value = raw.partition("=")
        if not equals or not key.strip():
            problems.append(Problem("expected `Key=value`", path, number, text[:40]))
            continue
        if current is None:
            problems.append(
                Problem("a key before the first `[entry]` header", path, number, key.strip())
            )
            continue
        current.keys.append(RasKey(key.strip(), value.strip(), number))
    return RasBook(path, entries, problems)


class Verdict(Enum):
    """What opencm does with a RAS entry."""

    LINK = "link"  # a link opencm runs
    UNSUPPORTED = "unsupported"  # reported; no link here (L2TP, GRE, dial-up entries)
    REFUSED = "refused"  # insecure (PPTP)


@dataclass(frozen=True)
class EntryMapping:
    """One RAS entry as an opencm link, or why it is not one."""

    entry: str
    verdict: Verdict
    #: ``ikev2`` / ``sstp`` for a LINK; else the protocol that stopped it.
    link: str
    server: str
    #: ``eap-tls`` / ``eap-mschapv2`` / ``peap`` / ``mschapv2``.
    credential: str
    credential_text: str
    reason: str
    #: Protocols the entry's strategy also allows, after the chosen one.
    fallbacks: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    #: ``IpPrioritizeRemote=1``: the tunnel takes the default route (Windows' "use default
    #: gateway on remote network"); 0: only the routes the profile adds go through it.
    default_route: bool = False
    line: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "entry": self.entry,
            "verdict": self.verdict.value,
            "link": self.link,
            "server": self.server,
            "credential": self.credential,
            "credential_text": self.credential_text,
            "reason": self.reason,
            "fallbacks": list(self.fallbacks),
            "dns": list(self.dns),
            "default_route": self.default_route,
            "line": self.line,
        }


def _protocols(entry: RasEntry) -> tuple[tuple[str, ...], str]:
    strategy = entry.get_int("VpnStrategy")
    if strategy is not None:
        order = VPN_STRATEGIES.get(strategy)
        if order is None:
            return (), f"VpnStrategy={strategy} is not a strategy opencm knows"
        return order, f"VpnStrategy={strategy}"
    for key in ("PreferredDevice", "Device"):
        device = (entry.get(key) or "").strip().casefold()
        if device in _MINIPORTS:
            return (_MINIPORTS[device],), f"{key}={entry.get(key)}"
    return VPN_STRATEGIES[0], "no VpnStrategy (Windows' automatic order)"


def _credential(entry: RasEntry) -> tuple[str, str]:
    key = entry.get_int("CustomAuthKey")
    if key is not None and key in EAP_CREDENTIALS:
        return EAP_CREDENTIALS[key]
    if key is not None and key not in (0,):
        return f"eap-{key}", f"EAP method {key}, which opencm does not offer"
    return "mschapv2", "a user name and password (MS-CHAPv2)"


def _mapping(
    entry: RasEntry, verdict: Verdict, link: str, reason: str, fallbacks: tuple[str, ...] = ()
) -> EntryMapping:
    credential, credential_text = _credential(entry)
    dns = tuple(
        v.strip()
        for v in (entry.get("IpDnsAddress"), entry.get("IpDns2Address"))
        if v and v.strip() not in ("", "0.0.0.0")
    )
    return EntryMapping(
        entry=entry.name,
        verdict=verdict,
        link=link,
        server=(entry.get("PhoneNumber") or "").strip(),
        credential=credential,
        credential_text=credential_text,
        reason=reason,
        fallbacks=fallbacks,
        dns=dns,
        default_route=entry.get_int("IpPrioritizeRemote") == 1,
        line=entry.line,
    )


def map_entry(entry: RasEntry) -> EntryMapping:
    """Which opencm link ``entry`` becomes: the first protocol of its strategy opencm runs."""
    entry_type = entry.get_int("Type")
    if entry_type is not None and entry_type != 2:
        kind = ENTRY_TYPES.get(entry_type, f"Type={entry_type}")
        reason = f"a {kind} entry (Type={entry_type}), not a VPN entry (Type=2)"
        return _mapping(entry, Verdict.UNSUPPORTED, kind, reason)
    order, why = _protocols(entry)
    runnable = [p for p in order if p in RUNNABLE]
    if runnable and (entry.get("PhoneNumber") or "").strip():
        chosen = runnable[0]
        skipped = order[: order.index(chosen)]
        note = f"; skipped {', '.join(skipped)}" if skipped else ""
        reason = f"{why}: {chosen}{note}"
        return _mapping(entry, Verdict.LINK, chosen, reason, tuple(runnable[1:]))
    if runnable:
        reason = f"{why}, but PhoneNumber (the VPN server) is empty"
        return _mapping(entry, Verdict.UNSUPPORTED, runnable[0], reason)
    if order and all(p == "pptp" for p in order):
        reason = f"{why}: PPTP only, refused as insecure (MS-CHAPv2 over PPTP is broken)"
        return _mapping(entry, Verdict.REFUSED, "pptp", reason)
    protocols = [p for p in order if p != "pptp"]
    pptp = " (PPTP refused as insecure)" if "pptp" in order else ""
    reason = f"{why}: {', '.join(protocols) or 'none'}: no opencm link for it{pptp}"
    return _mapping(entry, Verdict.UNSUPPORTED, protocols[0] if protocols else "none", reason)


def ras_hint(profile: ServiceProfile) -> str:
    """For a profile without opencm links: what its RAS phone book offers, and what to run."""
    book = profile.phonebook_path()
    try:
        data = book.read_bytes() if book is not None and book.is_file() else b""
    except OSError:
        return ""
    if sniff_phonebook(data) is not BookKind.RAS:
        return ""
    mappings = [map_entry(entry) for entry in parse_ras(data, book).entries]
    told = "; ".join(f"RAS entry {m.entry!r}: {m.reason}" for m in mappings[:3])
    return (
        f". The profile's phone book is a Windows RAS book ({told}): run `opencm import` on"
        " the profile to turn its entries into opencm links (docs/migrating.md)"
    )


__all__ = [
    "EAP_CREDENTIALS",
    "VPN_STRATEGIES",
    "BookKind",
    "EntryMapping",
    "RasBook",
    "RasEntry",
    "RasKey",
    "Verdict",
    "decode_book",
    "map_entry",
    "parse_ras",
    "ras_hint",
    "require_pop_book",
    "sniff_phonebook",
]
