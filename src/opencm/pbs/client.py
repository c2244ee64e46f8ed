"""Ask a Phone Book Service for an update and verify what comes back.

:func:`fetch_update` sends Connection Manager's request ("How Connection Manager Works") and checks
the answer (opencm's format, ``docs/pbs-protocol.md``) before anyone uses it: the cab's minisign
signature must verify with the profile's key, and its *signed* trusted comment must name this book,
a kind of ``full`` or ``delta``, a version above the installed one (no rollback) and, for a delta, a
base equal to the installed version. The response headers are only hints; the signed comment
decides.

It never raises for network trouble and never takes longer than ``timeout`` seconds: the request
runs on a daemon thread that is abandoned (and finishes on its own timeouts) if it overruns.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx2
import minisign

from opencm import __version__
from opencm.errors import OpencmError, RefusedError
from opencm.signing import load_public_key, verify

PURPOSE = "opencm-phonebook"
ENDPOINT = "/pbserver/pbserver.dll"
#: Larger answers are refused while they download (a 65,000-POP book is a few MB compressed).
MAX_CAB_BYTES = 32 * 1024 * 1024

Status = Literal["none", "full", "delta", "refused", "failed"]


@dataclass(frozen=True)
class UpdateOutcome:
    """What the service said, after verification.

    ``status`` is ``none`` (current), ``full``/``delta`` (``cab`` holds verified bytes),
    ``refused`` (an answer came but failed verification) or ``failed`` (no usable answer:
    offline, timeout, server error, unknown book). ``reason`` says why in words.
    """

    status: Status
    book: str
    installed: int
    version: int | None = None
    base: int | None = None
    cab: bytes | None = None
    reason: str = ""

    @property
    def has_update(self) -> bool:
        return self.status in ("full", "delta") and self.cab is not None


def request_url(url: str, book: str, installed_version: int) -> str:
    """The GET URL for ``book``: ``url`` may be the server, or the full ``…/pbserver.dll``."""
    parts = urlsplit(url)
    path = parts.path
    if not path.lower().endswith(".dll"):
        path = path.rstrip("/") + ENDPOINT
    # osarch/ostype/osver/cmver/lcid are sent for compatibility; opencm's server ignores them.
    query = urlencode(
        {
            "osarch": 0,
            "ostype": 0,
            "osver": 0,
            "cmver": 1,
            "lcid": 1033,
            "pbver": installed_version,
            "pb": book,
        }
    )
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def fetch_update(
    url: str,
    book: str,
    installed_version: int,
    public_key: minisign.PublicKey | bytes | str,
    *,
    timeout: float = 5.0,
    transport: httpx2.BaseTransport | None = None,
) -> UpdateOutcome:
    """Ask ``url`` whether ``book`` at ``installed_version`` is current; verify any update."""
    try:
        key = (
            public_key
            if isinstance(public_key, minisign.PublicKey)
            else load_public_key(public_key.encode() if isinstance(public_key, str) else public_key)
        )
    except OpencmError as error:
        return UpdateOutcome("failed", book, installed_version, reason=f"bad public key: {error}")
    result: list[UpdateOutcome] = []
    worker = threading.Thread(
        target=lambda: result.append(_fetch(url, book, installed_version, key, timeout, transport)),
        name=f"pbs-fetch-{book}",
        daemon=True,
    )
    worker.start()
    worker.join(timeout + 0.25)
    if not result:
        return UpdateOutcome(
            "failed", book, installed_version, reason=f"no answer within {timeout:g} s"
        )
    return result[0]


def _fetch(
    url: str,
    book: str,
    installed: int,
    key: minisign.PublicKey,
    timeout: float,
    transport: httpx2.BaseTransport | None,
) -> UpdateOutcome:
    def failed(reason: str) -> UpdateOutcome:
        return UpdateOutcome("failed", book, installed, reason=reason)

    deadline = time.monotonic() + timeout
    try:
        with (
            # Redirects (http -> https, a moved service) are followed: what arrives is
            # verified by its signature, not trusted for where it came from.
            httpx2.Client(
                timeout=timeout,
                transport=transport,
                follow_redirects=True,
                max_redirects=3,
                headers={"User-Agent": f"opencm/{__version__}"},
            ) as client,
            client.stream("GET", request_url(url, book, installed)) as response,
        ):
            if response.status_code == 204:
                return UpdateOutcome("none", book, installed, reason="the phone book is current")
            if response.status_code != 200:
                response.read()
                text = response.text.strip().splitlines()[0][:200] if response.text else ""
                return failed(f"the server answered {response.status_code} {text}".strip())
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_CAB_BYTES:
                    return failed(f"the answer is larger than {MAX_CAB_BYTES} bytes")
                if time.monotonic() > deadline:
                    return failed(f"the download took longer than {timeout:g} s")
                chunks.append(chunk)
            cab = b"".join(chunks)
            signature_header = response.headers.get("x-opencm-pbs-signature")
    except httpx2.TimeoutException:
        return failed(f"no answer within {timeout:g} s")
    except httpx2.HTTPError as error:
        return failed(f"cannot reach the phone-book server: {error}")
    try:
        return _verified(book, installed, key, cab, signature_header)
    except RefusedError as error:
        return UpdateOutcome("refused", book, installed, reason=str(error))


def _verified(
    book: str, installed: int, key: minisign.PublicKey, cab: bytes, signature_header: str | None
) -> UpdateOutcome:
    if not signature_header:
        raise RefusedError("the update carries no signature")
    try:
        signature = base64.b64decode(signature_header, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RefusedError("the update's signature header is not base64") from error
    signed = verify(cab, signature, key, purpose=PURPOSE, what="phone-book update")
    signed_book = signed.get("book") or ""
    if signed_book.casefold() != book.casefold():
        raise RefusedError(f"the update is signed for book {signed_book!r}, not {book!r}")
    kind = signed.get("kind")
    version_text = signed.get("version") or ""
    if not version_text.isdigit():
        raise RefusedError(f"the update's signed version {version_text!r} is not a number")
    version = int(version_text)
    if version <= installed:
        raise RefusedError(
            f"the update is version {version}, not newer than the installed {installed}"
        )
    if kind == "full":
        return UpdateOutcome("full", book, installed, version, None, cab, f"full book {version}")
    if kind == "delta":
        base_text = signed.get("base") or ""
        if not base_text.isdigit() or int(base_text) != installed:
            raise RefusedError(
                f"the delta applies to version {base_text or '?'}, installed is {installed}"
            )
        reason = f"delta {installed} -> {version}"
        return UpdateOutcome("delta", book, installed, version, installed, cab, reason)
    raise RefusedError(f"the update is signed as kind {kind!r}, expected full or delta")
