"""SLIP framing and the modem emulator's logic, without ptys (the real ones run in test_modem)."""

from __future__ import annotations

from opencm.links import slip
from opencm_lab.modem_emulator import Modem, parse_scripts

IPV4 = bytes([0x45, 0, 0, 28]) + bytes([slip.END, slip.ESC, 7, slip.END]) + bytes(20)


def test_slip_round_trip_escapes_end_and_esc() -> None:
    frame = slip.encode(IPV4)
    assert frame[0] == slip.END and frame[-1] == slip.END
    assert slip.END not in frame[1:-1]
    decoder = slip.Decoder()
    # Split anywhere, even inside an escape sequence: the packet comes back whole.
    packets = decoder.feed(frame[:6]) + decoder.feed(frame[6:])
    assert packets == [IPV4]


def test_slip_keeps_modem_text_apart_and_sees_no_carrier() -> None:
    decoder = slip.Decoder()
    assert decoder.feed(b"\r\nNO CARRIER\r\n" + bytes([slip.END])) == []
    assert decoder.carrier_lost()
    clean = slip.Decoder()
    assert clean.feed(slip.encode(IPV4) * 2) == [IPV4, IPV4]
    assert not clean.carrier_lost()


class Wire:
    def __init__(self) -> None:
        self.to_host = b""
        self.to_far = b""
        self.events: list[str] = []

    def host(self, data: bytes) -> None:
        self.to_host += data

    def far(self, data: bytes) -> None:
        self.to_far += data


def modem(wire: Wire, scripts: dict[str, list[str]]) -> Modem:
    return Modem(wire.host, wire.far, scripts, dial_delay=0.3, guard=1.0, log=wire.events.append)


def test_scripted_results_then_the_last_repeats() -> None:
    wire = Wire()
    m = modem(wire, parse_scripts(["555=BUSY,CONNECT 28800"]))
    for expected in ("BUSY", "CONNECT 28800", "CONNECT 28800"):
        wire.to_host = b""
        m.feed(b"ATDT555\r", 0.0)
        m.tick(0.2)
        assert expected.encode() not in wire.to_host  # still ringing
        m.tick(0.31)
        assert f"\r\n{expected}\r\n".encode() in wire.to_host
        m.port_closed()  # hang up between calls


def test_data_mode_forwarding_and_escape_with_guard_time() -> None:
    wire = Wire()
    m = modem(wire, {"1": ["CONNECT 33600"]})
    m.feed(b"ATE0\r", 0.0)
    m.feed(b"ATD1\r", 0.0)
    m.tick(0.5)
    assert m.online
    m.feed(b"payload", 1.0)
    assert wire.to_far == b"payload"
    m.feed(b"+++", 1.5)  # only 0.5 s of silence before: data, not an escape
    m.feed(b"x", 1.6)
    assert wire.to_far == b"payload+++x" and m.online
    m.feed(b"+++", 3.0)  # 1.4 s of silence before
    m.tick(3.5)
    assert m.online  # the guard time after has not passed yet
    m.tick(4.1)
    assert not m.online and m.connected and wire.to_host.endswith(b"\r\nOK\r\n")
    m.feed(b"ATH0\r", 4.2)
    assert not m.connected and "hang up (ATH)" in wire.events


def test_numeric_results_and_carrier_drop() -> None:
    wire = Wire()
    m = modem(wire, {"1": ["CONNECT"], "2": ["BUSY"]})
    m.feed(b"ATV0\r", 0.0)
    assert wire.to_host.endswith(b"0\r")  # OK
    m.feed(b"ATD2\r", 0.0)
    m.tick(1.0)
    assert wire.to_host.endswith(b"7\r")  # BUSY
    m.feed(b"ATD1\r", 1.0)
    m.tick(2.0)
    m.drop_carrier()
    assert wire.to_host.endswith(b"3\r") and not m.connected  # NO CARRIER
    m.feed(b"ATQ\x01\r", 3.0)
    assert wire.to_host.endswith(b"4\r")  # ERROR
