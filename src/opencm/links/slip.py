"""IP over a serial line in user space: SLIP framing (RFC 1055) between a tty and a TUN device.

This kernel has neither PPP nor SLIP, so after ``CONNECT`` the modem dialer runs this bridge
instead of pppd: it creates a TUN device, gives it the local and peer addresses, and copies
packets between the device and the line. The emulator's far end runs the same bridge, so IP
really flows over the "phone line".

Run as ``python -m opencm.links.slip --fd N | --port TTY --dev NAME --addr A --peer B``, inside
the namespace that gets the link (``ip netns exec``). It prints ``up`` once the device is
configured. Exit status: 0 on SIGTERM, 3 when the modem says ``NO CARRIER``, 4 when the line
hangs up (the other end of the pty went away), 2 on bad arguments or a failed set-up.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import tty

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
EXIT_NO_CARRIER = 3
EXIT_HANGUP = 4
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000


def encode(packet: bytes) -> bytes:
    """One SLIP frame: END, the packet with END/ESC escaped, END."""
    body = packet.replace(bytes([ESC]), bytes([ESC, ESC_ESC])).replace(
        bytes([END]), bytes([ESC, ESC_END])
    )
    return bytes([END]) + body + bytes([END])


class Decoder:
    """Turns line bytes back into packets; keeps non-IP bytes (modem text) apart."""

    def __init__(self) -> None:
        self._frame = bytearray()
        self._escaped = False
        #: The last bytes seen outside any IP frame (where "NO CARRIER" would appear).
        self.chatter = b""

    def feed(self, data: bytes) -> list[bytes]:
        packets: list[bytes] = []
        for byte in data:
            if byte == END:
                self._finish(packets)
            elif self._escaped:
                self._frame.append(END if byte == ESC_END else ESC if byte == ESC_ESC else byte)
                self._escaped = False
            elif byte == ESC:
                self._escaped = True
            else:
                self._frame.append(byte)
        return packets

    def _finish(self, packets: list[bytes]) -> None:
        frame = bytes(self._frame)
        self._frame.clear()
        self._escaped = False
        if not frame:
            return
        if frame[0] >> 4 in (4, 6):  # IPv4 or IPv6 header
            packets.append(frame)
        else:
            self.chatter = (self.chatter + frame)[-64:]

    def carrier_lost(self) -> bool:
        """True when the modem announced NO CARRIER in between frames."""
        return b"NO CARRIER" in self.chatter + bytes(self._frame)


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def _configure(dev: str, addr: str, peer: str, mtu: int) -> None:
    subprocess.run(["ip", "addr", "add", addr, "peer", peer, "dev", dev], check=True)
    subprocess.run(["ip", "link", "set", dev, "mtu", str(mtu), "up"], check=True)


def bridge(line: int, tun: int) -> int:
    """Copy packets until SIGTERM (0), NO CARRIER (3) or a line hang-up (4)."""
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    decoder = Decoder()
    while not stop:
        try:
            ready = select.select([tun, line], [], [], 0.2)[0]
        except InterruptedError:
            continue
        if tun in ready:
            os.write(line, encode(os.read(tun, 65535)))
        if line in ready:
            try:
                data = os.read(line, 4096)
            except OSError:
                data = b""
            if not data:
                print("line hung up", file=sys.stderr, flush=True)
                return EXIT_HANGUP
            for packet in decoder.feed(data):
                os.write(tun, packet)
            if decoder.carrier_lost():
                print("modem said NO CARRIER", file=sys.stderr, flush=True)
                return EXIT_NO_CARRIER
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opencm.links.slip", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--fd", type=int, help="an open file descriptor of the line")
    source.add_argument("--port", help="path of the tty")
    parser.add_argument("--dev", required=True)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--mtu", type=int, default=1006)
    args = parser.parse_args(argv)
    try:
        line = args.fd if args.fd is not None else os.open(args.port, os.O_RDWR | os.O_NOCTTY)
        if os.isatty(line):
            tty.setraw(line, termios.TCSANOW)
        tun = open_tun(args.dev)
        _configure(args.dev, args.addr, args.peer, args.mtu)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"slip: set-up failed: {error}", file=sys.stderr, flush=True)
        return 2
    print("up", flush=True)
    return bridge(line, tun)


if __name__ == "__main__":
    sys.exit(main())
