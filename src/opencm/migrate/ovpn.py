"""Importing an OpenVPN client config (``.ovpn``): one self-contained config, no paths shipped.

Key material is carried inside the config: inline blocks stay inline, and every file a
directive names (``ca``, ``cert``, ``key``, ``tls-auth``, ``tls-crypt``, …; relative to the
``.ovpn``'s folder, as OpenVPN reads them) is read and written into the config as the matching
inline block. The kit therefore never ships an absolute path, and the config is mode 0600
whenever it holds a private or static key. Options opencm must own (scripts, management,
daemon mode, logs) are reported and removed; anything else OpenVPN would run or write is
removed too, naming the line (``opencm.links.openvpn.ALLOWED_DIRECTIVES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError
from opencm.links.openvpn import ALLOWED_DIRECTIVES, INLINE_BLOCKS
from opencm.migrate.report import Report

#: Directives that name a file of key material, and the inline block that replaces them.
FILE_DIRECTIVES = (
    "ca", "cert", "key", "tls-auth", "tls-crypt", "tls-crypt-v2", "pkcs12", "extra-certs",
    "crl-verify", "secret",
)  # fmt: skip
#: What opencm itself owns when it runs OpenVPN, and why each goes.
OWNED = {
    "up": "runs a script: opencm runs programs only as custom actions",
    "down": "runs a script: opencm runs programs only as custom actions",
    "route-up": "runs a script: opencm runs programs only as custom actions",
    "script-security": "scripts are not run (custom actions replace them)",
    "management": "opencm drives OpenVPN over its own management socket",
    "management-hold": "opencm drives OpenVPN over its own management socket",
    "management-query-passwords": "opencm drives OpenVPN over its own management socket",
    "daemon": "opencm runs OpenVPN in the foreground to hold its PID",
    "log": "OpenVPN's log goes to opencm's session log",
    "log-append": "OpenVPN's log goes to opencm's session log",
    "writepid": "opencm holds the PID itself",
    "status": "opencm reports the status itself",
    "cd": "opencm sets OpenVPN's working folder",
    "chroot": "opencm sets OpenVPN's working folder",
}
BINARY_BLOCKS = {"pkcs12"}
SECRET_BLOCKS = {"key", "tls-auth", "tls-crypt", "tls-crypt-v2", "secret", "pkcs12"}


@dataclass
class OvpnResult:
    text: str
    remote: str | None
    port: str | None
    holds_secret: bool


def _block(tag: str, data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    if tag in BINARY_BLOCKS:
        import base64

        text = base64.encodebytes(data).decode("ascii")
    return f"<{tag}>\n{text.rstrip()}\n</{tag}>"


def convert_ovpn(path: Path, text: str, report: Report, *, base: Path | None = None) -> OvpnResult:
    """The config as the kit ships it; every change is in ``report``."""
    folder = base if base is not None else path.parent
    out: list[str] = []
    inline: str | None = None
    skipping: str | None = None
    remote: str | None = None
    port: str | None = None
    secret = False
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if skipping is not None:
            if stripped.lower() == f"</{skipping}>":
                skipping = None
            continue
        if inline is not None:
            out.append(raw)
            if stripped.lower() == f"</{inline}>":
                inline = None
            continue
        if stripped.startswith("<") and stripped.endswith(">") and not stripped.startswith("</"):
            tag = stripped[1:-1].strip().lower()
            if tag not in INLINE_BLOCKS or tag == "connection":
                report.dropped(f"<{tag}>", "an inline block opencm does not accept", path, number)
                skipping = tag
                continue
            inline = tag
            out.append(raw)
            report.carried(f"<{tag}>", "inline block kept", path, number)
            secret = secret or tag in SECRET_BLOCKS
            continue
        words = stripped.split()
        if not words or words[0][0] in "#;":
            out.append(raw)
            continue
        directive = words[0].removeprefix("--").lower()
        if directive in OWNED:
            report.dropped(directive, OWNED[directive], path, number)
            continue
        if directive not in ALLOWED_DIRECTIVES:
            report.dropped(
                directive,
                "not a client option opencm accepts (it would run a program or write a file)",
                path,
                number,
            )
            continue
        if directive in FILE_DIRECTIVES and len(words) > 1 and words[1] != "[inline]":
            name = words[1].strip('"')
            source = Path(name) if Path(name).is_absolute() else folder / name
            try:
                data = source.read_bytes()
            except OSError as error:
                report.needed(
                    directive,
                    f"{name} cannot be read ({error.strerror}); put it in the config inline",
                    path,
                    number,
                )
                continue
            out.append(_block(directive, data))
            if directive == "tls-auth" and len(words) > 2:
                out.append(f"key-direction {words[2]}")
            report.carried(
                directive,
                f"{name} carried inside the config as <{directive}> (no path is shipped)",
                path,
                number,
            )
            secret = secret or directive in SECRET_BLOCKS
            continue
        if directive == "auth-user-pass" and len(words) > 1:
            report.mapped(
                "auth-user-pass",
                f"the file {words[1]} is not shipped: opencm asks for the user name and password",
                path,
                number,
            )
            out.append("auth-user-pass")
            continue
        if directive == "remote" and len(words) > 1 and remote is None:
            remote = words[1]
            port = words[2] if len(words) > 2 else None
        out.append(raw)
    if inline is not None or skipping is not None:
        raise InputError(f"the <{inline or skipping}> block is never closed", path=path)
    return OvpnResult("\n".join(out) + "\n", remote, port, secret)


__all__ = ["FILE_DIRECTIVES", "OWNED", "OvpnResult", "convert_ovpn"]
