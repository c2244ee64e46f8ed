"""A kit being written by an import: the spec and the files it names, then written at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from opencm.errors import InputError
from opencm.fsutil import atomic_write
from opencm.kit.spec import SPEC_NAME, KitSpec, load_spec, render_spec
from opencm.secrecy import SECRET_MODE, looks_secret

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, default: str = "file") -> str:
    """A file name for the kit: the last component only, no separators or odd characters."""
    last = re.split(r"[\\/]", name)[-1]
    cleaned = _SAFE.sub("_", last).strip("._") or default
    return cleaned[:100]


@dataclass
class KitDraft:
    spec: KitSpec
    #: Kit-relative path → content.
    files: dict[str, bytes] = field(default_factory=dict)

    def add_file(self, name: str, data: bytes, folder: str = "files") -> str:
        """Add a file under ``folder`` with a safe, unique name; returns its kit path."""
        base = safe_name(name)
        stem, dot, suffix = base.partition(".")
        candidate = f"{folder}/{base}"
        counter = 2
        while candidate in self.files and self.files[candidate] != data:
            candidate = f"{folder}/{stem}-{counter}{dot}{suffix}"
            counter += 1
        self.files[candidate] = data
        return candidate

    def write(self, out: Path) -> None:
        """Write the kit folder; refuses to write into a folder that already has content."""
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError("the kit folder exists and is not empty: choose another --out",
                             path=out)  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        for relative, data in sorted(self.files.items()):
            pure = PurePosixPath(relative)
            if pure.is_absolute() or ".." in pure.parts:
                raise InputError(f"refusing to write {relative!r} outside the kit", path=out)
            target = out / pure
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data, mode=SECRET_MODE if looks_secret(pure.name, data) else 0o644)
        atomic_write(out / SPEC_NAME, render_spec(self.spec).encode("utf-8"))
        load_spec(out / SPEC_NAME)  # what was written must read back


__all__ = ["KitDraft", "safe_name"]
