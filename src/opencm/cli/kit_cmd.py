"""``opencm kit``: opencm's Connection Manager Administration Kit (new, build, verify, keygen)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click

from opencm.actions.api import ActionPoint
from opencm.actions.check import check_profile
from opencm.cli.output import emit_json, warn, warn_problem
from opencm.cli.params import FILE, JSON, PATH, json_option
from opencm.errors import EXIT_PROBLEMS, InputError
from opencm.fsutil import atomic_write
from opencm.kit.build import build_kit
from opencm.kit.newkit import create_kit
from opencm.kit.package import build_package, read_package
from opencm.kit.spec import (
    ASK,
    CARRIERS,
    CONNECTION_TYPES,
    LOGINS,
    RUN_FOR,
    Action,
    Dialing,
    Dialup,
    KitSpec,
    PhoneBook,
    VpnServer,
    check_short_name,
    load_spec,
    spec_from_mapping,
)
from opencm.links import registry
from opencm.profile.model import load_profile
from opencm.signing import generate_keypair, load_public_key, load_secret_key

POINTS = [point.value for point in ActionPoint]


@click.group()
def kit() -> None:
    """Create, build and sign service profiles (opencm's CMAK)."""


# -- kit new ---------------------------------------------------------------------------------


def _vpn_from_flag(name: str, address: str, link: str, target: str) -> VpnServer:
    """``--vpn NAME ADDRESS LINK CONFIG``: CONFIG fills the key the link's dialer reads
    (Config& before Connection&); the spec check then says what else it needs."""
    try:
        keys = registry.tunnel_link(link)
    except InputError as error:
        raise InputError(error.message, field="--vpn LINK") from error
    if "Config" in keys.reads and "Connection" not in keys.required:
        return VpnServer(name, address, link, config=target)
    return VpnServer(name, address, link, connection=target)


def _inline_action(text: str, index: int) -> Action:
    """``--action '{point="post-connect", program="x.sh", include=true}'`` (kit.toml fields)."""
    try:
        table = tomllib.loads(f"action = {text}")["action"]
    except tomllib.TOMLDecodeError as error:
        raise InputError(
            f'expected a TOML inline table like {{point="post-connect", program="x"}} ({error})',
            field=f"--action #{index + 1}",
        ) from error
    if not isinstance(table, dict):
        raise InputError("expected a TOML inline table", field=f"--action #{index + 1}")
    # The program is still a path on this machine (copied into the kit later), so it is
    # checked as a plain name here and as a kit file once copied.
    include = table.get("include") is True
    probe = {
        "service": {"name": "x", "short": "X", "connection_types": ["double"]},
        "vpn": [{"name": "x", "address": "x", "link": "networkmanager", "connection": "x"}],
        "action": [{**table, "include": False}],
    }
    action = spec_from_mapping(probe).actions[0]
    action.include = include
    return action


def _ask_short(default: str | None) -> str:
    while True:
        value: str = click.prompt("Short name (8 characters, names the files)", default=default)
        try:
            return check_short_name(value)
        except InputError as error:
            click.echo(f"  {error.message}", err=True)


def _ask_optional(text: str) -> str | None:
    value: str = click.prompt(text, default="", show_default=False)
    return value.strip() or None


def _wizard(spec: KitSpec) -> None:
    """Ask, the way CMAK's wizard does, for everything the flags left open."""
    spec.service_name = spec.service_name or click.prompt("Service name (what users see)")
    spec.short_name = spec.short_name or _ask_short(None)
    while True:
        types: str = click.prompt(
            f"Connection types ({', '.join(CONNECTION_TYPES)}; comma-separated)",
            default=",".join(spec.connection_types),
        )
        chosen = [t.strip() for t in types.split(",") if t.strip()]
        if chosen and all(t in CONNECTION_TYPES for t in chosen):
            spec.connection_types = chosen
            break
        click.echo(f"  choose among {', '.join(CONNECTION_TYPES)}", err=True)
    if spec.tunnels and not spec.vpn:
        click.echo("VPN servers (an empty name ends the list):")
        while True:
            name = _ask_optional("  Server name")
            if name is None:
                if spec.vpn:
                    break
                click.echo("  at least one VPN server is needed", err=True)
                continue
            address: str = click.prompt("  Address")
            link: str = click.prompt(
                "  Link type",
                type=click.Choice(registry.link_names()),
                default=registry.DEFAULT_LINK,
            )
            server = VpnServer(name, address, link)
            keys = registry.tunnel_link(link)
            if "Config" in keys.required:
                server.config = click.prompt(f"  {link} config file", type=FILE).as_posix()
            elif "Config" in keys.reads:
                optional: str = click.prompt(f"  {link} config file (optional)", default="")
                server.config = Path(optional).as_posix() if optional else None
            if "Connection" in keys.reads:
                connection = click.prompt(
                    f"  {link} connection name",
                    default=None if "Connection" in keys.required else "",
                )
                server.connection = connection or None
            spec.vpn.append(server)
    if spec.dials and spec.dialup is None:
        _ask_dialup(spec)
    if spec.dials and spec.phonebook is None:
        folder = _ask_optional("Phone book folder (holding BOOK.pbk/.pbr; empty for none)")
        if folder:
            name = click.prompt("  Phone book name (8 characters)", default=spec.short_name)
            url = click.prompt("  Phone Book Service URL (empty: no updates)", default="")
            key = _ask_optional("  PBA public key file (minisign .pub)")
            spec.phonebook = PhoneBook(name, folder, url, key)
    if not spec.actions:
        while click.confirm("Add a custom action?", default=False):
            point = click.prompt("  Action type", type=click.Choice(POINTS), default="post-connect")
            include = click.confirm("  Include the program with this profile?", default=True)
            program: str = click.prompt("  Program" + (" file" if include else ""))
            spec.actions.append(
                Action(
                    point=ActionPoint(point),
                    program=program,
                    parameters=click.prompt("  Parameters", default=""),
                    description=click.prompt("  Description", default=Path(program).name),
                    include=include,
                    interactive=click.confirm("  Program interacts with the user?", default=True),
                    run_for=click.prompt(
                        "  Run for", type=click.Choice(list(RUN_FOR)), default="all"
                    ),
                )
            )
        while True:
            monitored = _ask_optional("Monitored application to start (empty: none/done)")
            if monitored is None:
                break
            spec.actions.append(Action(ActionPoint.MONITORED, monitored))
    spec.icon = spec.icon or _ask_optional("Icon file (empty: default)")
    spec.help_file = spec.help_file or _ask_optional("Help file (empty: none)")
    if not spec.additional_files:
        while (extra := _ask_optional("Additional file to include (empty: done)")) is not None:
            spec.additional_files.append(extra)
    if not spec.components:
        while (
            component := _ask_optional("Component profile to merge (built folder; empty: done)")
        ) is not None:
            spec.components.append(component)


@kit.command("new")
@click.argument("directory", type=PATH)
@click.option("--spec", "spec_file", type=PATH, help="Build the kit from this kit.toml.")
@click.option("--no-input", is_flag=True, help="Ask nothing: everything comes from flags.")
@click.option("--name", "service_name", help="Service name users see.")
@click.option("--short", "short_name", help="Short name: 8 characters, names the files.")
@click.option("--profile-version", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(CONNECTION_TYPES),
    help="Connection type offered (repeat for several; default direct).",
)
@click.option(
    "--vpn",
    nargs=4,
    multiple=True,
    metavar="NAME ADDRESS LINK CONFIG",
    help="VPN server: LINK is a tunnel dialer ('opencm dialers list'); CONFIG is what it reads: "
    "a file for Config& (openvpn, wireguard, ikev2), the connection name for Connection& "
    "(networkmanager).",
)
@click.option("--redial-count", type=click.IntRange(0), default=3, show_default=True)
@click.option("--redial-delay", type=click.IntRange(0), default=5, show_default=True)
@click.option(
    "--auto-reconnect/--no-auto-reconnect",
    default=True,
    show_default=True,
    help="Reconnect by itself after the link drops.",
)
@click.option("--dun", help="Dial-up entry name (default: the service name).")
@click.option("--tunnel-dun", help="Tunnel entry name (default: '<SHORT> Tunnel').")
@click.option("--phonebook-dir", type=PATH, help="Folder with BOOK.pbk/.pbr(/.ver).")
@click.option("--phonebook-name", help="Phone book name (default: the short name).")
@click.option("--pbs-url", default="", help="Phone Book Service URL for updates.")
@click.option("--pba-key", type=PATH, help="The PBA's minisign public key.")
@click.option("--modem", help='Dial-up: the modem\'s serial port, or "ask" (each user sets it).')
@click.option("--modem-speed", help='Dial-up: line speed (default 115200), or "ask".')
@click.option("--modem-init", help='Dial-up: modem init string (default ATZ), or "ask".')
@click.option(
    "--modem-carrier", type=click.Choice(CARRIERS), help="Dial-up: IP over the line (auto)."
)
@click.option("--modem-ip", nargs=2, metavar="LOCAL PEER", help="Dial-up: the line's addresses.")
@click.option(
    "--modem-login", type=click.Choice(LOGINS), help="Dial-up: the access server's login."
)
@click.option("--dial-numbers", help="Dial-up: fixed numbers (';'-separated) without a phone book.")
@click.option(
    "--same-credentials",
    is_flag=True,
    help="Double dial: send the VPN credentials to the dial-up server too.",
)
@click.option("--dial-country", type=click.IntRange(1, 999), help="Dialing rules: country code.")
@click.option("--dial-area-code", help="Dialing rules: the users' area code.")
@click.option("--outside-line", help="Dialing rules: outside-line prefix, e.g. '9,'.")
@click.option("--calling-card", help="Dialing rules: calling-card prefix.")
@click.option("--pulse", is_flag=True, help="Dialing rules: pulse dialing (default tone).")
@click.option("--user-prefix", default="", help="Realm: put in front of the user name sent.")
@click.option("--user-suffix", default="", help="Realm: put after the user name sent.")
@click.option("--action", "actions", multiple=True, help="Custom action as a TOML inline table.")
@click.option("--monitored", multiple=True, help="Monitored application (repeatable).")
@click.option("--icon", type=PATH)
@click.option("--small-icon", type=PATH)
@click.option("--tray-icon", type=PATH)
@click.option("--help-file", type=PATH)
@click.option("--file", "files", multiple=True, type=PATH, help="Additional file (repeatable).")
@click.option("--component", "components", multiple=True, type=PATH, help="Profile to merge.")
def new(
    directory: Path,
    spec_file: Path | None,
    no_input: bool,
    service_name: str | None,
    short_name: str | None,
    profile_version: int,
    types: tuple[str, ...],
    vpn: tuple[tuple[str, str, str, str], ...],
    redial_count: int,
    redial_delay: int,
    auto_reconnect: bool,
    dun: str | None,
    tunnel_dun: str | None,
    phonebook_dir: Path | None,
    phonebook_name: str | None,
    pbs_url: str,
    pba_key: Path | None,
    modem: str | None,
    modem_speed: str | None,
    modem_init: str | None,
    modem_carrier: str | None,
    modem_ip: tuple[str, str] | None,
    modem_login: str | None,
    dial_numbers: str | None,
    same_credentials: bool,
    dial_country: int | None,
    dial_area_code: str | None,
    outside_line: str | None,
    calling_card: str | None,
    pulse: bool,
    user_prefix: str,
    user_suffix: str,
    actions: tuple[str, ...],
    monitored: tuple[str, ...],
    icon: Path | None,
    small_icon: Path | None,
    tray_icon: Path | None,
    help_file: Path | None,
    files: tuple[Path, ...],
    components: tuple[Path, ...],
) -> None:
    """Create a kit folder DIRECTORY: a kit.toml plus copies of the files it names."""
    if spec_file is not None:
        spec = load_spec(spec_file)
        base = spec_file.parent if spec_file.is_file() else spec_file
        spec_path = create_kit(directory, spec, base=base)
        click.echo(f"Created {spec_path}; build it with: opencm kit build {directory}")
        return

    def text(path: Path | None) -> str | None:
        return path.as_posix() if path is not None else None

    spec = KitSpec(
        service_name=service_name or "",
        short_name=short_name or "",
        version=profile_version,
        connection_types=list(types) or ["direct"],
        redial_count=redial_count,
        redial_delay=redial_delay,
        auto_reconnect=auto_reconnect,
        dun=dun,
        tunnel_dun=tunnel_dun,
        vpn=[_vpn_from_flag(*server) for server in vpn],
        actions=[_inline_action(a, i) for i, a in enumerate(actions)]
        + [Action(ActionPoint.MONITORED, program) for program in monitored],
        icon=text(icon),
        small_icon=text(small_icon),
        tray_icon=text(tray_icon),
        help_file=text(help_file),
        additional_files=[p.as_posix() for p in files],
        components=[p.as_posix() for p in components],
        user_prefix=user_prefix,
        user_suffix=user_suffix,
    )
    modem_given = (modem, modem_speed, modem_init, modem_carrier, modem_ip, modem_login)
    if any(value is not None for value in modem_given) or dial_numbers or same_credentials:
        spec.dialup = _dialup_from_flags(
            modem, modem_speed, modem_init, modem_carrier, modem_ip, modem_login,
            dial_numbers, same_credentials,
        )  # fmt: skip
    if any(v is not None for v in (dial_country, dial_area_code, outside_line, calling_card)):
        spec.dialing = Dialing(
            country=dial_country,
            area_code=dial_area_code or "",
            outside_line=outside_line or "",
            dial_mode="pulse" if pulse else "tone",
            calling_card=calling_card or "",
        )
    elif pulse:
        spec.dialing = Dialing(dial_mode="pulse")
    if phonebook_dir is not None:
        spec.phonebook = PhoneBook(
            phonebook_name or spec.short_name, phonebook_dir.as_posix(), pbs_url, text(pba_key)
        )
    if not no_input:
        _wizard(spec)
    elif not spec.short_name or not spec.service_name:
        raise InputError("--name and --short are required with --no-input")
    # create_kit validates through the same reader a hand-written kit.toml goes through.
    spec_path = create_kit(directory, spec)
    click.echo(f"Created {spec_path}; build it with: opencm kit build {directory}")


def _dialup_from_flags(
    device: str | None,
    speed: str | None,
    init: str | None,
    carrier: str | None,
    addresses: tuple[str, str] | None,
    login: str | None,
    numbers: str | None,
    same_credentials: bool,
) -> Dialup:
    speed_value: int | None = 115200
    if speed is not None:
        if speed == ASK:
            speed_value = None
        elif speed.isdigit():
            speed_value = int(speed)
        else:
            raise InputError(
                f'expected a line speed or "ask", got {speed!r}', field="--modem-speed"
            )
    return Dialup(
        device=device or ASK,
        speed=speed_value,
        init=init or "ATZ",
        carrier=carrier or "auto",
        local_ip=addresses[0] if addresses else None,
        peer_ip=addresses[1] if addresses else None,
        login=login or "none",
        numbers=numbers,
        credentials="same" if same_credentials else "separate",
    )


def _ask_dialup(spec: KitSpec) -> None:
    device: str = click.prompt('Modem serial port ("ask": each user sets it)', default=ASK)
    speed: str = click.prompt('  Line speed ("ask": each user sets it)', default="115200")
    init: str = click.prompt("  Init string", default="ATZ")
    spec.dialup = _dialup_from_flags(device, speed, init, None, None, None, None, False)
    if "double" in spec.connection_types:
        spec.dialup.credentials = (
            "same"
            if click.confirm("  Use the VPN user name and password for dial-up too?", default=False)
            else "separate"
        )


# -- kit build ---------------------------------------------------------------------------------


@kit.command("build")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--key",
    type=FILE,
    help="Administrator's minisign secret key: also make the signed package.",
)
@click.option("--out", type=PATH, help="Package file (default DIR/build/<SHORT>.cmpkg.pyz).")
@click.option(
    "--with-wheel",
    type=FILE,
    help="Carry this opencm wheel for machines without opencm.",
)
@click.option("--overwrite", is_flag=True, help="Replace hand-edited keys the kit controls.")
@json_option("Print the result as JSON.")
@click.pass_context
def build(
    ctx: click.Context,
    directory: Path,
    key: Path | None,
    out: Path | None,
    with_wheel: Path | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Build the service profile of the kit DIRECTORY (and sign a package with --key).

    Exit status 1 when hand-edited keys were kept, component profiles conflict, or
    `opencm profile check` finds problems in the result.
    """
    result = build_kit(directory, overwrite=overwrite)
    spec = load_spec(directory)
    package: Path | None = None
    if key is not None:
        package = out or directory / "build" / f"{spec.short_name}.cmpkg.pyz"
        build_package(
            result.root,
            short_name=spec.short_name,
            service_name=spec.service_name,
            version=spec.version,
            secret_key=load_secret_key(key),
            out=package,
            wheel=with_wheel,
        )
    elif out is not None or with_wheel is not None:
        raise InputError("--out and --with-wheel make a package: give --key too")
    merge_conflicts = result.merge.conflicts if result.merge else []
    # What `opencm profile check` would say about the result (hand edits can break things).
    problems = check_profile(load_profile(result.cmp_path))
    if as_json:
        emit_json(
            {
                "short_name": result.short_name,
                "root": str(result.root),
                "cmp": str(result.cmp_path),
                "files": result.files,
                "conflicts": [c.to_json() for c in result.conflicts],
                "merge_conflicts": [
                    {"component": c.component, "message": c.message} for c in merge_conflicts
                ],
                "problems": [problem.as_json() for problem in problems],
                "package": str(package) if package else None,
            }
        )
    else:
        click.echo(f"Built {spec.service_name} ({result.short_name}) in {result.root}")
        for conflict in result.conflicts:
            warn(str(conflict))
        for merge_conflict in merge_conflicts:
            warn(str(merge_conflict))
        for problem in problems:
            warn_problem(problem)
        if package:
            click.echo(f"Package: {package} (signed, version {spec.version})")
    if result.kept_hand_edits or merge_conflicts or problems:
        ctx.exit(EXIT_PROBLEMS)


@kit.command("verify")
@click.argument("package", type=PATH)
@click.option(
    "--trust",
    multiple=True,
    required=True,
    type=FILE,
    help="Public key to check with.",
)
@JSON
def verify_cmd(package: Path, trust: tuple[Path, ...], as_json: bool) -> None:
    """Check a package's signature and hashes without installing it."""
    verified = read_package(package, [load_public_key(path) for path in trust])
    manifest = verified.manifest
    if as_json:
        emit_json(
            {
                "short_name": manifest.short_name,
                "service_name": manifest.service_name,
                "version": manifest.version,
                "files": sorted(verified.files),
                "signer": verified.signer,
            }
        )
        return
    click.echo(
        f"OK: {manifest.service_name} ({manifest.short_name}) version {manifest.version}, "
        f"{len(verified.files)} files, signed by {verified.signer}"
    )


@kit.command("keygen")
@click.argument("prefix", type=PATH)
def keygen(prefix: Path) -> None:
    """Make an administrator key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub."""
    secret_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    for path in (secret_path, public_path):
        if path.exists():
            raise InputError("already exists; refusing to replace a key", path=path)
    secret, public = generate_keypair()
    atomic_write(secret_path, secret, mode=0o600)
    atomic_write(public_path, public, mode=0o644)
    os.chmod(secret_path, 0o600)
    click.echo(f"Secret key: {secret_path} (keep it off the clients)\nPublic key: {public_path}")
