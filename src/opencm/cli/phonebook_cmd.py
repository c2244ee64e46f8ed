"""``opencm phonebook``: the Phone Book Administrator (books, POPs, regions, releases, posting)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from opencm.cli.output import emit_json, warn
from opencm.cli.params import FILE, JSON, PATH
from opencm.errors import EXIT_PROBLEMS, InputError
from opencm.phonebook.check import check_phonebook
from opencm.phonebook.importer import import_file
from opencm.phonebook.keys import make_keypair, signing_key
from opencm.phonebook.pbk import Pop
from opencm.phonebook.post import post_latest, read_token
from opencm.phonebook.workspace import (
    Book,
    ReleaseInfo,
    Workspace,
    default_directory,
    pop_as_json,
)

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


@click.group()
@click.option(
    "--workspace",
    "workspace_dir",
    type=PATH,
    envvar="OPENCM_PBA_WORKSPACE",
    help="Workspace folder (default: $XDG_DATA_HOME/opencm/pba).",
)
@click.pass_context
def phonebook(ctx: click.Context, workspace_dir: Path | None) -> None:
    """Phone books: POPs and regions, releases (signed full and delta cabs), posting."""
    ctx.obj = workspace_dir or default_directory()


def _root(ctx: click.Context) -> Path:
    """The workspace folder the group was given (or its default)."""
    root = ctx.find_object(Path)
    assert root is not None
    return root


@contextmanager
def _open(ctx: click.Context) -> Iterator[Workspace]:
    with Workspace(_root(ctx)) as workspace:
        yield workspace


def _emit(as_json: bool, data: Any, text: str) -> None:
    """One result: ``data`` as JSON for scripts, or ``text`` for people."""
    if as_json:
        emit_json(data)
    else:
        click.echo(text)


def _print_rows(
    rows: Sequence[_T],
    as_json: bool,
    *,
    as_dict: Callable[[_T], Any],
    line: Callable[[_T], str],
    empty: str | None = None,
) -> None:
    """A listing: a JSON array for scripts, or a line a row (and ``empty`` when there are none)."""
    if as_json:
        emit_json([as_dict(row) for row in rows])
        return
    for row in rows:
        click.echo(line(row))
    if not rows and empty is not None:
        click.echo(empty)


def _pop_line(pop: Pop, regions: list[str]) -> str:
    region = regions[pop.region - 1] if 0 < pop.region <= len(regions) else "-"
    return (
        f"{pop.index:>6}  {pop.country:>4}  {region[:16]:<16}  {pop.name[:30]:<30}  "
        f"{pop.area:>6}  {pop.access:<20}  flags={pop.flags}"
    )


def _print_pops(pops: list[Pop], regions: list[str], as_json: bool) -> None:
    _print_rows(
        pops,
        as_json,
        as_dict=pop_as_json,
        line=lambda pop: _pop_line(pop, regions),
        empty="(no POPs)",
    )


# -- books -----------------------------------------------------------------------------------


@phonebook.command("create")
@click.argument("name")
@JSON
@click.pass_context
def create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create an empty phone book NAME (≤ 8 letters, digits or '_', not all digits)."""
    with _open(ctx) as ws:
        book = ws.create_book(name)
    _emit(as_json, book.as_json(), f"Created phone book {book.name}")


@phonebook.command("list")
@JSON
@click.pass_context
def list_books(ctx: click.Context, as_json: bool) -> None:
    """List the phone books of the workspace."""
    with _open(ctx) as ws:
        books = ws.books()
    _print_rows(
        books,
        as_json,
        as_dict=lambda book: book.as_json(),
        line=_book_line,
        empty="(no phone books; create one with 'opencm phonebook create NAME')",
    )


def _book_line(book: Book) -> str:
    posted = f"posted v{book.posted_version}" if book.posted else "not posted"
    return (
        f"{book.name:<8}  version {book.version:>5}  {book.pops:>6} POPs  "
        f"{book.regions:>4} regions  {posted}"
    )


