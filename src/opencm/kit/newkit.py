"""Creating a kit folder: the spec plus copies of every file it names.

``opencm kit new`` gathers answers (prompts, flags or a spec file) into a :class:`KitSpec` whose
file fields still hold paths on the administrator's machine; :func:`create_kit` copies those
files into the kit folder and rewrites the fields to kit-relative names, so the kit folder alone
is enough to build the profile again later (or on another machine)::

    KIT/kit.toml
    KIT/files/…          VPN configs, action programs, icons, help, additional files
    KIT/phonebook/…      <BOOK>.pbk, .pbr, .ver
    KIT/keys/…           the PBA public key
    KIT/components/<SHORT>/…   copies of merged component profiles
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from opencm.errors import InputError
from opencm.fsutil import atomic_write
from opencm.kit.spec import SPEC_NAME, KitSpec, load_spec, render_spec
from opencm.profile.model import load_profile
from opencm.profile.rasbook import require_pop_book


class _Importer:
    def __init__(self, kit: Path, base: Path) -> None:
        self.kit = kit
        self.base = base
        self.names: dict[str, Path] = {}

    def source(self, given: str) -> Path:
        path = Path(given).expanduser()
        return path if path.is_absolute() else self.base / path

    def file(self, given: str | None, folder: str, field: str) -> str | None:
        if not given:
            return None
        source = self.source(given)
        if not source.is_file():
            raise InputError(f"{given} is not a file", field=field)
        relative = f"{folder}/{source.name}"
        earlier = self.names.get(relative)
        if earlier is not None and earlier != source.resolve():
            raise InputError(f"two different files are named {source.name}", field=field)
        self.names[relative] = source.resolve()
        target = self.kit / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return relative


def create_kit(kit_dir: str | Path, spec: KitSpec, *, base: Path | None = None) -> Path:
    """Write ``kit_dir/kit.toml`` and copy the files ``spec`` names; returns the spec path.

    Relative paths in ``spec`` are read from ``base`` (the current folder, or the folder of the
    spec file given with ``--spec``).
    """
    final = Path(kit_dir)
    if (final / SPEC_NAME).exists():
        raise InputError("a kit already exists here; edit its kit.toml instead", path=final)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise InputError("expected a new or empty folder for the kit", path=final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Everything is assembled beside the target and renamed into place at the end, so a
    # mistake found halfway (a missing file, a bad field) leaves no half-made kit behind.
    kit = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        _fill_kit(kit, spec, base or Path.cwd())
        if final.exists():
            final.rmdir()
        os.rename(kit, final)
    except BaseException as error:
        shutil.rmtree(kit, ignore_errors=True)
        if isinstance(error, InputError) and error.path is not None:
            with contextlib.suppress(ValueError):  # name the kit, not the scratch folder
                error.path = final / Path(error.path).relative_to(kit)
        raise
    return final / SPEC_NAME


def _fill_kit(kit: Path, spec: KitSpec, base: Path) -> None:
    importer = _Importer(kit, base)
    for index, server in enumerate(spec.vpn):
        server.config = importer.file(server.config, "files", f"vpn[{index}].config")
    for index, action in enumerate(spec.actions):
        if action.include:
            action.program = (
                importer.file(action.program, "files", f"action[{index}].program") or ""
            )
    spec.icon = importer.file(spec.icon, "files", "files.icon")
    spec.small_icon = importer.file(spec.small_icon, "files", "files.small_icon")
    spec.tray_icon = importer.file(spec.tray_icon, "files", "files.tray_icon")
    spec.help_file = importer.file(spec.help_file, "files", "files.help")
    spec.additional_files = [
        importer.file(extra, "files", f"files.additional[{i}]") or ""
        for i, extra in enumerate(spec.additional_files)
    ]
    book = spec.phonebook
    if book is not None:
        book.public_key = importer.file(book.public_key, "keys", "phonebook.public_key")
        if book.dir:
            source = importer.source(book.dir)
            if not (source / f"{book.name}.pbk").is_file():
                raise InputError(f"no {book.name}.pbk in {source}", field="phonebook.dir")
            pbk_data = (source / f"{book.name}.pbk").read_bytes()
            require_pop_book(pbk_data, source / f"{book.name}.pbk", "the kit's phone book")
            for suffix in (".pbk", ".pbr", ".ver"):
                candidate = source / f"{book.name}{suffix}"
                if candidate.is_file():
                    importer.file(str(candidate), "phonebook", "phonebook.dir")
            book.dir = "phonebook"
    components: list[str] = []
    for given in spec.components:
        component = load_profile(importer.source(given))
        book_path = component.phonebook_path()
        if book_path is not None and book_path.is_file():
            what = f"`kit new --component` ({component.short_name}'s [ISP] PBFile)"
            require_pop_book(book_path.read_bytes(), book_path, what)
        target = kit / "components" / component.short_name
        if target.exists():
            raise InputError(f"component {component.short_name} is named twice", field="components")
        target.mkdir(parents=True)
        # Only this profile's files: its .cmp and its service folder.
        if component.cmp_path is not None:
            shutil.copy2(component.cmp_path, target / component.cmp_path.name)
        shutil.copytree(component.service_dir, target / component.service_dir.name, symlinks=False)
        components.append(f"components/{component.short_name}")
    spec.components = components
    spec_path = kit / SPEC_NAME
    atomic_write(spec_path, render_spec(spec).encode("utf-8"))
    load_spec(spec_path)  # what was written must read back, with every field checked
