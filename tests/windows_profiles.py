"""Windows Connection Manager profiles written by the tests themselves, in the real shapes.

The shapes are those of Azure's point-to-site download and of a hand-written CMAK route file
(docs/migrating.md lists them): a ``<short>.cmp`` beside a ``<short>\\`` service folder holding
the ``.cms`` (CRLF, ``[Connect Actions]`` running ``cmroute.dll,SetRoutes`` with ``0&Flags=48``),
a RAS phone book named by ``[ISP] PBFile=`` with one ``Type=2`` VPN entry, ``routes.txt``, the
``.inf``, icons and a stand-in ``cmroute.dll`` (only its name matters to opencm).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AZURE_SHORT = "8f3d2c1e-5b7a-4c9d-9e0f-1a2b3c4d5e6f"
AZURE_SERVICE = "contoso-vnet"
AZURE_GATEWAY = "azuregateway-8f3d2c1e.vpn.azure.com"

#: Azure's routes.txt: upper-case, `default` gateway/metric/interface, CRLF.
AZURE_ROUTES = (
    "ADD 10.1.0.0 MASK 255.255.0.0 default METRIC default IF default\r\n"
    "ADD 10.2.3.0 MASK 255.255.255.0 default METRIC default IF default\r\n"
)

#: A hand-written route file: lower case, explicit gateway, LF, no final newline.
HANDWRITTEN_ROUTES = (
    "add 10.0.0.0 mask 255.255.0.0 192.168.160.1 METRIC default IF default\n"
    "add 172.16.5.0 mask 255.255.255.0 default METRIC 5 IF default"
)

CMROUTE_LINE = (
    "{short}\\cmroute.dll,SetRoutes /Profile %PROFILE% /STATIC_FILE_NAME routes.txt "
    "/IPHLPAPI_ACCESS_DENIED_OK /TunnelRasPhonebook %TUNNELRASPHONEBOOK% "
    "/DialRasPhonebook %DIALRASPHONEBOOK% /ServiceName %SERVICENAME%"
)


def crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def ras_book(
    entry: str,
    *,
    gateway: str = AZURE_GATEWAY,
    strategy: int | None = 5,
    device: str = "WAN Miniport (SSTP)",
    auth_key: int | None = 13,
    entry_type: int = 2,
    dns: str = "",
) -> bytes:
    """A rasphone.pbk with one entry in Azure's layout (repeated CustomAuthData, sub-blocks)."""
    strategy_line = f"VpnStrategy={strategy}\n" if strategy is not None else ""
    auth = f"CustomAuthKey={auth_key}\n" if auth_key is not None else ""
    return crlf(
        f"[{entry}]\n"
        "Encoding=1\nPBVersion=2\n"
        f"Type={entry_type}\n"
        "AutoLogon=0\nUseRasCredentials=1\nLowDateTime=0\nHighDateTime=0\n"
        "DialParamsUID=0\nGuid=1F2E3D4C5B6A79880F1E2D3C4B5A6978\n"
        f"{strategy_line}"
        "ExcludedProtocols=0\nLcpExtensions=1\nDataEncryption=256\nSwCompression=0\n"
        "NegotiateMultilinkAlways=0\nSkipDoubleDialDialog=0\nDialMode=0\n"
        "OverridePref=15\nRedialAttempts=99\nRedialSeconds=5\nIdleDisconnectSeconds=0\n"
        f"PreferredDevice={device}\nPreferredPort=VPN1-0\n"
        f"{auth}"
        "CustomAuthData=314442430000000000000000000000000000\n"
        "CustomAuthData=0A00000000000000\n"
        "CustomAuthData=\n"
        "AuthRestrictions=128\nIpPrioritizeRemote=0\nIpInterfaceMetric=0\n"
        "IpHeaderCompression=0\nIpAddress=0.0.0.0\n"
        f"IpDnsAddress={dns or '0.0.0.0'}\nIpDns2Address=0.0.0.0\n"
        "IpWinsAddress=0.0.0.0\nIpWins2Address=0.0.0.0\nIpAssign=1\nIpNameAssign=1\n"
        "IpDnsFlags=0\nIpNBTFlags=1\nTcpWindowSize=0\nUseFlags=0\n"
        "\n"
        "NETCOMPONENTS=\nms_msclient=1\nms_server=1\n"
        "\n"
        "MEDIA=rastapi\nPort=VPN1-0\nDevice=" + device + "\n"
        "\n"
        "DEVICE=vpn\n"
        f"PhoneNumber={gateway}\n"
        "AreaCode=\nCountryCode=0\nCountryID=0\nUseDialingRules=0\nComment=\n"
        "FriendlyName=\nLastSelectedPhone=0\nPromoteAlternates=0\nTryNextAlternateOnFail=1\n"
    )


@dataclass
class WindowsProfile:
    root: Path
    short: str
    service: str

    @property
    def cmp(self) -> Path:
        return self.root / f"{self.short}.cmp"

    @property
    def service_dir(self) -> Path:
        return self.root / self.short

    @property
    def cms(self) -> Path:
        return self.service_dir / f"{self.short}.cms"

    @property
    def pbk(self) -> Path:
        return self.service_dir / f"{self.short}.pbk"


