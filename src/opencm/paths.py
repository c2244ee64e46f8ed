"""Where opencm keeps things on disk: the one place that reads the XDG and ``OPENCM_SYSTEM_*``
variables.

Per user, the XDG base directories (a relative value is ignored, as the XDG specification says)::

    $XDG_DATA_HOME     ~/.local/share   installed profiles, install records, the PBA workspace
    $XDG_CONFIG_HOME   ~/.config        trusted keys, saved credentials
    $XDG_STATE_HOME    ~/.local/state   a user's own daemon: journal and lock
    $XDG_RUNTIME_DIR   /tmp/opencm-UID  a user's own daemon: its socket

For the whole machine, each root moves with one variable (tests point them at temporary folders;
they never write the real ones)::

    OPENCM_SYSTEM_CONFIG_DIR        /etc/opencm              all-users profiles, keys, allow lists
    OPENCM_SYSTEM_STATE_DIR         /var/lib/opencm          install records, the daemon's journal
    OPENCM_SYSTEM_APPLICATIONS_DIR  /usr/share/applications  menu entries of all-users profiles
    OPENCM_SYSTEM_ACTIONS_DIR       /usr/lib/opencm/actions  programs a logon allow list may name

Every function takes an optional ``env`` mapping (default: the process environment), so a caller
can compute another user's or a test's paths without changing its own environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _system(env: Mapping[str, str] | None, name: str, default: str) -> Path:
    return Path(_env(env).get(name) or default)


def system_config_dir(env: Mapping[str, str] | None = None) -> Path:
    return _system(env, "OPENCM_SYSTEM_CONFIG_DIR", "/etc/opencm")


def system_state_dir(env: Mapping[str, str] | None = None) -> Path:
    return _system(env, "OPENCM_SYSTEM_STATE_DIR", "/var/lib/opencm")


def system_applications_dir(env: Mapping[str, str] | None = None) -> Path:
    return _system(env, "OPENCM_SYSTEM_APPLICATIONS_DIR", "/usr/share/applications")


def system_actions_dir(env: Mapping[str, str] | None = None) -> Path:
    return _system(env, "OPENCM_SYSTEM_ACTIONS_DIR", "/usr/lib/opencm/actions")


def _xdg(env: Mapping[str, str] | None, name: str, fallback: str) -> Path:
    e = _env(env)
    value = e.get(name)
    if value and Path(value).is_absolute():
        return Path(value)
    return Path(e.get("HOME") or Path.home()) / fallback


def data_home(env: Mapping[str, str] | None = None) -> Path:
    return _xdg(env, "XDG_DATA_HOME", ".local/share")


def config_home(env: Mapping[str, str] | None = None) -> Path:
    return _xdg(env, "XDG_CONFIG_HOME", ".config")


def state_home(env: Mapping[str, str] | None = None) -> Path:
    return _xdg(env, "XDG_STATE_HOME", ".local/state")


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR``, else a per-user folder under ``/tmp`` (no home on a tmpfs)."""
    value = _env(env).get("XDG_RUNTIME_DIR")
    return (
        Path(value) if value and Path(value).is_absolute() else Path(f"/tmp/opencm-{os.getuid()}")
    )
