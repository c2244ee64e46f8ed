"""The built-in first post-connect action: "Automatically download phone-book updates".

The option is the one "How Connection Manager Works" names.

:func:`auto_update` reads the profile's ``[opencm] PhoneBookURL`` and ``PhoneBookKey``
(``docs/kit-spec.md``) and the phone book named by ``[ISP] PBFile``, asks the Phone Book Service
with the installed version (:func:`opencm.pbs.client.fetch_update`, which verifies the signature
and the signed book/kind/version/base), and hands a verified cab to the phone-book installer,
which replaces the book atomically. Whatever goes wrong (offline, timeout, server error, a
refused update, an installer error) the installed book stays as it was, the outcome is logged
and returned, and the connection goes on: this never raises and never waits longer than
``timeout`` for the network.

The session runs it before the profile's own post-connect actions whenever the profile has a
``PhoneBookURL`` (``opencm.session.runner``); ``0=python:pbupdate %ServiceDir%``
(``pbupdate_action`` below) runs it as an ordinary action too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from opencm.errors import OpencmError, RefusedError
from opencm.pbs.client import UpdateOutcome, fetch_update
from opencm.phonebook import update as book_update
from opencm.profile.model import ServiceProfile, load_profile

log = logging.getLogger("opencm.pbs.autoupdate")
SECTION = "opencm"

Result = Literal["applied", "current", "skipped", "refused", "failed"]


class BookInstaller(Protocol):
    """Reads and replaces an installed phone book (the real one is opencm.phonebook.update)."""

    def installed_version(self, service_dir: Path, book: str) -> int | None: ...

    def apply_update(
        self, service_dir: Path, book: str, cab: bytes, *, kind: str, base: int | None, version: int
    ) -> object: ...


class PhonebookInstaller:
    """:class:`BookInstaller` backed by :mod:`opencm.phonebook.update`."""

    def installed_version(self, service_dir: Path, book: str) -> int | None:
        return book_update.installed_version(service_dir, book)

    def apply_update(
        self, service_dir: Path, book: str, cab: bytes, *, kind: str, base: int | None, version: int
    ) -> object:
        return book_update.apply_update(
            service_dir, book, cab, kind=kind, base=base, version=version
        )


@dataclass(frozen=True)
class AutoUpdateResult:
    result: Result
    message: str
    book: str | None = None
    installed: int | None = None
    version: int | None = None
    outcome: UpdateOutcome | None = None


def auto_update(
    profile_or_service_dir: str | Path | ServiceProfile,
    *,
    timeout: float = 5.0,
    installer: BookInstaller | None = None,
) -> AutoUpdateResult:
    """Bring the profile's phone book up to date if its service has a newer one."""
    target = (
        profile_or_service_dir
        if isinstance(profile_or_service_dir, ServiceProfile)
        else Path(profile_or_service_dir)
    )
    result = _auto_update(target, timeout, installer or PhonebookInstaller())
    level = logging.INFO if result.result in ("applied", "current", "skipped") else logging.WARNING
    log.log(level, "phone-book update: %s: %s", result.result, result.message)
    return result


def _auto_update(
    target: Path | ServiceProfile, timeout: float, installer: BookInstaller
) -> AutoUpdateResult:
    if isinstance(target, ServiceProfile):
        profile = target
    else:
        try:
            profile = load_profile(target)
        except OpencmError as error:
            return AutoUpdateResult("failed", f"cannot read the profile: {error}")
    url = profile.phonebook_url
    key = (profile.cms.get(SECTION, "PhoneBookKey") or "").strip()
    pbk = profile.phonebook_path()
    if not url or pbk is None:
        return AutoUpdateResult("skipped", "the profile names no phone book or no PhoneBookURL")
    if not key:
        return AutoUpdateResult("failed", "the profile has a PhoneBookURL but no PhoneBookKey")
    book, service_dir = pbk.stem, pbk.parent
    try:
        installed = installer.installed_version(service_dir, book) or 0
    except (OpencmError, OSError) as error:
        return AutoUpdateResult("failed", f"cannot read the installed version: {error}", book)
    outcome = fetch_update(url, book, installed, key, timeout=timeout)

    def done(result: Result, message: str, version: int | None = None) -> AutoUpdateResult:
        return AutoUpdateResult(result, message, book, installed, version, outcome)

    if outcome.status == "none":
        return done("current", f"{book} version {installed} is current")
    if outcome.status == "refused":
        return done("refused", f"update refused, {book} {installed} kept: {outcome.reason}")
    if outcome.status == "failed" or outcome.cab is None or outcome.version is None:
        return done("failed", f"no update, {book} {installed} kept: {outcome.reason}")
    try:
        installer.apply_update(
            service_dir,
            book,
            outcome.cab,
            kind=outcome.status,
            base=outcome.base,
            version=outcome.version,
        )
    except RefusedError as error:
        return done("refused", f"{outcome.reason} refused, {book} {installed} kept: {error}")
    except (OpencmError, OSError) as error:
        return done("failed", f"applying {outcome.reason} failed, {book} {installed} kept: {error}")
    return done("applied", f"{book} updated: {outcome.reason}", outcome.version)


def pbupdate_action(parent: None, instance: None, command_line: str, reserved: int) -> int:
    """Python action ``python:pbupdate <profile or service dir>``; 0 unless misused.

    A failed or refused update is logged but does not fail the action: a post-connect failure
    would end the connection, and an old phone book is no reason to hang up.
    """
    target = command_line.strip().strip('"')
    if not target:
        log.error("pbupdate: give the profile or service folder (e.g. %%ServiceDir%%)")
        return -1
    auto_update(target)
    return 0
