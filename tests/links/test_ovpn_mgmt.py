"""The management-protocol parser on lines recorded from OpenVPN 2.6.14."""

from __future__ import annotations

import pytest

from opencm.links import ovpn_mgmt as mgmt


def test_state_lines() -> None:
    line = ">STATE:1733140000,CONNECTED,SUCCESS,10.213.1.2,10.213.0.1,1194,,,"
    assert mgmt.parse_line(line) == mgmt.State(
        "CONNECTED", "SUCCESS", "10.213.1.2", "10.213.0.1", "1194"
    )
    assert mgmt.parse_line(">STATE:1733140003,RECONNECTING,ping-restart,,,,,\r\n") == mgmt.State(
        "RECONNECTING", "ping-restart", "", "", ""
    )
    assert mgmt.parse_line(">STATE:1,WAIT,,,,,,") == mgmt.State("WAIT", "", "", "", "")


def test_counts_holds_passwords() -> None:
    assert mgmt.parse_line(">BYTECOUNT:1234,5678") == mgmt.ByteCount(1234, 5678)
    assert mgmt.parse_line(">HOLD:Waiting for hold release:4") == mgmt.Hold(4)
    assert mgmt.parse_line(">HOLD:Waiting for hold release:0") == mgmt.Hold(0)
    assert mgmt.parse_line(">PASSWORD:Need 'Auth' username/password") == mgmt.PasswordRequest(
        "Auth", "username/password"
    )
    assert mgmt.parse_line(">PASSWORD:Verification Failed: 'Auth'") == mgmt.PasswordFailed("Auth")


def test_log_fatal_replies_other() -> None:
    assert mgmt.parse_line(">LOG:1733140000,I,TUN/TAP device tun0 opened") == mgmt.Log(
        "I", "TUN/TAP device tun0 opened"
    )
    assert mgmt.parse_line(">FATAL:Cannot open TUN/TAP dev") == mgmt.Fatal(
        "Cannot open TUN/TAP dev"
    )
    assert mgmt.parse_line("SUCCESS: hold release succeeded") == mgmt.Reply(
        True, "hold release succeeded"
    )
    assert mgmt.parse_line("ERROR: unknown command") == mgmt.Reply(False, "unknown command")
    assert mgmt.parse_line(">INFO:OpenVPN Management Interface") == mgmt.Other(
        ">INFO:OpenVPN Management Interface"
    )
    assert mgmt.parse_line(">BYTECOUNT:x,y") == mgmt.Other(">BYTECOUNT:x,y")


def test_log_helpers() -> None:
    assert mgmt.tun_device("TUN/TAP device tun3 opened") == "tun3"
    assert mgmt.tun_device("something else") is None
    push = (
        "PUSH: Received control message: 'PUSH_REPLY,route-gateway 10.9.1.1,topology subnet,"
        "ping 1,ifconfig 10.9.1.2 255.255.255.0,peer-id 0'"
    )
    assert mgmt.pushed_gateway(push) == "10.9.1.1"
    net30 = "PUSH: Received control message: 'PUSH_REPLY,ifconfig 10.8.0.6 10.8.0.5'"
    assert mgmt.pushed_gateway(net30) == "10.8.0.5"
    assert mgmt.pushed_gateway("route-gateway 10.9.1.1") is None


def test_quote_escapes_and_refuses_line_breaks() -> None:
    assert mgmt.quote('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError, match="line break"):
        mgmt.quote("a\nb")
