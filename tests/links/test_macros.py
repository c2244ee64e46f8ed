"""Link macros: what the session gets from the links for %ConnectionType% and the addresses."""

from __future__ import annotations

from opencm.actions.macros import KNOWN_MACROS
from opencm.links.api import LinkInfo
from opencm.links.macros import link_macros

DIAL = LinkInfo("Dial-up POP", interface="ocmsl1", client_ip="10.5.5.2", server_ip="10.5.5.1")
TUNNEL = LinkInfo(
    "Corp VPN",
    interface="tun0",
    client_ip="10.8.1.2",
    server_ip="10.8.1.1",
    tunnel_server="10.5.5.1",
)


def test_double_dial() -> None:
    assert link_macros(DIAL, TUNNEL) == {
        "ConnectionType": "2",
        "DialRasEntry": "Dial-up POP",
        "TunnelRasEntry": "Corp VPN",
        "TunnelServerAddress": "10.5.5.1",
        "ClientIPAddress": "10.8.1.2",
        "ServerIPAddress": "10.8.1.1",
    }


def test_single_links_and_unknown_values() -> None:
    assert link_macros(DIAL, None) == {
        "ConnectionType": "0",
        "DialRasEntry": "Dial-up POP",
        "ClientIPAddress": "10.5.5.2",
        "ServerIPAddress": "10.5.5.1",
    }
    direct = link_macros(None, LinkInfo("WG", client_ip="10.9.0.2", tunnel_server="192.0.2.1"))
    assert direct == {
        "ConnectionType": "1",
        "TunnelRasEntry": "WG",
        "TunnelServerAddress": "192.0.2.1",
        "ClientIPAddress": "10.9.0.2",
    }
    assert link_macros(None, None) == {}


def test_every_name_is_a_known_macro() -> None:
    assert set(link_macros(DIAL, TUNNEL)) <= set(KNOWN_MACROS)
