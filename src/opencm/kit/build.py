"""``opencm kit build``: turn a kit folder into a service profile, the way CMAK builds one.

The result is laid out exactly as the profile is installed ("How Connection Manager Works"), so it
can be tried in place (``opencm connect DIR/build/<SHORT>/<SHORT>.cmp``) and packaged as it is::

    DIR/build/<SHORT>/<SHORT>.cmp          [Connection Manager] CMSFile=<SHORT>\\<SHORT>.cms
    DIR/build/<SHORT>/<SHORT>/<SHORT>.cms  the service file, in CMAK's shape
    DIR/build/<SHORT>/<SHORT>/<SHORT>.inf  the install manifest, in CMAK's .inf shape
    DIR/build/<SHORT>/<SHORT>/…            phone book, action programs, icons, help, extra files

A rebuild edits the existing ``.cms``/``.cmp``/``.inf`` in place (see :mod:`.reconcile`), so hand
edits survive; ``DIR/build/.state-<SHORT>.json`` remembers what the previous build wrote.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath

from opencm.actions.api import ActionPoint
from opencm.errors import InputError
from opencm.fsutil import atomic_write
from opencm.kit.merge import MergeResult, merge_components
from opencm.kit.reconcile import Conflict, Desired, previous_from_rows, reconcile
from opencm.kit.spec import ASK, Action, Dialup, KitSpec, load_spec
from opencm.profile.ini import IniFile
from opencm.secrecy import file_mode, is_secret

#: The [ISP] POP filters every real .cms carries (cm-formats §1.6).
ISP_FILTERS: tuple[tuple[str, str, str], ...] = (
    ("SignOn", "0x0001", "0x0000"),
    ("SignUp", "0x0002", "0x0002"),
    ("Modem", "0x0004", "0x0000"),
    ("ISDN", "0x0008", "0x0000"),
    ("Custom1", "0x0010", "0x0010"),
    ("Custom2", "0x0080", "0x0080"),
    ("MultiCast", "0x0020", "0x0000"),
    ("Surcharge", "0x0040", "0x0040"),
    ("MultiCastModem", "0x0024", "0x0000"),
    ("MultiCastISDN", "0x0028", "0x0000"),
    ("NosurchargeSignon", "0x0041", "0x0000"),
    ("SurchargeSignon", "0x0041", "0x0040"),
)
SERVICE_TYPES = (
    ("Modem", "Modem"),
    ("ISDN", "ISDN"),
    ("Modem MultiCast", "MultiCastModem"),
    ("ISDN MultiCast", "MultiCastISDN"),
)
#: Sections CMAK writes even when empty, besides the nine action sections.
EMPTY_SECTIONS = ("Animated Logo", "Animation Actions", "Menu Options")
OPENCM = "opencm"
CM = "Connection Manager"


@dataclass
class BuildResult:
    short_name: str
    #: The profile root: ``DIR/build/<SHORT>``.
    root: Path
    cmp_path: Path
    cms_path: Path
    #: Every file of the profile, relative to ``root``, sorted.
    files: list[str]
    conflicts: list[Conflict] = field(default_factory=list)
    merge: MergeResult | None = None

    @property
    def kept_hand_edits(self) -> list[Conflict]:
        return [c for c in self.conflicts if not c.overwritten]


def _quote_program(program: str) -> str:
    return f'"{program}"' if " " in program else program


def _program_name(action: Action) -> str:
    return PureWindowsPath(action.program).name or action.program


def action_line(spec: KitSpec, program: str, parameters: str, include: bool) -> str:
    """``N=`` text: ``program params``; a library takes its entry point after a comma."""
    path = f"{spec.short_name}\\{Path(program).name}" if include else program
    quoted = _quote_program(path)
    if path.casefold().endswith((".dll", ".so")):
        return f"{quoted},{parameters}".rstrip(",")
    return f"{quoted} {parameters}".strip()


class _Files:
    """The files copied into the service folder, by their name there; names must not clash."""

    def __init__(self, kit_dir: Path) -> None:
        self.kit_dir = kit_dir
        self.sources: dict[str, Path] = {}

    def add(self, relative: str, field_name: str) -> str:
        source = self.kit_dir / relative
        if not source.is_file():
            raise InputError(
                f"{relative} does not exist in the kit folder", path=self.kit_dir, field=field_name
            )
        name = source.name
        folded = {key.casefold(): key for key in self.sources}
        if name.casefold() in folded and self.sources[folded[name.casefold()]] != source:
            raise InputError(
                f"two files would be named {name} in the profile folder", field=field_name
            )
        self.sources[name] = source
        return name


def desired_cms(spec: KitSpec, files: _Files) -> Desired:
    short = spec.short_name
    cms = Desired()
    cms.section("Profile Format", ("Version", "5"))
    cm = [
        ("RedialCount", str(spec.redial_count)),
        ("RedialDelay", str(spec.redial_delay)),
        ("ServiceName", spec.service_name),
        ("DUN", spec.dun_name),
        ("Dialup", "1" if spec.dials else "0"),
        ("Direct", "1" if "direct" in spec.connection_types else "0"),
        ("ConnectionType", "1" if spec.connection_types[0] == "direct" else "0"),
        ("Tunnel", "1" if spec.tunnels else "0"),
        ("TunnelAddress", spec.vpn[0].address if spec.vpn else ""),
        ("TunnelDUN", spec.tunnel_dun_name if spec.tunnels else ""),
        ("AutoReconnect", "1" if spec.auto_reconnect else "0"),
        ("UserNamePrefix", spec.user_prefix),
        ("UserNameSuffix", spec.user_suffix),
    ]
    if "double" in spec.connection_types:
        same = spec.dialup is not None and spec.dialup.credentials == "same"
        cm.append(("UseSameUserName", "1" if same else "0"))
    for key, value, field_name in (
        ("Icon", spec.icon, "files.icon"),
        ("SmallIcon", spec.small_icon, "files.small_icon"),
        ("TrayIcon", spec.tray_icon, "files.tray_icon"),
        ("Logo", spec.logo, "files.logo"),
        ("HelpFile", spec.help_file, "files.help"),
    ):
        cm.append((key, f"{short}\\{files.add(value, field_name)}" if value else ""))
    cms.section(CM, *cm)

    book = spec.phonebook
    isp = [
        ("PBFile", f"{short}\\{book.name}.pbk" if book else ""),
        ("RegionFile", f"{short}\\{book.name}.pbr" if book else ""),
    ]
    for name, mask, match in ISP_FILTERS:
        isp += [(f"Mask&{name}", mask), (f"Match&{name}", match)]
    isp += [("FilterA&", "NosurchargeSignon"), ("FilterB&", "SurchargeSignon")]
    cms.section("ISP", *isp)
    cms.section("Service Types", *SERVICE_TYPES)
    cms.section(EMPTY_SECTIONS[0])
    cms.section(EMPTY_SECTIONS[1])
    for point in ActionPoint:
        pairs: list[tuple[str, str]] = []
        for index, action in enumerate(a for a in spec.actions if a.point is point):
            if action.include:
                files.add(action.program, f"action program {action.program}")
            line = action_line(spec, action.program, action.parameters, action.include)
            pairs.append((str(index), line))
            # Custom actions keys: "the default key does not appear in the .cms file", and
            # the description defaults to the name of the program.
            if action.flags:
                pairs.append((f"{index}&Flags", str(action.flags)))
            pairs.append((f"{index}&Description", action.description or _program_name(action)))
            if action.wait is not None:
                pairs.append((f"{index}&Wait", str(action.wait)))
        cms.section(point.section, *pairs)
    cms.section(EMPTY_SECTIONS[2])

    ours = [("ProfileVersion", str(spec.version))]
    if spec.ask_password:
        ours.append(("Credentials", "password"))
    if book is not None:
        ours.append(("PhoneBookURL", book.pbs_url))
        ours.append(("PhoneBookKey", _public_key_line(files.kit_dir, book.public_key)))
    for index, server in enumerate(spec.vpn):
        ours.append((f"VpnServer{index}", server.name))
        ours.append((f"Address&{server.name}", server.address))
        ours.append((f"Link&{server.name}", server.link))
        if server.config:
            name = files.add(server.config, f"vpn[{index}].config")
            ours.append((f"Config&{server.name}", f"{short}\\{name}"))
        if server.connection:
            ours.append((f"Connection&{server.name}", server.connection))
    if spec.dials:
        ours += _modem_keys(spec.dialup or Dialup())
    cms.section(OPENCM, *ours)
    return cms


def _modem_keys(dialup: Dialup) -> list[tuple[str, str]]:
    """The dial-up entry in ``[opencm]`` (opencm.session.config reads it); ``ask`` leaves a
    value to each user's ``.cmp``."""
    keys = [
        ("ModemDevice", dialup.device),
        ("ModemBaud", str(dialup.speed) if dialup.speed is not None else ASK),
        ("ModemInit", dialup.init),
        ("ModemCarrier", dialup.carrier),
    ]
    if dialup.local_ip:
        keys.append(("ModemLocalIP", dialup.local_ip))
    if dialup.peer_ip:
        keys.append(("ModemPeerIP", dialup.peer_ip))
    if dialup.login != "none":
        keys.append(("ModemLogin", dialup.login))
    if dialup.numbers:
        keys.append(("DialNumbers", dialup.numbers))
    return keys