def write_windows_profile(
    root: Path,
    *,
    short: str = AZURE_SHORT,
    service: str = AZURE_SERVICE,
    gateway: str = AZURE_GATEWAY,
    routes: str = AZURE_ROUTES,
    book: bytes | None = None,
    redial_count: int = 99,
) -> WindowsProfile:
    """An Azure-shaped profile folder: ``<short>.cmp`` + ``<short>/`` (what cmstp installs)."""
    service_dir = root / short
    service_dir.mkdir(parents=True, exist_ok=True)
    (root / f"{short}.cmp").write_bytes(
        crlf(
            f"[Profile Format]\nVersion=5\n\n[Connection Manager]\nCMSFile={short}\\{short}.cms\n"
            "IdleTimeout=0\n"
        )
    )
    action = CMROUTE_LINE.format(short=short)
    cms = (
        "[Profile Format]\nVersion=5\n\n"
        f"[ISP]\nPBFile={short}\\{short}.pbk\nRegionFile=\nPBURL=\n\n"
        "[Connection Manager]\n"
        f"RedialCount={redial_count}\nRedialDelay=5\nVersion=0\nDownloadDelay=15\n"
        f"ServiceName={service}\nServiceMessage=\nPBMessage=\nDUN={service}\n"
        "UserNamePrefix=\nUserNameSuffix=\nPasswordHandling=0\n"
        f"Logo={short}\\azurevpnbanner.bmp\nIcon={short}\\azurebox32.ico\n"
        f"SmallIcon={short}\\azurebox16.ico\nTrayIcon=\nPBLogo=\n"
        "Dialup=0\nDirect=1\nConnectionType=0\nTunnel=1\nTunnelReferences=0\n"
        f"TunnelAddress={gateway}\nTunnelFile=\nTunnelDUN={short} Tunnel\n"
        "UseSameUserName=0\nHelpFile=\nHideDomain=0\nSecureRoutingCompartment=0\n"
        "AutoReconnect=1\nNoPromptReconnect=1\n\n"
        "[Animated Logo]\n\n[Animation Actions]\n\n[Pre-Init Actions]\n\n"
        "[Pre-Connect Actions]\n\n[Pre-Dial Actions]\n\n[Pre-Tunnel Actions]\n\n"
        f"[Connect Actions]\n0={action}\n0&Flags=48\n"
        "0&Description=to update your routing table\n\n"
        "[Auto Applications]\n\n[Disconnect Actions]\n\n[On-Cancel Actions]\n\n"
        "[On-Error Actions]\n\n[Menu Options]\n"
    )
    (service_dir / f"{short}.cms").write_bytes(crlf(cms))
    (service_dir / f"{short}.pbk").write_bytes(
        book if book is not None else ras_book(service, gateway=gateway)
    )
    (service_dir / "routes.txt").write_bytes(routes.encode("ascii"))
    (service_dir / f"{short}.inf").write_bytes(
        crlf(
            "[version]\nSignature=$chicago$\nAdvancedINF=2.5\n\n"
            f"[Strings]\nServiceName={service}\nShortSvcName={short}\n\n"
            "[Xnstall_Legacy]\n\n[Extra Files]\n"
        )
    )
    # Stand-ins: opencm never loads the DLL, and reads icons only by name.
    (service_dir / "cmroute.dll").write_bytes(b"MZ\x90\x00stand-in for cmroute.dll")
    for icon in ("azurebox16.ico", "azurebox32.ico", "azurevpnbanner.bmp"):
        (service_dir / icon).write_bytes(b"\x00\x00\x01\x00stand-in icon")
    return WindowsProfile(root, short, service)


def write_cab(folder: Path, cab: Path) -> Path:
    """A CMAK-style cabinet of the profile's files, flat, as ``gcab`` writes it (MSZIP)."""
    import shutil
    import subprocess

    members = sorted(p for p in folder.rglob("*") if p.is_file())
    flat = cab.parent / f"{cab.stem}-members"
    flat.mkdir(parents=True, exist_ok=True)
    for member in members:
        shutil.copy2(member, flat / member.name)
    subprocess.run(
        ["gcab", "-c", "-z", "-n", str(cab), *sorted(m.name for m in members)],
        cwd=flat,
        check=True,
        capture_output=True,
    )
    shutil.rmtree(flat)
    return cab


def write_iexpress(cab: Path, exe: Path) -> Path:
    """An IExpress-shaped ``.exe``: a PE stub, then the cabinet as its resource data."""
    stub = b"MZ\x90\x00" + b"\x00" * 60 + b"This program cannot be run in DOS mode.\r\n" * 8
    # A false "MSCF" in the stub's data: the reader must check the header, not the magic alone.
    stub += b"MSCF\x01\x02\x03\x04" + b"\x00" * 64
    exe.write_bytes(stub + cab.read_bytes() + b"\x00" * 512)
    return exe


def write_azure_zip(zip_path: Path, exe: Path | None, *, ovpn: str | None = None,
                    root_cert: bytes | None = None, vpn_type: str = "IkeV2") -> Path:  # fmt: skip
    """Azure's VpnClientConfiguration.zip: WindowsAmd64/, Generic/, OpenVPN/ (as offered)."""
    import zipfile

    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        if exe is not None:
            archive.write(exe, "WindowsAmd64/VpnClientSetupAmd64.exe")
        archive.writestr(
            "Generic/VpnSettings.xml",
            '<?xml version="1.0"?><VpnProfile xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
            f"<VpnServer>{AZURE_GATEWAY}</VpnServer><VpnType>{vpn_type}</VpnType>"
            "<Routes>10.1.0.0/16</Routes></VpnProfile>",
        )
        if root_cert is not None:
            archive.writestr("Generic/VpnServerRoot.cer", root_cert)
        if ovpn is not None:
            archive.writestr("OpenVPN/vpnconfig.ovpn", ovpn)
    return zip_path
