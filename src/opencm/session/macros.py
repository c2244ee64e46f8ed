"""The macros a session sets itself, on top of the profile's.

The profile gives the fixed ones (``%ServiceName%``, ``%ProfileDir%`` …:
:meth:`~opencm.profile.model.ServiceProfile.base_macros`); a session adds what only a connection
knows, following the macro list of Microsoft's "Custom actions keys":

- ``%UserName%``, ``%InetUserName%``, ``%Domain%`` from the credentials (``%InetUserName%``
  from a double dial's own Internet credentials when it has them);
- ``%PopName%``, ``%CurrentFavorite%``: the POP the dial-up entry dials and the user's
  favorite (opencm.session.config, from the profile's base);
- ``%ConnectionType%`` (0 dial-up, 1 direct, 2 double dial);
- ``%AutoRedial%``: 1 once the session redials or reconnects on its own;
- ``%DialRasEntry%`` / ``%TunnelRasEntry%``: the entry being dialled at each stage;
- ``%TunnelServerAddress%``: the VPN server (as configured, then as the link reports it);
- ``%ClientIPAddress%`` / ``%ServerIPAddress%``: the newest link's addresses: the dial-up line's
  until the tunnel is up (what pre-tunnel actions see), then the tunnel's. They are forgotten
  when the links are released, so a later attempt never sees stale addresses.

Point-specific macros (``%ErrorCode%``, ``%LastErrorSource%``, ``%DisconnectReason%``) are passed
as ``extra`` by the point that sets them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from opencm.links.api import Credentials, DialEntry, LinkInfo
from opencm.profile.model import ConnectionType


class SessionMacros:
    def __init__(
        self,
        base: Callable[[], Mapping[str, str]],
        credentials: Credentials,
        connection_type: ConnectionType,
        configured_addresses: Mapping[str, str],
        *,
        inet_credentials: Credentials | None = None,
    ) -> None:
        # Asked each time: the profile's values can change under a session (the post-connect
        # phone-book update may install the book that %DialRasPhoneBook% names).
        self._base = base
        self._credentials = credentials
        self._inet_credentials = inet_credentials
        self._connection_type = connection_type
        self._configured_addresses = configured_addresses
        self._own: dict[str, str] = {}

    def set_credentials(
        self, credentials: Credentials, inet_credentials: Credentials | None = None
    ) -> None:
        """The logon screen's user name and domain (given after pre-init), and a double dial's
        Internet user."""
        self._credentials = credentials
        self._inet_credentials = inet_credentials

    def set_auto_redial(self, redialing: bool) -> None:
        self._own["AutoRedial"] = "1" if redialing else "0"

    def set_link(self, stage: str, entry: DialEntry, info: LinkInfo | None) -> None:
        """The entry about to be dialled at ``stage`` (``info`` None), or the link now up."""
        if stage == "dial":
            self._own["DialRasEntry"] = entry.name
        else:
            self._own["TunnelRasEntry"] = entry.name
            address = (info.tunnel_server if info else None) or self._configured_addresses.get(
                entry.name
            )
            if address:
                self._own["TunnelServerAddress"] = address
        if info is not None:
            if info.client_ip:
                self._own["ClientIPAddress"] = info.client_ip
            if info.server_ip:
                self._own["ServerIPAddress"] = info.server_ip

    def forget_addresses(self) -> None:
        for name in ("ClientIPAddress", "ServerIPAddress"):
            self._own.pop(name, None)

    def values(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Every macro an action would get now, ``extra`` (the point's own) last."""
        macros = dict(self._base())
        # %UserName% is the name without the realm (Microsoft's "Custom Actions");
        # %InetUserName% the dial-up server's: a double dial's Internet user, else the same.
        if self._credentials.username:
            macros["UserName"] = self._credentials.username
            macros["InetUserName"] = self._credentials.username
        if self._inet_credentials is not None and self._inet_credentials.username:
            macros["InetUserName"] = self._inet_credentials.username
        if self._credentials.domain:
            macros["Domain"] = self._credentials.domain
        macros.update(self._own)
        macros["ConnectionType"] = str(int(self._connection_type))
        macros.update(extra or {})
        return macros


__all__ = ["SessionMacros"]
