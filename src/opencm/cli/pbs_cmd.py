"""``opencm pbs``: run the Phone Book Service, read its statistics, manage upload tokens."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from opencm.cli.output import emit_json
from opencm.cli.params import JSON
from opencm.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])

DATA_OPTION = click.option(
    "--data",
    "data",
    required=True,
    envvar="OPENCM_PBS_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help="The data folder: the publish store (one folder per phone book), tokens.json, .stats/.",
)


def _existing(data: Path) -> Path:
    if not data.is_dir():
        raise InputError("no such folder (create it, or publish a release into it)", path=data)
    return data.resolve()


def _number(name: str, default: float, kind: click.ParamType[Any], text: str) -> Callable[[F], F]:
    """A numeric option with its default shown."""
    return click.option(name, default=default, show_default=True, type=kind, help=text)


@click.group()
def pbs() -> None:
    """The Phone Book Service: answers clients' phone-book update requests."""


@pbs.command()
@DATA_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--server",
    type=click.Choice(["opencm", "granian", "uvicorn"]),
    default="opencm",
    show_default=True,
    help="opencm's own HTTP server (fastest, see benchmarks/pbs.py), or the app under granian "
    "(the 'granian' extra) or uvicorn.",
)
@_number(
    "--header-timeout",
    10.0,
    click.FloatRange(0.1, 3600),
    "Seconds a client has to send a whole request head (opencm server).",
)
@_number(
    "--idle-timeout",
    30.0,
    click.FloatRange(0.1, 3600),
    "Seconds an idle keep-alive connection is kept.",
)
@_number(
    "--max-connections",
    4096,
    click.IntRange(1, 1_000_000),
    "Connections served at once; one more gets 503.",
)
@click.option("--poll", is_flag=True, help="Poll the store instead of inotify (NFS/SMB stores).")
@_number(
    "--poll-interval",
    1.0,
    click.FloatRange(0.05, 3600),
    "Seconds between statistics flushes, and between checks of the store when polling.",
)
@_number(
    "--max-upload",
    64 * 1024 * 1024,
    click.IntRange(1024, 2**31),
    "Largest release upload accepted, in bytes.",
)
def serve(
    data: Path,
    host: str,
    port: int,
    workers: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    server: str,
    header_timeout: float,
    idle_timeout: float,
    max_connections: int,
    poll: bool,
    poll_interval: float,
    max_upload: int,
) -> None:
    """Serve GET /pbserver/pbserver.dll, /metrics, /openapi.json and the release upload."""
    from opencm.pbs.app import DATA_ENV, MAX_UPLOAD_ENV, POLL_ENV, POLL_ONLY_ENV

    if (tls_cert is None) != (tls_key is None):
        raise InputError("--tls-cert and --tls-key go together", field="--tls-cert")
    os.environ[DATA_ENV] = str(_existing(data))
    os.environ[POLL_ENV] = str(poll_interval)
    os.environ[MAX_UPLOAD_ENV] = str(max_upload)
    os.environ[POLL_ONLY_ENV] = "1" if poll else "0"
    if server == "granian" and importlib.util.find_spec("granian") is None:
        raise InputError(
            "granian is not installed (pip install 'opencm[granian]')", field="--server"
        )
    os.environ.update(
        {
            "OPENCM_PBS_SERVER": server,
            "OPENCM_PBS_HOST": host,
            "OPENCM_PBS_PORT": str(port),
            "OPENCM_PBS_WORKERS": str(workers),
            "OPENCM_PBS_HEADER_TIMEOUT": str(header_timeout),
            "OPENCM_PBS_IDLE_TIMEOUT": str(idle_timeout),
            "OPENCM_PBS_MAX_CONNECTIONS": str(max_connections),
            "OPENCM_PBS_TLS_CERT": str(tls_cert.resolve()) if tls_cert else "",
            "OPENCM_PBS_TLS_KEY": str(tls_key.resolve()) if tls_key else "",
        }
    )
    from opencm.pbs.serve import exec_server

    exec_server()


