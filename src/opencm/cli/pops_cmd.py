"""``opencm pops PROFILE``: the dial-up numbers a profile offers, as the user would pick them."""

from __future__ import annotations

from pathlib import Path

import click

from opencm.cli.output import emit_json, warn_problem
from opencm.cli.params import json_option
from opencm.errors import InputError
from opencm.phonebook.dialing import choose_numbers, read_rules, save_choice
from opencm.phonebook.select import ordered_pops, read_offered
from opencm.profile.model import load_profile
from opencm.profile.usersettings import choice_updates

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
@click.option(
    "--choose", is_flag=True, help="Save these choices as yours: the next dial-up uses them."
)
@click.option("--favorite", help="With --choose: save under this name too; alone: switch to it.")
@click.option("--number", help="With --choose: dial this number instead of a POP's.")
@click.option("--my-country", type=click.IntRange(1, 999), help="Dialing rules: your country code.")
@click.option("--my-area-code", help="Dialing rules: your area code.")
@click.option("--outside-line", help="Dialing rules: prefix for an outside line, e.g. '9,'.")
@click.option("--calling-card", help="Dialing rules: calling-card prefix.")
@click.option("--tone/--pulse", "tone", default=None, help="Dialing rules: tone or pulse dialing.")
@json_option("Print the POPs as JSON.")
def pops(
    profile: Path,
    country: int | None,
    region: str | None,
    service_type: str | None,
    which: str,
    first: int | None,
    choose: bool,
    favorite: str | None,
    number: str | None,
    my_country: int | None,
    my_area_code: str | None,
    outside_line: str | None,
    calling_card: str | None,
    tone: bool | None,
    as_json: bool,
) -> None:
    """List the POPs of PROFILE's phone books that its [ISP] filters and your choices leave.

    The first POP (or --pop) and its alternates in the same region are the numbers a dial-up
    connection tries in turn, with your dialing rules applied. --choose saves the POP and the
    dialing rules given as yours (in your .cmp), for the next dial-up.
    """
    loaded = load_profile(profile)
    rules = choice_updates(
        [
            ("DialCountry", my_country),
            ("DialAreaCode", my_area_code),
            ("OutsideLine", outside_line),
            ("CallingCard", calling_card),
            ("DialMode", None if tone is None else ("tone" if tone else "pulse")),
        ]
    )
    if choose or favorite is not None:
        if not choose and (rules or number or first or country or region or service_type):
            raise InputError("--favorite with other choices needs --choose")
        saved = save_choice(
            loaded,
            country=country,
            region=region,
            service_type=service_type,
            index=first,
            rules=rules or None,
            number=number,
            favorite=favorite,
        )
        current = choose_numbers(loaded)
        summary = {
            "profile": str(profile),
            "saved_in": str(saved),
            "pop": current.pop.to_json() if current.pop else None,
            "favorite": current.favorite,
            "dialing_rules": current.rules.to_json(),
            "dial_order": list(current.numbers),
        }
        if as_json:
            emit_json(summary)
        else:
            where = f"POP {current.pop.pop.name!r}" if current.pop else "the number given"
            click.echo(f"Saved in {saved}: {where}; dial order {', '.join(current.numbers)}")
        return
    if number is not None or rules:
        raise InputError("--number and the dialing-rule options need --choose (to save them)")
    view = read_offered(loaded)
    if not view.books:
        raise InputError("this profile has no phone book ([ISP] PBFile)", path=loaded.cms_path)
    for problem in view.problems:
        warn_problem(problem)
    chosen = view.select(
        country=country,
        region=region,
        service_type=service_type,
        lists=LISTS[which],
    )
    dialing = read_rules(loaded)
    numbers = [
        dialing.number_for(o.pop.country, o.pop.area, o.pop.access)
        for o in ordered_pops(chosen, first=first)
    ]
    if as_json:
        emit_json(
            {
                "profile": str(profile),
                "books": [str(path) for path in view.books],
                "pops": [offered.to_json() for offered in chosen],
                "dial_order": numbers,
                "dialing_rules": dialing.to_json(),
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
