"""Importing a WireGuard config (wg-quick's ``.conf``) for opencm's ``wireguard`` link."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError
from opencm.links.wireguard import config_lines
from opencm.migrate.report import Report

#: wg-quick keys opencm does not apply, and why.
DROPPED_KEYS = {
    "preup": "a shell command: opencm runs programs only as custom actions",
    "postup": "a shell command: opencm runs programs only as custom actions",
    "predown": "a shell command: opencm runs programs only as custom actions",
    "postdown": "a shell command: opencm runs programs only as custom actions",
    "saveconfig": "opencm never writes the config back",
    "table": "opencm adds the routes of AllowedIPs itself",
    "fwmark": "not applied by opencm's WireGuard link",
}


@dataclass
class WgResult:
    text: str
    endpoint: str | None


def convert_wg(path: Path, text: str, report: Report) -> WgResult:
    out: list[str] = []
    endpoint: str | None = None
    addresses = 0
    for item in config_lines(path, text.splitlines()):
        number, raw, key, value = item.number, item.raw, item.key, item.value
        if key is None:
            out.append(raw)
            continue
        lower = key.lower()
        if lower in DROPPED_KEYS:
            report.dropped(key, DROPPED_KEYS[lower], path, number)
            continue
        if lower == "dns":
            report.mapped(
                "DNS", f"{value}: reported, not applied (opencm leaves the system resolver alone)",
                path, number,
            )  # fmt: skip
            continue
        if lower == "address":
            addresses += 1
        if lower == "endpoint" and endpoint is None:
            endpoint = value.rsplit(":", 1)[0].strip("[]")
        if lower == "privatekey":
            report.carried("PrivateKey", "kept in the config (mode 0600)", path, number)
        else:
            report.carried(key, value if lower != "presharedkey" else "(secret)", path, number)
        out.append(raw)
    if not addresses:
        raise InputError("[Interface] needs an Address for the tunnel", path=path)
    return WgResult("\n".join(out) + "\n", endpoint)


__all__ = ["DROPPED_KEYS", "WgResult", "convert_wg"]
