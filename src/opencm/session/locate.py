"""Finding the profile a user means: a path, or the short name of an installed profile.

``opencm connect CONTOSO`` and a desktop front end's profile list both end here. A short name is
looked up in the install scopes: the user's own installs first, then those for all users; root
(the boot unit ``opencm-connect@CONTOSO``) looks in the all-users scope only, because a user's
profile would run its actions with root's rights.

Kept light: the client side of ``opencm connect`` imports this, so the install machinery is
imported only when a short name has to be looked up.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from opencm.errors import InputError

if TYPE_CHECKING:
    from opencm.kit.roots import Scope


def default_scopes(*, user: bool = False) -> list[Scope]:
    """Where a short name is looked up, in order: as root all users only, else user first.

    ``user``: the caller's own installs only (``opencm connect NAME --user``), which is how
    root reaches a profile root installed for itself alone."""
    from opencm.kit.roots import all_users_scope, user_scope

    if user:
        return [user_scope()]
    return [all_users_scope()] if os.geteuid() == 0 else [user_scope(), all_users_scope()]


def resolve_profile(name: str, scopes: Sequence[Scope] | None = None) -> Path:
    """The absolute path of a ``.cmp``/``.cms``/profile folder named by path, or the ``.cmp`` of
    the installed profile named by its short name (``scopes``: :func:`default_scopes`)."""
    path = Path(name)
    if path.exists():
        return path.resolve()
    if "/" not in name and not name.endswith((".cmp", ".cms")):
        from opencm.kit.install import find_installed_cmp

        looked = default_scopes() if scopes is None else list(scopes)
        found = find_installed_cmp(name, looked)
        if found is not None:
            return found
        where = ", ".join(f"{scope.profiles_dir} ({scope.name})" for scope in looked)
        hint = ""
        if scopes is None and os.geteuid() == 0:
            hint = "; as root only profiles installed for all users are looked up: add --user"
            hint += " for your own installs"
        raise InputError(
            f"no such profile file or folder, and no installed profile of that name "
            f"(looked in {where}){hint}",
            path=name,
        )
    raise InputError("no such profile file, folder or installed profile", path=name)


__all__ = ["default_scopes", "resolve_profile"]
