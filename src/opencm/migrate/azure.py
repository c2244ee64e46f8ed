"""Azure point-to-site: ``VpnClientConfiguration.zip``, the whole download.

The zip holds the Windows CM package (``WindowsAmd64/*.exe``: IExpress with the profile cabinet
inside), and where the gateway offers them ``Generic/VpnSettings.xml`` with the gateway's root
certificate (``Generic/VpnServerRoot.cer``) and ``OpenVPN/vpnconfig.ovpn``. opencm picks the
best link it can run: OpenVPN (a userspace TLS VPN that runs anywhere), then IKEv2 (strongSwan),
then SSTP (sstpc with pppd: needs PPP in the kernel), and the report says which and why.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path

from opencm.errors import InputError
from opencm.migrate.archives import extract_iexpress, extract_zip
from opencm.migrate.draft import KitDraft
from opencm.migrate.report import Report
from opencm.migrate.windows import ClientFiles, import_windows_profile


def _find(root: Path, folder: str, suffixes: tuple[str, ...]) -> list[Path]:
    base = next((p for p in root.iterdir() if p.name.casefold() == folder.casefold()), None)
    if base is None or not base.is_dir():
        return []
    return sorted(
        p for p in base.rglob("*") if p.is_file() and p.name.casefold().endswith(suffixes)
    )


def _settings(xml_path: Path, report: Report) -> dict[str, str]:
    try:
        tree = ElementTree.fromstring(xml_path.read_bytes())
    except (ElementTree.ParseError, OSError) as error:
        report.dropped("VpnSettings.xml", f"cannot be read: {error}", xml_path)
        return {}
    values: dict[str, str] = {}
    for element in tree.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if element.text and element.text.strip() and tag not in values:
            values[tag] = element.text.strip()
    return values


def import_azure(path: Path, scratch: Path, report: Report, client: ClientFiles) -> KitDraft:
    from opencm.migrate import import_ovpn

    root = scratch / "zip"
    extract_zip(path, root)
    xml = _find(root, "Generic", ("vpnsettings.xml",))
    settings = _settings(xml[0], report) if xml else {}
    offered = settings.get("VpnType", "")
    if offered:
        report.carried("VpnType", f"the gateway offers {offered}", xml[0])
    roots = _find(root, "Generic", (".cer", ".cer_0", ".crt"))
    if roots and client.ca is None:
        client = replace(client, ca=roots[0])
    ovpn = _find(root, "OpenVPN", (".ovpn",))
    if ovpn:
        report.chosen_link = "openvpn"
        report.chosen_because = (
            "the gateway offers OpenVPN: a userspace TLS link that needs nothing from the"
            " kernel; preferred over IKEv2 and SSTP"
        )
        draft = import_ovpn(ovpn[0], report, client)
        draft.spec.service_name = path.stem
        for kind in ("IKEv2", "SSTP"):
            if kind.lower() in offered.lower():
                report.dropped(kind, "also offered; OpenVPN chosen instead")
        return draft
    exes = _find(root, "WindowsAmd64", (".exe",)) or _find(root, "WindowsX86", (".exe",))
    if not exes:
        raise InputError(
            "neither OpenVPN/vpnconfig.ovpn nor a WindowsAmd64 package inside: not an Azure"
            " VpnClientConfiguration.zip",
            path=path,
        )
    cab_dir = scratch / "package"
    extract_iexpress(exes[0], exes[0].read_bytes(), cab_dir)
    draft = import_windows_profile(cab_dir, scratch, report, client)
    links = [server.link for server in draft.spec.vpn]
    if "ikev2" in links:
        report.chosen_link = "ikev2"
        report.chosen_because = (
            "no OpenVPN flavour in the download; the profile's RAS entry allows IKEv2, which"
            " opencm runs with strongSwan (SSTP would need PPP in the kernel)"
        )
    elif "sstp" in links:
        report.chosen_link = "sstp"
        report.chosen_because = (
            "no OpenVPN flavour and no IKEv2 entry: SSTP (sstpc with pppd) runs only where the"
            " kernel has PPP (/dev/ppp); enabling IKEv2 or OpenVPN on the gateway avoids that"
        )
    else:
        report.chosen_link = None
        report.chosen_because = "no link opencm can run in the download"
    return draft


__all__ = ["import_azure"]
