"""The marks and the lab start that every test over real OpenVPN in namespaces shares."""

from __future__ import annotations

import os
import shutil

import pytest

from opencm_lab.lab import Lab, LabError, NetnsPair, OpenVPNServer, start_openvpn_server

#: Root (namespaces, TUN), slow, and skipped without openvpn and ip.
OPENVPN_LAB = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces and TUN"),
    pytest.mark.skipif(
        shutil.which("openvpn") is None or shutil.which("ip") is None,
        reason="needs openvpn and ip (iproute2)",
    ),
]


def start_openvpn_lab(lab: Lab) -> tuple[NetnsPair, OpenVPNServer]:
    """A namespace pair and an OpenVPN server in it, or the test is skipped saying why."""
    try:
        pair = lab.netns_pair()
        return pair, start_openvpn_server(lab, pair, lab.pki())
    except LabError as error:
        pytest.skip(f"the OpenVPN lab cannot run here: {error}")