@phonebook.command("show")
@click.argument("name")
@JSON
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a phone book's version, size, post target and pending changes."""
    with _open(ctx) as ws:
        book = ws.book(name)
    if as_json:
        emit_json(book.as_json())
        return
    for key, value in book.as_json().items():
        click.echo(f"{key.replace('_', ' ')}: {value if value is not None else '-'}")


@phonebook.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete phone book NAME from the workspace (posted releases stay where they were posted)."""
    if not yes:
        click.confirm(f"Delete {name} with all its POPs, regions and releases?", abort=True)
    with _open(ctx) as ws:
        ws.delete_book(name)
    click.echo(f"Deleted {name}; releases already posted remain on their service")


@phonebook.command("undo")
@click.argument("name")
@JSON
@click.pass_context
def undo(ctx: click.Context, name: str, as_json: bool) -> None:
    """Revert the newest change to NAME that is not yet released."""
    with _open(ctx) as ws:
        command = ws.undo(name)
    _emit(as_json, {"book": name, "undone": command}, f"Undone: {command}")


# -- POPs ------------------------------------------------------------------------------------


@phonebook.group("pop")
def pop_group() -> None:
    """Add, edit, delete, list and search POPs."""


def _pop_options(required: bool) -> Callable[[_F], _F]:
    def decorate(function: _F) -> _F:
        options = [
            click.option("--country", type=int, required=required, help="Country code."),
            click.option("--region", help="Region name or number (0: all regions)."),
            click.option("--name", "pop_name", help="POP name (≤ 30 characters)."),
            click.option("--area", help="Area code (digits)."),
            click.option("--access", required=required, help="Access number."),
            click.option("--min-speed", type=int),
            click.option("--max-speed", type=int),
            click.option("--reserved", type=int),
            click.option("--flags", type=int, help="POP flag bits (MS-CPSP; bit 0 must be 0)."),
            click.option("--dun", help="Dial-up networking entry name."),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _changes(ws: Workspace, book: str, values: dict[str, Any]) -> dict[str, Any]:
    mapping = {"pop_name": "name"}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key == "region":
            value = 0 if value in ("", "0") else ws.region_id(book, value)
        changes[mapping.get(key, key)] = value
    return changes


@pop_group.command("add")
@click.argument("book")
@click.option("--index", type=int, default=0, help="POP index (default: next free).")
@_pop_options(required=True)
@JSON
@click.pass_context
def pop_add(ctx: click.Context, /, book: str, index: int, as_json: bool, **values: Any) -> None:
    """Add a POP to BOOK."""
    with _open(ctx) as ws:
        pop = ws.add_pop(book, Pop(index=index, **_changes(ws, book, values)))
        regions = ws.regions(book)
    _emit(as_json, pop_as_json(pop), _pop_line(pop, regions))


@pop_group.command("edit")
@click.argument("book")
@click.argument("index", type=int)
@_pop_options(required=False)
@JSON
@click.pass_context
def pop_edit(ctx: click.Context, /, book: str, index: int, as_json: bool, **values: Any) -> None:
    """Change fields of POP INDEX in BOOK."""
    with _open(ctx) as ws:
        changes = _changes(ws, book, values)
        if not changes:
            raise InputError("nothing to change: give at least one field option")
        pop = ws.edit_pop(book, index, **changes)
        regions = ws.regions(book)
    _emit(as_json, pop_as_json(pop), _pop_line(pop, regions))


@pop_group.command("delete")
@click.argument("book")
@click.argument("index", type=int)
@click.pass_context
def pop_delete(ctx: click.Context, book: str, index: int) -> None:
    """Delete POP INDEX from BOOK."""
    with _open(ctx) as ws:
        ws.delete_pop(book, index)
    click.echo(f"Deleted POP {index}")


@pop_group.command("list")
@click.argument("book")
@click.option("--limit", type=int, default=None)
@click.option("--offset", type=int, default=0)
@JSON
@click.pass_context
def pop_list(ctx: click.Context, book: str, limit: int | None, offset: int, as_json: bool) -> None:
    """List the POPs of BOOK by index."""
    with _open(ctx) as ws:
        pops = ws.pops(book, limit=limit, offset=offset)
        regions = ws.regions(book)
    _print_pops(pops, regions, as_json)


@pop_group.command("search")
@click.argument("book")
@click.argument("query")
@click.option("--contains", is_flag=True, help="Match anywhere, not only at the start.")
@click.option("--limit", type=int, default=50, show_default=True)
@JSON
@click.pass_context
def pop_search(
    ctx: click.Context, book: str, query: str, contains: bool, limit: int, as_json: bool
) -> None:
    """Find POPs by name, area code or access number prefix, or by index."""
    with _open(ctx) as ws:
        pops = ws.search(book, query, limit=limit, contains=contains)
        regions = ws.regions(book)
    _print_pops(pops, regions, as_json)


# -- regions ---------------------------------------------------------------------------------


@phonebook.group("region")
def region_group() -> None:
    """Add, rename, delete and list regions (the .pbr file)."""


@region_group.command("add")
@click.argument("book")
@click.argument("region")
@click.pass_context
def region_add(ctx: click.Context, book: str, region: str) -> None:
    """Add REGION to BOOK (it gets the next number)."""
    with _open(ctx) as ws:
        number = ws.add_region(book, region)
    click.echo(f"Region {number}: {region}")


@region_group.command("rename")
@click.argument("book")
@click.argument("region")
@click.argument("new_name")
@click.pass_context
def region_rename(ctx: click.Context, book: str, region: str, new_name: str) -> None:
    """Rename REGION (name or number) of BOOK to NEW_NAME."""
    with _open(ctx) as ws:
        ws.rename_region(book, region, new_name)
    click.echo(f"Renamed {region} to {new_name}")


@region_group.command("delete")
@click.argument("book")
@click.argument("region")
@click.option("--force", is_flag=True, help="Delete even if POPs use it (they lose the region).")
@click.pass_context
def region_delete(ctx: click.Context, book: str, region: str, force: bool) -> None:
    """Delete REGION (name or number) of BOOK; later regions are renumbered."""
    with _open(ctx) as ws:
        moved = ws.delete_region(book, region, force=force)
    click.echo(f"Deleted region {region} ({moved} POPs renumbered)")


@region_group.command("list")
@click.argument("book")
@JSON
@click.pass_context
def region_list(ctx: click.Context, book: str, as_json: bool) -> None:
    """List the regions of BOOK with their numbers."""
    with _open(ctx) as ws:
        names = ws.regions(book)
    _print_rows(
        list(enumerate(names, 1)),
        as_json,
        as_dict=lambda region: {"id": region[0], "name": region[1]},
        line=lambda region: f"{region[0]:>5}  {region[1]}",
    )


# -- import / export -------------------------------------------------------------------------


@phonebook.command("import")
@click.argument("name")
@click.argument("file", type=FILE)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["pba", "csv", "pbk"]),
    default=None,
    help="Default: csv for .csv, an MS-CPSP phone book for .pbk, PBA's import format otherwise.",
)
@JSON
@click.pass_context
def import_cmd(
    ctx: click.Context, name: str, file: Path, file_format: str | None, as_json: bool
) -> None:
    """Import POPs from FILE into NAME, all or nothing."""
    lines = file.read_bytes().count(b"\n") + 1
    started = time.perf_counter()
    make_bar: Any = click.progressbar  # its overloads do not type a length-only bar
    bar = make_bar(length=lines, label=f"Importing {file.name}", file=sys.stderr)
    with _open(ctx) as ws, bar:
        added, changed, deleted = import_file(
            ws, name, file, file_format=file_format, progress=bar.update
        )
        bar.update(lines)
    elapsed = time.perf_counter() - started
    result = {
        "book": name,
        "added": added,
        "changed": changed,
        "deleted": deleted,
        "seconds": round(elapsed, 3),
    }
    _emit(
        as_json,
        result,
        f"{name}: {added} added, {changed} changed, {deleted} deleted ({elapsed:.2f} s)",
    )


@phonebook.command("export")
@click.argument("name")
@click.argument("directory", type=PATH)
@click.option(
    "--released",
    is_flag=True,
    help="Write the latest release (with its .ver) instead of the working copy; this is what a "
    "kit's [phonebook] folder should hold.",
)
@click.pass_context
def export(ctx: click.Context, name: str, directory: Path, released: bool) -> None:
    """Write NAME as DIRECTORY/NAME.pbk and NAME.pbr (and NAME.ver with --released)."""
    with _open(ctx) as ws:
        written = ws.export_to(name, directory, released=released)
        version = ws.book(name).version
    what = f"version {version}" if released else "working copy"
    click.echo(f"Wrote {', '.join(written)} ({what}) to {directory}")


@phonebook.command("check")
@click.argument("pbk", type=FILE)
@JSON
def check(pbk: Path, as_json: bool) -> None:
    """Read an MS-CPSP phone book (and the .pbr beside it) as a client would; list problems.

    Exit 0 when clean, 1 when a rule fired (each named with file, line, field and effect).
    """
    result = check_phonebook(pbk)
    if as_json:
        emit_json(result.as_json())
    else:
        for problem in result.problems:
            click.echo(str(problem))
        click.echo(f"{result.pops} POPs in effect, {len(result.problems)} problems")
    if result.problems:
        ctx = click.get_current_context()
        ctx.exit(EXIT_PROBLEMS)


# -- releases, keys, posting -----------------------------------------------------------------


@phonebook.command("keygen")
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
@click.pass_context
def keygen(ctx: click.Context, force: bool) -> None:
    """Make the administrator's signing key pair in the workspace (secret key mode 0600)."""
    paths = make_keypair(_root(ctx), replace=force)
    click.echo(
        f"Secret key: {paths.secret} (keep it here)\n"
        f"Public key: {paths.public} (give it to the kit: [phonebook] public_key)"
    )


