"""``opencm import``: turn what administrators already have into an opencm kit folder.

Sources, told apart by content: a Windows CM profile folder (or a ``.cmp``/``.cms`` in one), a
CMAK cabinet, an IExpress ``.exe`` with the cabinet inside, Azure's
``VpnClientConfiguration.zip``, an OpenVPN ``.ovpn`` and a WireGuard ``.conf``. The result is
a kit folder (``kit.toml`` + files) that ``opencm kit build`` turns into a signed package, and a
:class:`~opencm.migrate.report.Report` of what was carried, mapped, dropped or is still needed.
docs/migrating.md is the user's guide.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import replace
from pathlib import Path

from opencm.errors import InputError, OpencmError
from opencm.kit.spec import KitSpec, VpnServer
from opencm.migrate.archives import extract_cab, extract_iexpress
from opencm.migrate.draft import KitDraft, safe_name
from opencm.migrate.ovpn import convert_ovpn
from opencm.migrate.report import Report
from opencm.migrate.wg import convert_wg
from opencm.migrate.windows import ClientFiles, import_windows_profile

MAX_TEXT = 1024 * 1024


def short_from(stem: str) -> str:
    """An eight-character short name from a file name (``client.ovpn`` → ``CLIENT``)."""
    letters = re.sub(r"[^A-Za-z0-9_-]", "", stem).upper()[:8]
    return letters if letters and not letters.isdigit() else "VPN"


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if len(data) > MAX_TEXT:
        raise InputError(f"too large for a config ({len(data)} bytes)", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _looks_like(path: Path, head: bytes) -> str:
    if path.is_dir():
        return "windows-profile"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "azure-zip"
    if head.startswith(b"MSCF"):
        return "cab"
    if head.startswith(b"MZ"):
        return "iexpress"
    suffix = path.suffix.casefold()
    if suffix in (".cmp", ".cms"):
        return "windows-file"
    text = head.decode("latin-1").lower()
    if re.search(r"^\s*\[(interface|peer)\]", text, re.MULTILINE):
        return "wireguard"
    if suffix in (".ovpn", ".conf") or re.search(
        r"^\s*(client|remote|dev|proto)\b", text, re.MULTILINE
    ):
        return "ovpn"
    raise InputError(
        "expected a Windows CM profile (folder, .cmp, cabinet, .exe), Azure's"
        " VpnClientConfiguration.zip, an OpenVPN .ovpn or a WireGuard .conf",
        path=path,
    )


def single_link_kit(
    path: Path,
    report: Report,
    *,
    link: str,
    config_name: str,
    text: str,
    server: str | None,
    missing: tuple[str, str],
) -> KitDraft:
    """A kit of one VPN server of ``link``, its config from ``text`` (``missing``: the report's
    (what, why) when the config names no server)."""
    short = short_from(path.stem)
    draft = KitDraft(KitSpec(service_name=path.stem or short, short_name=short))
    config = draft.add_file(config_name, text.encode())
    if not server:
        report.needed(*missing, path)
    address = server or "unknown"
    draft.spec.vpn.append(VpnServer(name=short, address=address, link=link, config=config))
    report.mapped("config", f"{path.name} → {config} ({link} link to {address})", path)
    return draft


def import_ovpn(path: Path, report: Report, client: ClientFiles) -> KitDraft:
    text = _azure_placeholders(_read_text(path), client, report, path)
    result = convert_ovpn(path, text, report)
    draft = single_link_kit(
        path, report, link="openvpn", config_name=f"{safe_name(path.stem, 'client')}.ovpn",
        text=result.text, server=result.remote,
        missing=("remote", "the config names no server (remote)"),
    )  # fmt: skip
    _check_ovpn(draft, draft.spec.vpn[0].config or "")
    return draft


def _azure_placeholders(text: str, client: ClientFiles, report: Report, path: Path) -> str:
    """Azure's vpnconfig.ovpn leaves ``$CLIENTCERTIFICATE``/``$PRIVATEKEY`` for the user."""
    for marker, given, what in (
        ("$CLIENTCERTIFICATE", client.cert, "--client-cert"),
        ("$PRIVATEKEY", client.key, "--client-key"),
    ):
        if marker not in text:
            continue
        if given is None:
            report.needed(marker, f"the user's certificate material: give it with {what}", path)
            continue
        try:
            material = given.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"cannot read {what}: {error}", path=given) from None
        text = text.replace(marker, material)
        report.mapped(marker, f"filled from {given.name}", path)
    return text


