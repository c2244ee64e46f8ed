"""The signed, self-installing profile package (``<SHORT>.cmpkg.pyz``): opencm's own format.

CMAK ships a profile as a self-extracting executable; opencm ships a Python zipapp. Running it
(``python3 CONTOSO.cmpkg.pyz`` or ``./CONTOSO.cmpkg.pyz``) hands the file to ``opencm install``;
the same file is a plain zip, so ``opencm install CONTOSO.cmpkg.pyz`` works too. Layout::

    __main__.py                      stdlib-only stub: hands over to ``opencm install``
    opencm-package.json              the manifest: names, version, every file with its sha256
    opencm-package.json.minisig      minisign signature over the manifest's exact bytes
    profile/<SHORT>.cmp              the profile, laid out as installed
    profile/<SHORT>/…
    wheel/opencm-….whl               only with ``--with-wheel``

The signature's trusted comment is ``opencm-profile short=<SHORT> version=<N>``; the manifest
lists the hash of every other member, so one signature covers the whole package. Verification
happens before anything is written and refuses: a missing or foreign signature, a manifest that
does not match its signature, a member whose hash differs, a member the manifest does not list,
and any name that is absolute, climbs with ``..``, uses ``\\`` or is a symlink.
``docs/profile-package.md`` describes the format and the trust model.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import minisign

from opencm.errors import InputError, RefusedError
from opencm.fsutil import atomic_write
from opencm.kit.spec import check_short_name
from opencm.secrecy import SECRET_EXECUTABLE_MODE, file_mode, is_secret, looks_secret
from opencm.signing import sign, verify

PURPOSE = "opencm-profile"
FORMAT = "opencm-profile-package"
FORMAT_VERSION = 1
MANIFEST = "opencm-package.json"
SIGNATURE = MANIFEST + ".minisig"
PROFILE_PREFIX = "profile/"
WHEEL_PREFIX = "wheel/"
STUB = "__main__.py"
#: The line in front of the zip that lets ``./X.cmpkg.pyz`` run as a program.
SHEBANG = b"#!/usr/bin/env python3\n"
#: Bounds that keep a hostile zip (a "zip bomb") from exhausting memory before it is refused.
MAX_MEMBERS = 10_000
MAX_TOTAL_SIZE = 512 * 1024 * 1024
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
#: Fixed timestamp: the same profile and key give the same package bytes, minus the signature.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

STUB_SOURCE = '''\
"""opencm profile package: run me to install the service profile inside.

I only hand this file over to opencm (``opencm install``), which checks my signature before it
installs anything. Options are passed on: --user, --all-users, --trust KEY, --force.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = os.path.abspath(os.path.dirname(__file__))


def _carried_wheel():
    with zipfile.ZipFile(PACKAGE) as archive:
        names = [n for n in archive.namelist() if n.startswith("wheel/") and n.endswith(".whl")]
        return names[0] if names else None


def main():
    args = sys.argv[1:]
    if "--install-opencm" in args:
        args.remove("--install-opencm")
        wheel = _carried_wheel()
        if wheel is None:
            sys.exit("This package does not carry opencm; install it with: pip install opencm")
        folder = tempfile.mkdtemp(prefix="opencm-wheel-")
        with zipfile.ZipFile(PACKAGE) as archive:
            target = os.path.join(folder, os.path.basename(wheel))
            with open(target, "wb") as handle:
                handle.write(archive.read(wheel))
        print("Installing opencm from " + os.path.basename(wheel) + " (pip install --user) ...")
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--user", target])
        shutil.rmtree(folder, ignore_errors=True)
        if code != 0:
            sys.exit("pip could not install opencm (exit status %d)" % code)
    program = shutil.which("opencm")
    if program:
        os.execv(program, [program, "install", PACKAGE, *args])
    try:
        import opencm  # noqa: F401  (installed for this Python, but not on PATH)
    except ImportError:
        pass
    else:
        os.execv(sys.executable, [sys.executable, "-m", "opencm", "install", PACKAGE, *args])
    message = "This is an opencm service-profile package, but opencm is not installed here.\\n"
    if _carried_wheel():
        message += "Install the copy it carries with: python3 %s --install-opencm\\n" % PACKAGE
    else:
        message += "Install opencm (pip install opencm), then run this file again.\\n"
    sys.stderr.write(message)
    sys.exit(2)


