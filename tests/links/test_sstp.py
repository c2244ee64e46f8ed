"""The SSTP dialer: its sstpc argv and pppd options (pppd cannot run on this kernel: no
/dev/ppp), and the refusal, at once and without a redial, where PPP is missing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opencm.errors import InputError
from opencm.links import codes
from opencm.links.api import Credentials, DialEntry, Dialer, DialError
from opencm.links.modem import ppp_available
from opencm.links.sstp import SSTPDialer, parse_sstp_config, pppd_options, sstpc_argv


def write(tmp_path: Path, text: str) -> Path:
    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text("x")
    path = tmp_path / "link.sstp"
    path.write_text(text)
    return path


def test_dialer_satisfies_the_contract() -> None:
    assert isinstance(SSTPDialer(), Dialer)


def test_argv_never_carries_the_password(tmp_path: Path) -> None:
    config = parse_sstp_config(write(tmp_path, "server = gw.example:443\nca = ca.crt\n"))
    argv = sstpc_argv(config, tmp_path / "options", "opencm-1")
    assert argv == [
        "sstpc", "--log-stderr", "--log-level", "2", "--ipparam", "opencm-1",
        "--ca-cert", str(tmp_path / "ca.crt"), "gw.example:443", "file", str(tmp_path / "options"),
    ]  # fmt: skip
    options = pppd_options(config, Credentials("jo", 'p"w\\d'), "opencm-1")
    assert options.splitlines() == [
        "plugin sstp-pppd-plugin.so",
        "sstp-sock /var/run/sstpc/sstpc-opencm-1",
        "nodetach", "noauth", "nodefaultroute", "usepeerdns", "noipdefault",
        "refuse-pap", "refuse-chap", "refuse-mschap", "refuse-eap", "nobsdcomp", "nodeflate",
        'user "jo"',
        'password "p\\"w\\\\d"',
    ]  # fmt: skip
    assert not any('p"w' in word for word in argv)


def test_eap_tls_options(tmp_path: Path) -> None:
    config = parse_sstp_config(
        write(tmp_path, "server = gw\nauth = eap-tls\ncert = c.crt\nkey = c.key\nca = ca.crt\n")
    )
    options = pppd_options(config, Credentials("jo"), "s").splitlines()
    assert "refuse-mschap-v2" in options and "refuse-eap" not in options
    assert f'key "{tmp_path / "c.key"}"' in options
    assert not any(line.startswith("password") for line in options)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ca = ca.crt\n", "server is missing"),
        ("server = -oProxyCommand=x\n", "not a host name"),
        ("server = gw\nauth = pap\n", "expected auth one of"),
        ("server = gw\nauth = eap-tls\n", "needs cert and key"),
        ("server = gw\nserver = gw2\n", "server is given twice"),
    ],
)
def test_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_sstp_config(write(tmp_path, text))


@pytest.mark.skipif(ppp_available(), reason="this kernel has PPP")
def test_without_ppp_the_dial_ends_at_once_and_says_why(tmp_path: Path) -> None:
    entry = DialEntry("Azure", "sstp", {"config": str(write(tmp_path, "server = gw\n"))})

    async def scenario() -> None:
        with pytest.raises(DialError) as failed:
            await SSTPDialer().dial(entry, Credentials("jo", "pw"), lambda down: None)
        assert not failed.value.retryable and failed.value.code == codes.BAD_ENTRY
        assert "/dev/ppp" in str(failed.value)

    asyncio.run(scenario())
