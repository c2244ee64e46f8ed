"""``opencm import SOURCE``: a kit folder from a Windows profile, Azure's zip, .ovpn or wg."""

from __future__ import annotations

from pathlib import Path

import click

from opencm.cli.output import emit_json
from opencm.cli.params import FILE, json_option
from opencm.errors import EXIT_PROBLEMS
from opencm.migrate import ClientFiles, import_source, write_kit
from opencm.migrate.report import Report


@click.command("import")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="The kit folder to write (default: ./<short name>-kit; must be empty).",
)
@click.option("--ca", type=FILE, help="CA certificate of the VPN gateway (IKEv2).")
@click.option("--client-cert", type=FILE, help="The user's certificate (EAP-TLS, Azure).")
@click.option("--client-key", type=FILE, help="The private key of --client-cert.")
@json_option("Print the migration report as JSON.")
def import_cmd(
    source: Path,
    out: Path | None,
    ca: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
    as_json: bool,
) -> None:
    """Turn SOURCE into an opencm kit folder and report every setting's fate.

    SOURCE: a Windows Connection Manager profile (folder, .cmp, CMAK cabinet or IExpress .exe),
    Azure's VpnClientConfiguration.zip, an OpenVPN .ovpn or a WireGuard .conf. Build the kit
    with `opencm kit build KIT --key ADMIN.key` (a key from `opencm kit keygen`). Exit status 1
    when the kit still needs something (listed as "needed") before it can connect.
    """
    report = Report(str(source))
    draft = import_source(source, report, ClientFiles(ca, client_cert, client_key))
    target = out or Path.cwd() / f"{draft.spec.short_name}-kit"
    write_kit(draft, target, report)
    if as_json:
        emit_json(report.to_json())
    else:
        for line in report.lines():
            click.echo(line)
        if report.kit and report.complete:
            click.echo(f"Next: opencm kit build {report.kit} --key ADMIN.key")
        elif report.kit:
            click.echo(
                f"Next: give what is needed, then opencm kit build {report.kit} --key ADMIN.key"
            )
    if not report.complete:
        raise SystemExit(EXIT_PROBLEMS)