main()
'''


@dataclass(frozen=True)
class ManifestFile:
    path: str
    sha256: str
    size: int
    executable: bool
    #: Key material (``opencm.secrecy``): packed, and installed, readable by its owner only.
    private: bool = False


@dataclass(frozen=True)
class Manifest:
    short_name: str
    service_name: str
    version: int
    files: tuple[ManifestFile, ...]
    wheel: ManifestFile | None = None
    #: sha256 of the bytes that run when the package is executed: the shebang line in front of
    #: the zip and ``__main__.py``. Signed with the rest, checked by every verification.
    launcher_sha256: str = ""

    def to_bytes(self) -> bytes:
        def entry(f: ManifestFile) -> dict[str, object]:
            item: dict[str, object] = {
                "path": f.path,
                "sha256": f.sha256,
                "size": f.size,
                "executable": f.executable,
            }
            if f.private:
                item["private"] = True
            return item

        data = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "short_name": self.short_name,
            "service_name": self.service_name,
            "version": self.version,
            "files": [entry(f) for f in self.files],
            "wheel": entry(self.wheel) if self.wheel else None,
            "launcher_sha256": self.launcher_sha256,
        }
        return (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def launcher_digest(prefix: bytes, stub: bytes) -> str:
    """The hash that vouches for what runs when the package is executed."""
    return _digest(len(prefix).to_bytes(4, "big") + prefix + stub)


def check_member_name(name: str, where: str | Path) -> PurePosixPath:
    """Refuse names that could land outside the target folder."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\0" in name
        or path.is_absolute()
        or ".." in path.parts
        or (len(name) > 1 and name[1] == ":")
    ):
        raise RefusedError(f"unsafe file name in package: {name!r}", path=where)
    return path


def _check_profile_path(path: str, short: str, where: str | Path) -> None:
    """Every profile file is ``<SHORT>.cmp`` or inside ``<SHORT>/`` (the layout of "How Connection
    Manager Works")."""
    parts = check_member_name(path, where).parts
    if parts == (f"{short}.cmp",) or (len(parts) >= 2 and parts[0] == short):
        return
    raise RefusedError(f"file {path!r} is outside the profile {short}", path=where)


def build_package(
    profile_root: Path,
    *,
    short_name: str,
    service_name: str,
    version: int,
    secret_key: minisign.SecretKey,
    out: Path,
    wheel: Path | None = None,
) -> Manifest:
    """Pack a built profile (``DIR/build/<SHORT>``) into a signed package at ``out``."""
    entries: list[tuple[ManifestFile, bytes]] = []
    for path in sorted(profile_root.rglob("*")):
        relative = path.relative_to(profile_root).as_posix()
        if path.is_symlink():
            raise InputError("symlinks cannot go into a package", path=path)
        if not path.is_file():
            continue
        _check_profile_path(relative, short_name, profile_root)
        data = path.read_bytes()
        source_mode = path.stat().st_mode
        executable = bool(source_mode & 0o111)
        private = is_secret(path.name, data, source_mode)
        entries.append(
            (ManifestFile(relative, _digest(data), len(data), executable, private), data)
        )
    if not any(f.path == f"{short_name}.cmp" for f, _ in entries):
        raise InputError(f"no {short_name}.cmp here: build the kit first", path=profile_root)
    wheel_entry: tuple[ManifestFile, bytes] | None = None
    if wheel is not None:
        data = wheel.read_bytes()
        wheel_entry = (ManifestFile(wheel.name, _digest(data), len(data), False), data)
    manifest = Manifest(
        short_name,
        service_name,
        version,
        tuple(f for f, _ in entries),
        wheel_entry[0] if wheel_entry else None,
        launcher_digest(SHEBANG, STUB_SOURCE.encode("utf-8")),
    )
    manifest_bytes = manifest.to_bytes()
    signature = sign(manifest_bytes, secret_key, PURPOSE, {"short": short_name, "version": version})

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:

        def put(name: str, data: bytes, executable: bool = False, private: bool = False) -> None:
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = file_mode(executable=executable, secret=private)
            info.external_attr = (mode | stat.S_IFREG) << 16
            archive.writestr(info, data)

        put(STUB, STUB_SOURCE.encode("utf-8"))
        put(MANIFEST, manifest_bytes)
        put(SIGNATURE, signature)
        for entry, data in entries:
            put(PROFILE_PREFIX + entry.path, data, entry.executable, entry.private)
        if wheel_entry is not None:
            put(WHEEL_PREFIX + wheel_entry[0].path, wheel_entry[1])
    # A zipapp is a zip with a shebang line in front; zip readers find the directory at the end.
    # A package that carries key material is itself a secret of the administrator's until it
    # is handed out: readable (and runnable) by its owner only.
    carries_secrets = any(entry.private for entry, _ in entries)
    atomic_write(
        out,
        SHEBANG + buffer.getvalue(),
        mode=SECRET_EXECUTABLE_MODE if carries_secrets else 0o755,
    )
    return manifest


@dataclass(frozen=True)
class VerifiedPackage:
    """A package whose signature and every hash checked out; its files are in memory."""

    manifest: Manifest
    #: Profile files by their path in the installed layout (``CONTOSO.cmp``, ``CONTOSO/…``).
    files: dict[str, bytes]
    #: The trusted public key (base64, as in a ``.pub`` file) that signed it.
    signer: str

    @property
    def short_name(self) -> str:
        return self.manifest.short_name

    def is_executable(self, path: str) -> bool:
        return any(f.path == path and f.executable for f in self.manifest.files)

    def is_private(self, path: str) -> bool:
        """Key material: marked so in the signed manifest, or recognised by its content."""
        marked = any(f.path == path and f.private for f in self.manifest.files)
        return marked or looks_secret(PurePosixPath(path).name, self.files.get(path, b""))


def _parse_manifest(data: bytes, where: str | Path) -> Manifest:
    def bad(message: str) -> RefusedError:
        return RefusedError(f"manifest: {message}", path=where)

    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise bad(f"not JSON ({error})") from error
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise bad(f"not an {FORMAT} manifest")
    if raw.get("format_version") != FORMAT_VERSION:
        raise bad(f"format_version {raw.get('format_version')!r} is not {FORMAT_VERSION}")

    def file_entry(item: object) -> ManifestFile:
        if not isinstance(item, dict):
            raise bad(f"file entry {item!r} is not an object")
        path, digest, size = item.get("path"), item.get("sha256"), item.get("size")
        if not isinstance(path, str) or not isinstance(digest, str) or not isinstance(size, int):
            raise bad(f"file entry {item!r} needs path, sha256 and size")
        return ManifestFile(
            path, digest, size, item.get("executable") is True, item.get("private") is True
        )

    short, name, version = raw.get("short_name"), raw.get("service_name"), raw.get("version")
    if not isinstance(short, str) or not isinstance(name, str):
        raise bad("short_name and service_name must be strings")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"version {version!r} is not a positive integer")
    try:
        check_short_name(short)
    except InputError as error:
        raise bad(error.message) from error
    files = raw.get("files")
    if not isinstance(files, list):
        raise bad("files must be a list")
    wheel = raw.get("wheel")
    launcher = raw.get("launcher_sha256")
    if not isinstance(launcher, str) or len(launcher) != 64:
        raise bad(
            "no launcher_sha256: the package's launcher is not signed (built by an opencm"
            " before 0.2: rebuild it)"
        )
    return Manifest(
        short,
        name,
        version,
        tuple(file_entry(item) for item in files),
        file_entry(wheel) if wheel is not None else None,
        launcher,
    )


_IMPORT_HINT = "not a package: use `opencm import` to turn it into a kit, then `opencm kit build`"


def check_is_package(where: Path) -> None:
    """Refuse, before any trust check, what is plainly a profile and not a package: a folder, a
    Windows ``.cmp``/``.cms``, a cabinet, an ``.exe``, a VPN config."""
    if where.is_dir():
        raise InputError(f"a folder is {_IMPORT_HINT}", path=where)
    if not where.is_file():
        return  # reading says "no such package"
    with where.open("rb") as handle:
        head = handle.read(64)
    if head.startswith((b"MSCF", b"MZ")) or where.suffix.casefold() in (
        ".cmp", ".cms", ".inf", ".pbk", ".ovpn", ".conf", ".cab", ".exe",
    ):  # fmt: skip
        raise InputError(f"a {where.suffix or 'file'} is {_IMPORT_HINT}", path=where)


def read_package(path: str | Path, trusted_keys: Sequence[minisign.PublicKey]) -> VerifiedPackage:
    """Open and verify a package; raises RefusedError (nothing is written either way)."""
    where = Path(path)
    check_is_package(where)
    if not trusted_keys:
        raise RefusedError(
            "no trusted key to check the package with: pass --trust KEY.pub or add the "
            "administrator's key to a trusted-keys folder (see docs/profile-package.md)",
            path=where,
        )
    try:
        archive = zipfile.ZipFile(where)
    except FileNotFoundError as error:
        raise InputError("no such package", path=where) from error
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as error:
        raise InputError(f"not an opencm package (not a zip: {error})", path=where) from error
    with archive:
        members: dict[str, zipfile.ZipInfo] = {}
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS or sum(i.file_size for i in infos) > MAX_TOTAL_SIZE:
            raise RefusedError(
                f"the package is too large (over {MAX_MEMBERS} files or "
                f"{MAX_TOTAL_SIZE // 2**20} MiB unpacked)",
                path=where,
            )
        for info in infos:
            check_member_name(info.filename, where)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise RefusedError(f"symlink in package: {info.filename!r}", path=where)
            if info.filename in members:
                raise RefusedError(f"{info.filename!r} appears twice in the package", path=where)
            members[info.filename] = info
        if MANIFEST not in members:
            raise InputError(
                f"not an opencm package (no {MANIFEST}); if it is Azure's"
                f" VpnClientConfiguration.zip: {_IMPORT_HINT}",
                path=where,
            )
        if SIGNATURE not in members:
            raise RefusedError("the package is not signed: refusing to install it", path=where)

        def read(name: str) -> bytes:
            try:
                return archive.read(members[name])
            except (
                zipfile.BadZipFile,
                zlib.error,
                OSError,
                ValueError,
                EOFError,
                NotImplementedError,
            ) as error:
                raise RefusedError(f"{name}: damaged member ({error})", path=where) from error

        if members[MANIFEST].file_size > MAX_MANIFEST_SIZE:
            raise RefusedError("the manifest is implausibly large", path=where)
        manifest_bytes = read(MANIFEST)
        signature = read(SIGNATURE)
        signed = None
        signer = ""
        failure: RefusedError | None = None
        for key in trusted_keys:
            try:
                signed = verify(manifest_bytes, signature, key, purpose=PURPOSE, what=str(where))
                signer = bytes(key.to_base64()).decode("ascii")
                break
            except RefusedError as error:
                failure = error
        if signed is None:
            assert failure is not None
            raise RefusedError(
                f"signature check failed against {len(trusted_keys)} trusted key(s): "
                f"{failure.message}",
                path=where,
            )
        manifest = _parse_manifest(manifest_bytes, where)
        if signed.get("short") != manifest.short_name or signed.get("version") != str(
            manifest.version
        ):
            raise RefusedError(
                f"signature vouches for short={signed.get('short')} "
                f"version={signed.get('version')}, the manifest says "
                f"short={manifest.short_name} version={manifest.version}",
                path=where,
            )
        expected = {PROFILE_PREFIX + f.path: f for f in manifest.files}
        if manifest.wheel is not None:
            expected[WHEEL_PREFIX + manifest.wheel.path] = manifest.wheel
        _check_launcher(where, infos, read(STUB) if STUB in members else b"", manifest)
        unlisted = sorted(set(members) - set(expected) - {STUB, MANIFEST, SIGNATURE})
        if unlisted:
            raise RefusedError(f"{unlisted[0]!r} is not in the signed manifest", path=where)
        files: dict[str, bytes] = {}
        for name, entry in expected.items():
            if name not in members:
                raise RefusedError(f"{name!r} is in the manifest but missing", path=where)
            data = read(name)
            if len(data) != entry.size or _digest(data) != entry.sha256:
                raise RefusedError(f"{name!r} does not match its signed hash", path=where)
            if name.startswith(PROFILE_PREFIX):
                _check_profile_path(entry.path, manifest.short_name, where)
                files[entry.path] = data
        if f"{manifest.short_name}.cmp" not in files:
            raise RefusedError(f"the package has no {manifest.short_name}.cmp", path=where)
        return VerifiedPackage(manifest, files, signer)


def _check_launcher(
    where: Path, infos: Sequence[zipfile.ZipInfo], stub: bytes, manifest: Manifest
) -> None:
    """Refuse a package whose launcher (the bytes before the zip and ``__main__.py``) is not
    the one its signature vouches for: those bytes are what runs when the file is executed."""
    start = min((info.header_offset for info in infos), default=0)
    try:
        with where.open("rb") as handle:
            # Bounded: a prefix longer than the signed line cannot match it anyway.
            prefix = handle.read(min(start, len(SHEBANG) + 1))
    except OSError as error:
        raise InputError(f"cannot read the package: {error.strerror}", path=where) from error
    if launcher_digest(prefix, stub) != manifest.launcher_sha256:
        raise RefusedError(
            "the package's launcher (its first line or __main__.py) is not the signed one:"
            " refusing it",
            path=where,
        )