@phonebook.command("release")
@click.argument("name")
@click.option("--key", "key_path", type=FILE, help="Secret key (default: the workspace's).")
@JSON
@click.pass_context
def release(ctx: click.Context, name: str, key_path: Path | None, as_json: bool) -> None:
    """Make the next version of NAME: the full cab and deltas from the last five versions."""
    secret = signing_key(_root(ctx), key_path)
    with _open(ctx) as ws:
        book = ws.book(name)
        info, files = ws.release(name, secret)
    summary = {
        "book": book.name,
        **info.as_json(),
        "files": {file: len(data) for file, data in sorted(files.items())},
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"{book.name} version {info.version}: {info.pops} POPs ({info.added} added, "
        f"{info.changed} changed, {info.deleted} deleted)"
    )
    for file, data in sorted(files.items()):
        if not file.endswith(".minisig"):
            click.echo(f"  {file}  {len(data)} bytes")


@phonebook.command("history")
@click.argument("name")
@JSON
@click.pass_context
def history(ctx: click.Context, name: str, as_json: bool) -> None:
    """List NAME's releases."""
    with _open(ctx) as ws:
        releases = ws.history(name)
    _print_rows(
        releases,
        as_json,
        as_dict=lambda info: info.as_json(),
        line=_release_line,
        empty="(no releases)",
    )


def _release_line(info: ReleaseInfo) -> str:
    return (
        f"v{info.version:<5} {info.created}  {info.pops:>6} POPs  +{info.added} "
        f"~{info.changed} -{info.deleted}  {'posted ' + info.posted if info.posted else ''}"
    )


@phonebook.command("post")
@click.argument("name")
@click.option(
    "--to",
    "target",
    help="Publish directory or https:// Phone Book Service URL (default: the book's home service).",
)
@click.option("--token-file", type=FILE, help="File with the upload token (or $OPENCM_PBS_TOKEN).")
@click.option("--force", is_flag=True, help="Move the book to another home service.")
@JSON
@click.pass_context
def post(
    ctx: click.Context,
    name: str,
    target: str | None,
    token_file: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Post NAME's latest release to its Phone Book Service (directory or HTTPS upload)."""
    with _open(ctx) as ws:
        posted = post_latest(
            ws,
            name,
            target=target,
            token=lambda: read_token(token_file, os.environ),
            force=force,
            warn=warn,
        )
    _emit(
        as_json,
        posted.answer,
        f"Posted {posted.book} version {posted.version} to {posted.target}",
    )