@pbs.command()
@DATA_OPTION
@click.option(
    "--from-log",
    "from_log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Count an exported tree's hits from this nginx access log (combined format) instead.",
)
@JSON
def stats(data: Path, from_log: Path | None, as_json: bool) -> None:
    """Hits per phone book (full, delta, none, error) over every worker and replica."""
    from opencm.pbs.stats import KINDS, read_totals
    from opencm.phonebook import store

    root = _existing(data)
    if from_log is None:
        totals = read_totals(root)
    else:
        from opencm.pbs.logstats import count_log

        totals, skipped = count_log(from_log, root)
        if skipped:
            click.echo(
                f"{from_log}: {skipped} line(s) not in the combined format or not served", err=True
            )
    versions = {book.upper(): store.current_version(root, book) for book in store.list_books(root)}
    for book in versions:
        totals.setdefault(book, dict.fromkeys(KINDS, 0))
    if as_json:
        emit_json(
            {
                "books": {
                    book: {"version": versions.get(book), **row}
                    for book, row in sorted(totals.items())
                }
            }
        )
        return
    click.echo(f"{'BOOK':<10} {'VERSION':>7} {'FULL':>9} {'DELTA':>9} {'NONE':>9} {'ERROR':>9}")
    for book, row in sorted(totals.items()):
        version = versions.get(book)
        click.echo(
            f"{book:<10} {'-' if version is None else version:>7} {row['full']:>9} "
            f"{row['delta']:>9} {row['none']:>9} {row['error']:>9}"
        )


@pbs.command("export")
@DATA_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the static tree and the nginx configuration go.",
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    help="nginx's listen address for the server block (HOST:PORT).",
)
@_number("--keep", 5, click.IntRange(2, 1000), "Generations kept.")
@click.option(
    "--reload",
    "reload_pid",
    type=click.Path(dir_okay=False, path_type=Path),
    help="After the export, tell the nginx whose pid file this is to reload (SIGHUP).",
)
@JSON
def export_cmd(
    data: Path, out: Path, listen: str, keep: int, reload_pid: Path | None, as_json: bool
) -> None:
    """Write the store as a static tree and the nginx routing that answers like `pbs serve`."""
    from opencm.pbs.export import check_listen, export, reload_nginx

    check_listen(listen)
    result = export(_existing(data), out, listen=listen, keep=keep)
    if reload_pid is not None:
        reload_nginx(reload_pid)
    if as_json:
        emit_json(
            {
                "generation": str(result.generation),
                "books": result.books,
                "snippet": str(result.snippet),
                "nginx_conf": str(result.standalone),
                "reloaded": reload_pid is not None,
            }
        )
        return
    click.echo(f"exported {len(result.books)} book(s) to {result.generation}")
    click.echo(f"include {result.snippet} in nginx's http block, or run:")
    click.echo(f"  nginx -p {result.standalone.parent} -c nginx.conf")


@pbs.group()
def token() -> None:
    """Upload tokens for `opencm phonebook post` (stored hashed in DATA/tokens.json)."""


@token.command("add")
@DATA_OPTION
@click.argument("name")
@JSON
def token_add(data: Path, name: str, as_json: bool) -> None:
    """Create a token called NAME and print it (once: only its hash is kept)."""
    from opencm.pbs.tokens import add_token

    info, secret = add_token(_existing(data), name)
    if as_json:
        emit_json({**info.public(), "token": secret})
    else:
        click.echo(secret)
        click.echo(f"token {info.id} ({info.name}) added; it is shown only now", err=True)


@token.command("list")
@DATA_OPTION
@JSON
def token_list(data: Path, as_json: bool) -> None:
    """List tokens (id, name, created), never their secrets."""
    from opencm.pbs.tokens import list_tokens

    rows = [t.public() for t in list_tokens(_existing(data))]
    if as_json:
        emit_json({"tokens": rows})
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['created']}  {row['name']}")


@token.command("revoke")
@DATA_OPTION
@click.argument("id_or_name")
def token_revoke(data: Path, id_or_name: str) -> None:
    """Revoke a token by id or name; uploads with it fail at once."""
    from opencm.pbs.tokens import revoke_token

    info = revoke_token(_existing(data), id_or_name)
    click.echo(f"token {info.id} ({info.name}) revoked")