def _public_key_line(kit_dir: Path, relative: str | None) -> str:
    """The base64 line of a minisign public key file (what ``signing.load_public_key`` reads)."""
    if not relative:
        return ""
    path = kit_dir / relative
    try:
        lines = [ln.strip() for ln in path.read_text("ascii").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read the PBA public key ({error})", path=path) from error
    keyline = next((ln for ln in lines if not ln.startswith("untrusted comment:")), "")
    from opencm.signing import load_public_key

    load_public_key(keyline.encode())  # raises InputError naming the problem
    return keyline


def desired_cmp(spec: KitSpec) -> Desired:
    cmp = Desired()
    cmp.section("Profile Format", ("Version", "5"))
    cmp.section(CM, ("CMSFile", f"{spec.short_name}\\{spec.short_name}.cms"))
    rules = spec.dialing
    if rules is not None:
        # "How Connection Manager Works": the .cmp's values are the user's first-time values; users
        # change them.
        pairs = [
            ("DialCountry", str(rules.country) if rules.country is not None else ""),
            ("DialAreaCode", rules.area_code),
            ("OutsideLine", rules.outside_line),
            ("DialMode", rules.dial_mode),
            ("CallingCard", rules.calling_card),
        ]
        cmp.section(OPENCM, *[(key, value) for key, value in pairs if value])
    return cmp


def desired_inf(spec: KitSpec, service_files: list[str], merged: list[str]) -> Desired:
    short = spec.short_name
    inf = Desired()
    inf.section("version", ("Signature", "$chicago$"), ("AdvancedINF", "2.5"))
    inf.section(
        "Strings",
        ("ServiceName", f'"{spec.service_name}"'),
        ("ShortSvcName", f'"{short}"'),
    )
    inf.section(
        "CMAK Status",
        ("InfVersion", "5"),
        ("UpdatePhonebook", "1" if spec.phonebook and spec.phonebook.pbs_url else "0"),
        ("IncludeCMCode", "0"),
        ("PhoneName", spec.phonebook.name if spec.phonebook else ""),
    )
    inf.section(
        "DestinationDirs",
        ("Xnstall.CopyFiles", "49001,%ShortSvcName%"),
        ("Xnstall.CopyFiles.ICM", "49001"),
    )
    listed = [f"{name},,,4" if name == f"{short}.cms" else name for name in service_files]
    inf.list_section("Xnstall.CopyFiles", listed)
    inf.list_section("Xnstall.CopyFiles.ICM", [f"{short}.cmp"])
    inf.section("SourceDisksNames", ("55", ", , 0"))
    inf.section("SourceDisksFiles", *[(name, "55") for name in [f"{short}.cmp", *service_files]])
    inf.section(
        "Extra Files", *[(str(i), Path(f).name) for i, f in enumerate(spec.additional_files)]
    )
    inf.section("Merge Profiles", *[(str(i), name) for i, name in enumerate(merged)])
    return inf


def _state_path(build_dir: Path, short: str) -> Path:
    return build_dir / f".state-{short}.json"


def build_kit(kit_dir: str | Path, *, overwrite: bool = False) -> BuildResult:
    """Build the service profile of the kit in ``kit_dir`` into ``kit_dir/build/<SHORT>``."""
    kit = Path(kit_dir)
    spec = load_spec(kit)
    short = spec.short_name
    build_dir = kit / "build"
    root = build_dir / short
    service_dir = root / short
    state_file = _state_path(build_dir, short)
    state: dict[str, object] = {}
    if state_file.is_file():
        try:
            loaded = json.loads(state_file.read_text("utf-8"))
            state = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            state = {}

    files = _Files(kit)
    book = spec.phonebook
    if book is not None and book.dir:
        book_dir = kit / book.dir
        pbk = f"{book.dir}/{book.name}.pbk"
        if not (kit / pbk).is_file():
            raise InputError(
                f"the phone book folder has no {book.name}.pbk", path=book_dir, field="phonebook"
            )
        for suffix in (".pbk", ".pbr", ".ver"):
            if (book_dir / f"{book.name}{suffix}").is_file():
                files.add(f"{book.dir}/{book.name}{suffix}", "phonebook.dir")
    for index, extra in enumerate(spec.additional_files):
        files.add(extra, f"files.additional[{index}]")

    cms_desired = desired_cms(spec, files)
    merge = merge_components(kit, spec, files.sources) if spec.components else None
    if merge is not None:
        for key, value in merge.opencm_keys:
            cms_desired.add(OPENCM, key, value)
        for section, pairs in merge.sections:
            for key, value in pairs:
                cms_desired.add(section, key, value)

    # Copy the files first: the .inf lists what is really there.
    service_dir.mkdir(parents=True, exist_ok=True)
    previous_copies = state.get("copied", [])
    copied_before = set(previous_copies) if isinstance(previous_copies, list) else set()
    sources = dict(files.sources)
    if merge is not None:
        sources.update(merge.files)
    for name in sorted(copied_before - set(sources)):
        stale = service_dir / str(name)
        if stale.is_file():
            stale.unlink()  # the spec no longer ships it
    for name, source in sources.items():
        data = source.read_bytes()
        source_mode = source.stat().st_mode
        mode = file_mode(
            executable=bool(source_mode & 0o111), secret=is_secret(name, data, source_mode)
        )
        target = service_dir / name
        if (
            not target.is_file()
            or target.read_bytes() != data
            or stat.S_IMODE(target.stat().st_mode) != mode
        ):
            atomic_write(target, data, mode=mode)

    own = {f"{short}.cms", f"{short}.inf"}
    service_files = sorted(own | set(sources), key=lambda n: (n not in own, n.casefold()))
    merged_names = merge.component_names if merge else []
    plans = [
        (root / f"{short}.cmp", f"{short}.cmp", desired_cmp(spec)),
        (service_dir / f"{short}.cms", f"{short}/{short}.cms", cms_desired),
        (
            service_dir / f"{short}.inf",
            f"{short}/{short}.inf",
            desired_inf(spec, service_files, merged_names),
        ),
    ]
    previous_rows = state.get("written", {})
    conflicts: list[Conflict] = []
    new_written: dict[str, list[list[str]]] = {}
    for path, label, desired in plans:
        rows = previous_rows.get(label) if isinstance(previous_rows, dict) else None
        if path.is_file():
            ini = IniFile.load(path)
            previous = previous_from_rows(rows) if isinstance(rows, list) else None
            conflicts += reconcile(ini, desired, previous, file_label=label, overwrite=overwrite)
            data = ini.render()
        else:
            data = desired.render()
        if not path.is_file() or path.read_bytes() != data:
            atomic_write(path, data, mode=0o644)
        new_written[label] = desired.state()
    atomic_write(
        state_file,
        json.dumps({"copied": sorted(sources), "written": new_written}, indent=1).encode(),
    )
    listed = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()
    )
    return BuildResult(
        short_name=short,
        root=root,
        cmp_path=root / f"{short}.cmp",
        cms_path=service_dir / f"{short}.cms",
        files=listed,
        conflicts=conflicts,
        merge=merge,
    )
