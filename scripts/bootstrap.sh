#!/usr/bin/env bash
# Set up everything opencm's demo and tests need on a fresh Debian 12 machine.
# Safe to run any number of times: each step checks before it acts.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

# Debian packages the tests use against the real thing: cab tools, signatures, links, load generators.
APT_PACKAGES=(
    gcc libc6-dev python3-venv
    cabextract gcab minisign openssl
    openvpn wireguard-go wireguard-tools iproute2 iputils-ping socat ppp
    wrk nginx-light nghttp2-client
    strongswan-charon strongswan-swanctl libcharon-extra-plugins libcharon-extauth-plugins
    libstrongswan-standard-plugins libstrongswan-extra-plugins sstp-client
    dbus libdbus-1-dev libglib2.0-dev pkg-config
    systemd xdg-utils desktop-file-utils
    # A real NetworkManager for the networkmanager link's tests (opencm_lab.nm runs it on a
    # private bus inside a test namespace; it needs udev to manage devices).
    network-manager network-manager-openvpn udev
    # The desktop client (opencm[gui], PySide6): Qt's X11/offscreen platform libraries, fonts,
    # and Xvfb + xdotool for its screenshots and the menu entry's end-to-end test.
    libegl1 libgl1 libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0
    libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
    libxcb-xkb1 libxcb-xfixes0 libdbus-1-3 fonts-dejavu-core xvfb xauth xdotool
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        # Packages such as nginx start a system service on install; the tests start their own
        # servers on 127.0.0.1, so keep the package scripts from starting anything.
        added_policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            added_policy=1
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        [ -z "$added_policy" ] || rm -f /usr/sbin/policy-rc.d
    else
        echo "bootstrap: not root, skipping Debian packages: ${missing[*]} (tests that need them are skipped)" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.opencm-installed
# The test lab (testlab/: namespaces, servers, modem emulator, demo) is a package of its own so
# that `pip install opencm` never ships it; the development venv gets both, editable.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ testlab/pyproject.toml -nt "$stamp" ] \
    || ! .venv/bin/python -c 'import opencm_lab' 2>/dev/null; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]' -e ./testlab
    touch "$stamp"
fi

# Byte-compile opencm once: with PYTHONDONTWRITEBYTECODE set (as on these machines) every
# `opencm` run would otherwise compile its modules from source again, on every start.
.venv/bin/python -m compileall -q src testlab >/dev/null
