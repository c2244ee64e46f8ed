"""Where profiles are installed, per user or for all users, and where trusted keys live.

the layout of "How Connection Manager Works", on Linux::

    per user     $XDG_DATA_HOME/opencm/Cm/<SHORT>.cmp + <SHORT>/…   (~/.local/share/…)
                 $XDG_DATA_HOME/opencm/installed/<SHORT>.json         install record
                 $XDG_DATA_HOME/applications/opencm-<short>.desktop
                 $XDG_CONFIG_HOME/opencm/trusted-keys/*.pub            keys this user trusts
    all users    /etc/opencm/Cm/<SHORT>.cmp + <SHORT>/…
                 /var/lib/opencm/installed/<SHORT>.json
                 /usr/share/applications/opencm-<short>.desktop
                 /etc/opencm/trusted-keys/*.pub                         keys everyone trusts

Every root can be moved with an environment variable (tests use temporary folders):
``OPENCM_SYSTEM_CONFIG_DIR`` (/etc/opencm), ``OPENCM_SYSTEM_STATE_DIR`` (/var/lib/opencm),
``OPENCM_SYSTEM_APPLICATIONS_DIR`` (/usr/share/applications); the per-user ones follow
``XDG_DATA_HOME`` and ``XDG_CONFIG_HOME``. :mod:`opencm.paths` reads them all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import minisign

from opencm.paths import (
    config_home,
    data_home,
    system_applications_dir,
    system_config_dir,
    system_state_dir,
)
from opencm.signing import load_public_key

USER = "user"
ALL_USERS = "all-users"


@dataclass(frozen=True)
class Scope:
    name: str
    #: The ``Cm`` folder: ``<SHORT>.cmp`` files and ``<SHORT>/`` service folders.
    profiles_dir: Path
    #: Install records.
    records_dir: Path
    applications_dir: Path
    #: Folders whose ``*.pub`` keys are trusted for installs in this scope.
    trust_dirs: tuple[Path, ...]

    def trusted_keys(self) -> list[minisign.PublicKey]:
        keys: list[minisign.PublicKey] = []
        for folder in self.trust_dirs:
            if folder.is_dir():
                keys.extend(load_public_key(path) for path in sorted(folder.glob("*.pub")))
        return keys


def user_scope(env: Mapping[str, str] | None = None) -> Scope:
    data = data_home(env)
    config = config_home(env)
    return Scope(
        USER,
        data / "opencm" / "Cm",
        data / "opencm" / "installed",
        data / "applications",
        # A user trusts what the administrator trusts, plus keys of their own.
        (system_config_dir(env) / "trusted-keys", config / "opencm" / "trusted-keys"),
    )


def all_users_scope(env: Mapping[str, str] | None = None) -> Scope:
    config = system_config_dir(env)
    state = system_state_dir(env)
    apps = system_applications_dir(env)
    # Only keys root put in place: a user's own keys never vouch for a system-wide install.
    return Scope(ALL_USERS, config / "Cm", state / "installed", apps, (config / "trusted-keys",))


def scope_for(all_users: bool | None, env: Mapping[str, str] | None = None) -> Scope:
    """``--all-users``/``--user``; without either, all users when run as root."""
    if all_users is None:
        all_users = os.geteuid() == 0
    return all_users_scope(env) if all_users else user_scope(env)
