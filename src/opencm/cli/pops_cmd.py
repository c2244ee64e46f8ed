"""``opencm pops PROFILE``: the dial-up numbers a profile offers, as the user would pick them."""

from __future__ import annotations

from pathlib import Path

import click

from opencm.cli.output import emit_json, warn
from opencm.errors import InputError
from opencm.phonebook.select import dial_numbers, read_offered, select
from opencm.profile.isp import read_isp_filters
from opencm.profile.model import load_profile

LISTS = {"a": "A", "b": "B", "all": "AB"}


@click.command("pops")
@click.argument("profile", type=click.Path(path_type=Path))
@click.option("--country", type=int, help="Country code, e.g. 1 or 44.")
@click.option("--region", help="Region name (as in the .pbr) or number.")
@click.option("--service-type", help="A name from the profile's [Service Types], e.g. Modem.")
@click.option(
    "--list",
    "which",
    type=click.Choice(sorted(LISTS)),
    default="a",
    show_default=True,
    help="The main list (a), the second list (b, surcharged numbers) or all.",
)
@click.option("--pop", "first", type=int, help="The POP index to dial first.")
@click.option("--json", "as_json", is_flag=True, help="Print the POPs as JSON.")
def pops(
    profile: Path,
    country: int | None,
    region: str | None,
    service_type: str | None,
    which: str,
    first: int | None,
    as_json: bool,
) -> None:
    """List the POPs of PROFILE's phone books that its [ISP] filters and your choices leave.

    The first POP (or --pop) and its alternates in the same region are the numbers a dial-up
    connection tries in turn.
    """
    loaded = load_profile(profile)
    view = read_offered(loaded)
    if not view.books:
        raise InputError("this profile has no phone book ([ISP] PBFile)", path=loaded.cms_path)
    for problem in view.problems:
        warn(str(problem))
    chosen = select(
        view.pops,
        read_isp_filters(loaded.cms),
        country=country,
        region=region,
        service_type=service_type,
        lists=LISTS[which],
    )
    numbers = dial_numbers(chosen, first=first)
    if as_json:
        emit_json(
            {
                "profile": str(profile),
                "books": [str(path) for path in view.books],
                "pops": [offered.to_json() for offered in chosen],
                "dial_order": numbers,
            }
        )
        return
    if not chosen:
        click.echo("No POP matches.")
        return
    for offered in chosen:
        pop = offered.pop
        region_text = offered.region_name or "-"
        click.echo(
            f"{pop.index:>6}  {offered.display_number:<24} {pop.name:<31} {region_text:<20}"
            f" list {offered.list}"
        )
    click.echo(f"\nDial order: {', '.join(numbers)}")
