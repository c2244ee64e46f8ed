"""The connection macros that come from the links themselves, for the session to merge in.

``%ConnectionType%`` follows from which links are up (dial-up only, tunnel only, both);
``%DialRasEntry%``/``%TunnelRasEntry%`` are the entries' names; the addresses come from the
tunnel when there is one (that is the network the user's actions care about), else from the
dial-up link. A macro whose value is unknown is left out, so the action engine expands it to
``NULL`` as CM does.
"""

from __future__ import annotations

from opencm.links.api import LinkInfo
from opencm.profile.model import ConnectionType


def connection_type(dial: LinkInfo | None, tunnel: LinkInfo | None) -> ConnectionType:
    if dial is not None and tunnel is not None:
        return ConnectionType.DOUBLE
    return ConnectionType.DIALUP if dial is not None else ConnectionType.DIRECT


def link_macros(dial: LinkInfo | None, tunnel: LinkInfo | None) -> dict[str, str]:
    """Macro name (without ``%``) → value, from the links that are up."""
    if dial is None and tunnel is None:
        return {}
    values: dict[str, str | None] = {
        "ConnectionType": str(int(connection_type(dial, tunnel))),
        "DialRasEntry": dial.entry if dial else None,
        "TunnelRasEntry": tunnel.entry if tunnel else None,
        "TunnelServerAddress": tunnel.tunnel_server if tunnel else None,
    }
    main = tunnel or dial
    assert main is not None
    values["ClientIPAddress"] = main.client_ip
    values["ServerIPAddress"] = main.server_ip
    return {name: value for name, value in values.items() if value}