def _check_ovpn(draft: KitDraft, config: str) -> None:
    """The config opencm will ship must pass the OpenVPN dialer's own check."""
    from opencm.links.openvpn import check_config

    with tempfile.TemporaryDirectory(prefix="opencm-import-") as scratch:
        probe = Path(scratch) / "check.ovpn"
        probe.write_bytes(draft.files[config])
        check_config(probe)


def import_wireguard(path: Path, report: Report) -> KitDraft:
    result = convert_wg(path, _read_text(path), report)
    return single_link_kit(
        path, report, link="wireguard", config_name=f"{safe_name(path.stem, 'wg')}.conf",
        text=result.text, server=result.endpoint,
        missing=("Endpoint", "no [Peer] Endpoint: the server is unknown"),
    )  # fmt: skip


def import_azure_zip(path: Path, scratch: Path, report: Report, client: ClientFiles) -> KitDraft:
    from opencm.migrate.azure import import_azure

    return import_azure(path, scratch, report, client)


def import_source(source: Path, report: Report, client: ClientFiles | None = None) -> KitDraft:
    """Read ``source`` into a kit draft; every decision is in ``report``."""
    client = client or ClientFiles()
    if not source.exists():
        raise InputError("no such file or folder", path=source)
    head = b""
    if source.is_file():
        with source.open("rb") as handle:
            head = handle.read(4096)
    kind = _looks_like(source, head)
    report.kind = kind
    with tempfile.TemporaryDirectory(prefix="opencm-import-") as scratch_name:
        scratch = Path(scratch_name)
        try:
            return _import_kind(kind, source, scratch, report, client)
        except OpencmError as error:
            error.path = _inside_source(error.path, scratch, source)
            raise
        finally:
            # Members of an archive are named inside it (``setup.exe!X/routes.txt``), not by
            # the scratch folder they were unpacked into and that is gone afterwards.
            report.items = [
                replace(item, path=_inside_source(item.path, scratch, source))
                for item in report.items
            ]


def _inside_source(path: str | Path | None, scratch: Path, source: Path) -> str | None:
    """A path in the scratch folder as the archive member it came from (``p.cab!X.cms``)."""
    if path is None:
        return None
    try:
        relative = Path(path).relative_to(scratch)
    except ValueError:
        return str(path)
    parts = relative.parts
    if parts[:1] == ("profile",):
        parts = parts[-1:]  # rearranged from the cabinet's flat members
    elif parts[:1] in (("cab",), ("zip",), ("package",)):
        parts = parts[1:]
    return f"{source}!{'/'.join(parts)}"


def _import_kind(
    kind: str, source: Path, scratch: Path, report: Report, client: ClientFiles
) -> KitDraft:
    if kind == "windows-profile":
        return import_windows_profile(source, scratch, report, client)
    if kind == "windows-file":
        return import_windows_profile(source.parent, scratch, report, client)
    if kind == "cab":
        extract_cab(source, scratch / "cab")
        return import_windows_profile(scratch / "cab", scratch, report, client)
    if kind == "iexpress":
        extract_iexpress(source, source.read_bytes(), scratch / "cab")
        return import_windows_profile(scratch / "cab", scratch, report, client)
    if kind == "azure-zip":
        return import_azure_zip(source, scratch, report, client)
    if kind == "wireguard":
        return import_wireguard(source, report)
    return import_ovpn(source, report, client)


def write_kit(draft: KitDraft, out: Path, report: Report) -> bool:
    """Write the kit when it has a link (or a phone book) to connect with; False if not."""
    if not draft.spec.vpn:
        if draft.spec.phonebook is not None:
            draft.spec.connection_types = ["dialup"]
        else:
            report.needed("link", "nothing in the source is a link opencm can run: no kit written")
            return False
    draft.write(out)
    report.kit = str(out)
    return True


__all__ = [
    "ClientFiles",
    "import_source",
    "short_from",
    "write_kit",
]
