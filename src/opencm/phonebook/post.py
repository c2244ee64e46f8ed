"""Posting a release to its home Phone Book Service.

The PBA of "How Connection Manager Works" posts by FTP; opencm replaces that with two targets, both
atomic (the service never sees half a release):

- a publish directory the service reads (:func:`opencm.phonebook.store.publish_release`: files go to
  a hidden folder, are flushed, and the folder is renamed into place before ``CURRENT`` moves);
- an authenticated HTTP(S) upload: ``PUT {base}/admin/books/{BOOK}/releases/{VERSION}`` with
  ``Authorization: Bearer <token>`` and an uncompressed POSIX tar of the release files (flat
  names). The service answers 201 ``{"book", "version"}``, 401 for a bad token, 409 when the
  version is not newer than what it serves, 400 for a bad archive. The service unpacks and
  publishes the whole tar or nothing.
"""

from __future__ import annotations

import io
import ipaddress
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2

from opencm.errors import InputError, OpencmError, RefusedError
from opencm.phonebook.keys import key_paths
from opencm.phonebook.store import publish_release
from opencm.phonebook.workspace import Workspace

TAR_TYPE = "application/x-tar"
#: The PBA's public key travels in the upload under this name.
PBA_KEY_MEMBER = "pba.pub"


def normalize_target(target: str) -> str:
    """``https://host/base`` stays a URL (no trailing slash); anything else is a directory."""
    if target.startswith(("http://", "https://")):
        return target.rstrip("/")
    return str(Path(target).expanduser().resolve())


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def release_tar(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed POSIX (ustar) tar of the release files, flat names, fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def post_to_directory(
    store: Path, book: str, version: int, files: Mapping[str, bytes]
) -> dict[str, Any]:
    release = publish_release(store, book, version, files)
    return {"book": release.book, "version": release.version, "target": str(store)}


def post_to_service(
    base_url: str,
    token: str,
    book: str,
    version: int,
    files: Mapping[str, bytes],
    *,
    timeout: float = 60.0,
    transport: httpx2.BaseTransport | None = None,
) -> dict[str, Any]:
    url = f"{base_url.rstrip('/')}/admin/books/{book}/releases/{version}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": TAR_TYPE}
    try:
        with httpx2.Client(timeout=timeout, transport=transport) as client:
            response = client.put(url, content=release_tar(files), headers=headers)
    except httpx2.HTTPError as error:
        raise OpencmError(f"cannot reach the Phone Book Service at {base_url} ({error})") from error
    detail = response.text.strip()[:300]
    if response.status_code == 201:
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            answer = {}
        return {
            "book": answer.get("book", book),
            "version": answer.get("version", version),
            "target": base_url,
        }
    if response.status_code in (401, 403):
        raise RefusedError(
            f"the Phone Book Service refused the token (HTTP {response.status_code})"
        )
    if response.status_code == 409:
        raise RefusedError(
            f"the Phone Book Service already serves {book} at this version or newer ({detail})"
        )
    if response.status_code == 400:
        raise InputError(f"the Phone Book Service rejected the release archive ({detail})")
    raise OpencmError(f"the Phone Book Service answered HTTP {response.status_code} ({detail})")


@dataclass(frozen=True)
class Posted:
    book: str
    version: int
    #: The normalised target: a directory path or a service URL.
    target: str
    #: What the target reported (``{"book", "version", "target"}``).
    answer: dict[str, Any]


def read_token(token_file: Path | None, environ: Mapping[str, str]) -> str:
    """The upload token: the first line of ``token_file``, else ``$OPENCM_PBS_TOKEN``."""
    if token_file is not None:
        token = token_file.read_text("utf-8").strip()
    else:
        token = environ.get("OPENCM_PBS_TOKEN", "").strip()
    if not token:
        raise InputError("an upload needs a token: --token-file FILE or $OPENCM_PBS_TOKEN")
    return token


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def post_latest(
    workspace: Workspace,
    name: str,
    *,
    target: str | None,
    token: Callable[[], str],
    force: bool = False,
    warn: Callable[[str], None] = lambda _message: None,
) -> Posted:
    """Post the book's latest release, in four steps:

    1. the latest release (a book without one is refused);
    2. the target: ``target`` or the book's home service, checked against that home (a book has
       one home; moving it needs ``force``) without remembering it yet;
    3. the release files to a publish directory, or uploaded to a service with ``token()``
       (asked only for an upload; ``warn`` hears about plain HTTP to another machine);
    4. once the target has the release: the home service remembered, the version marked posted.
    """
    book = workspace.book(name)
    if book.version == 0:
        raise RefusedError(f"{name} has no release yet; run 'opencm phonebook release {name}'")
    chosen = normalize_target(target) if target else book.post_target
    if chosen is None:
        raise InputError("where to? give --to DIRECTORY or --to https://server", field="--to")
    workspace.set_post_target(name, chosen, force=force, check_only=True)
    files = workspace.release_files(name, book.version)
    if is_url(chosen):
        public = key_paths(workspace.path.parent).public
        if public.is_file():
            # The service registers the key with the book's first upload and checks every
            # later one against it (docs/pbs-protocol.md, "Publishing: the upload").
            files = {**files, PBA_KEY_MEMBER: public.read_bytes()}
        secret = token()
        if chosen.startswith("http://") and not is_loopback_url(chosen):
            warn("posting over plain HTTP: the token and the release travel unencrypted")
        answer = post_to_service(chosen, secret, book.name, book.version, files)
    else:
        answer = post_to_directory(Path(chosen), book.name, book.version, files)
    workspace.set_post_target(name, chosen, force=force)
    workspace.mark_posted(name, book.version)
    return Posted(book.name, book.version, chosen, answer)
