"""Component profiles: a top-level profile takes phone books and settings from others.

"How Connection Manager Works" describes component profiles; this is opencm's merge.

Each component is a *built* service profile (a folder holding its ``.cmp``, or its ``.cms``).
What a top-level profile takes from each, in the order the spec lists them:

- its phone book (``.pbk``, with the ``.pbr`` region file and ``.ver`` version file beside it),
  copied into the top-level service folder and named in ``[opencm] PhoneBook&<SHORT>``;
- its VPN servers (``[opencm] VpnServerN``/``Address&``/``Link&``/``Config&``/``Connection&``)
  with their config files;
- its per-entry networking settings (``[Server&…]``, ``[TCP/IP&…]``, ``[Networking&…]``).

The top-level profile's own settings come first and win. Anything a later profile says
differently (same key, another value; a phone book or file of the same name) is a conflict:
reported, and the earlier value kept. ``[Merge Profiles]`` in the ``.inf`` lists the components.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from opencm.kit.spec import KitSpec
from opencm.profile.model import ServiceProfile, load_profile
from opencm.profile.rasbook import require_pop_book

_ENTRY_SECTIONS = ("server&", "tcp/ip&", "networking&")
_SERVER_INDEX = re.compile(r"VpnServer[0-9]+", re.IGNORECASE)
_SERVER_KEYS = ("Address", "Link", "Config", "Connection")
_K = TypeVar("_K")


@dataclass(frozen=True)
class MergeConflict:
    component: str
    message: str

    def __str__(self) -> str:
        return f"component {self.component}: {self.message}"


@dataclass
class MergeResult:
    component_names: list[str] = field(default_factory=list)
    #: Files for the top-level service folder, by name there.
    files: dict[str, Path] = field(default_factory=dict)
    #: Extra ``.cms`` sections and keys.
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    #: Extra ``[opencm]`` keys.
    opencm_keys: list[tuple[str, str]] = field(default_factory=list)
    conflicts: list[MergeConflict] = field(default_factory=list)


class _Merger:
    def __init__(self, spec: KitSpec, own_files: Mapping[str, Path]) -> None:
        self.spec = spec
        self.result = MergeResult()
        self.file_owner: dict[str, str] = {name.casefold(): spec.short_name for name in own_files}
        self.file_source: dict[str, Path] = {name.casefold(): p for name, p in own_files.items()}
        self.settings: dict[tuple[str, str], tuple[str, str]] = {}
        self.servers: dict[str, tuple[str, str]] = {
            s.name.casefold(): (s.address, spec.short_name) for s in spec.vpn
        }
        self.server_count = len(spec.vpn)

    def conflict(self, component: str, message: str) -> None:
        self.result.conflicts.append(MergeConflict(component, message))

    def claim(
        self,
        claims: dict[_K, tuple[str, str]],
        key: _K,
        value: str,
        component: str,
        differs: Callable[[str, str], str],
    ) -> bool:
        """The first component to give ``key`` keeps its value: True when ``component`` is the
        first (its value is recorded). A later, different value is a conflict that
        ``differs(kept value, its component)`` describes."""
        earlier = claims.get(key)
        if earlier is None:
            claims[key] = (value, component)
            return True
        if earlier[0] != value:
            self.conflict(component, differs(*earlier))
        return False

    def take_file(self, component: str, source: Path, what: str) -> str | None:
        name = source.name
        owner = self.file_owner.get(name.casefold())
        if owner is not None:
            if self.file_source[name.casefold()].read_bytes() != source.read_bytes():
                self.conflict(
                    component,
                    f"{what} {name} is also in {owner}, with other contents; keeping {owner}'s",
                )
                return None
            return name
        self.file_owner[name.casefold()] = component
        self.file_source[name.casefold()] = source
        self.result.files[name] = source
        return name

    def take_setting(self, component: str, section: str, key: str, value: str) -> None:
        slot = (section.casefold(), key.casefold())
        if not self.claim(
            self.settings,
            slot,
            value,
            component,
            lambda kept, owner: (
                f"[{section}] {key}={value!r} differs from {owner}'s {kept!r}; keeping {owner}'s"
            ),
        ):
            return
        for name, pairs in self.result.sections:
            if name.casefold() == section.casefold():
                pairs.append((key, value))
                return
        self.result.sections.append((section, [(key, value)]))

    def take_server(self, component: str, name: str, address: str) -> bool:
        """True when ``component`` is the first to name VPN server ``name`` (it is recorded)."""
        return self.claim(
            self.servers,
            name.casefold(),
            address,
            component,
            lambda kept, owner: (
                f"VPN server {name!r} has address {address!r}, {owner}'s has {kept!r}; "
                f"keeping {owner}'s"
            ),
        )

    def merge(self, profile: ServiceProfile) -> None:
        component = profile.short_name
        self.result.component_names.append(component)
        book = profile.phonebook_path()
        if book is not None and book.is_file():
            require_pop_book(book.read_bytes(), book, f"component {component}'s phone book")
            name = self.take_file(component, book, "phone book")
            if name is not None:
                self.result.opencm_keys.append(
                    (f"PhoneBook&{component}", f"{self.spec.short_name}\\{name}")
                )
                for suffix in (".pbr", ".ver"):
                    companion = book.with_suffix(suffix)
                    if companion.is_file():
                        self.take_file(component, companion, "phone-book file")
        for section in profile.cms.sections():
            if section.casefold().startswith(_ENTRY_SECTIONS):
                for entry in profile.cms.entries(section):
                    self.take_setting(component, section, entry.key, entry.raw_value)
        self.merge_servers(profile)

    def merge_servers(self, profile: ServiceProfile) -> None:
        component = profile.short_name
        names = [e.value for e in profile.cms.entries("opencm") if _SERVER_INDEX.fullmatch(e.key)]
        for name in names:
            address = profile.cms.get("opencm", f"Address&{name}") or ""
            if not self.take_server(component, name, address):
                continue
            keys = [(f"VpnServer{self.server_count}", name)]
            self.server_count += 1
            for kind in _SERVER_KEYS:
                value = profile.cms.get("opencm", f"{kind}&{name}")
                if value is None:
                    continue
                if kind == "Config" and value:
                    taken = self.take_file(component, profile.resolve(value), "VPN config")
                    if taken is None:
                        continue
                    value = f"{self.spec.short_name}\\{taken}"
                keys.append((f"{kind}&{name}", value))
            self.result.opencm_keys.extend(keys)


def merge_components(kit_dir: Path, spec: KitSpec, own_files: Mapping[str, Path]) -> MergeResult:
    """Merge the spec's component profiles; conflicts are in the result, never raised."""
    merger = _Merger(spec, own_files)
    for index, ref in enumerate(spec.components):
        path = Path(ref) if Path(ref).is_absolute() else kit_dir / ref
        profile = load_profile(path)
        if profile.short_name.casefold() == spec.short_name.casefold():
            from opencm.errors import InputError

            raise InputError(
                f"a profile cannot merge itself ({profile.short_name})",
                field=f"components[{index}]",
            )
        merger.merge(profile)
    return merger.result
