"""``opencm pbs export``: the publish store as a static tree plus the nginx routing that serves it.

An answer depends only on (book, client version), so nginx can give every answer opencm's own
server gives, byte for byte, without Python in the hot path. What nginx needs is written here:

``OUT/generations/<N>/files/<BOOK>/full.cab, delta-<B>.cab``
    the cabs of each book's current release (hard links into the store when it is on the same
    file system, copies otherwise);
``OUT/generations/<N>/pbs-maps.conf``
    ``map`` blocks: the request rules of :mod:`opencm.pbs.query` (the same regular expressions),
    the book name in any case (nginx's ``map`` compares plain strings without regard to case),
    the version rule, and every answer's headers from :mod:`opencm.pbs.answers`;
``OUT/generations/<N>/pbs-server.conf``
    the ``location`` blocks of the ``server``;
``OUT/current``
    a symbolic link to the newest generation, replaced by rename;
``OUT/nginx/opencm-pbs.conf``
    what an existing nginx includes in its ``http`` block (the maps and a ``server``);
``OUT/nginx/nginx.conf``
    a complete configuration, ``nginx -p OUT/nginx -c nginx.conf``, everything inside OUT/nginx.

Atomic releases: a generation directory is complete before ``current`` moves, and nginx reads it
only when it (re)loads its configuration (``nginx -s reload``): the included files name the
generation's absolute path, so every nginx worker answers from one whole generation, old workers
finish with the old one, and generations are kept (``--keep``) long enough for that.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from opencm.errors import InputError
from opencm.fsutil import atomic_write, fsync_dir
from opencm.pbs.answers import (
    ETAG_MATCH,
    METHOD_NOT_ALLOWED,
    NOT_A_PBS_PATH,
    Answer,
    unknown_book_text,
)
from opencm.pbs.catalog import BookTable, load_table
from opencm.pbs.openapi import openapi_document
from opencm.pbs.query import BOOK_VALUE, MAX_QUERY_BYTES, RULES, VERSION_VALUE
from opencm.phonebook import store

GENERATIONS = "generations"
CURRENT_LINK = "current"
SNIPPET = "opencm-pbs.conf"
#: The request Connection Manager sends, field for field: no rule can refuse it, so nginx
#: answers it with one expression instead of trying every rule.
FAST_PATH = (
    "^osarch=[0-9]{1,32}&ostype=[0-9]{1,32}&osver=[0-9]{1,32}&cmver=[0-9]{1,32}"
    "&lcid=[0-9]{1,32}&pbver=[0-9]{1,9}&pb=(?=[^&]*[A-Za-z_])[A-Za-z0-9_]{1,8}$"
)
#: ``C:V`` where V < C, both decimal without leading zeros: V has fewer digits, or the same
#: number and is smaller at the first digit that differs (PCRE recursion compares the lengths).
_OLDER = (
    "^[0-9]+([0-9](?1)[0-9]|:)$",
    "^(?=([0-9](?1)[0-9]|:)$)([0-9]*)(?:"
    + "|".join(f"{d}[0-9]*:\\2[0-{d - 1}]" for d in range(1, 10))
    + ")",
)


@dataclass(frozen=True)
class ExportResult:
    generation: Path
    books: dict[str, int]
    snippet: Path
    standalone: Path


def _q(text: str | bytes) -> str:
    """A quoted nginx configuration string."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _header(answer: Answer, name: bytes) -> str:
    for key, value in answer.headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _map(source: str, variable: str, entries: Iterable[tuple[str, str]], default: str) -> str:
    lines = [f"map {_q(source)} ${variable} {{", f"    default {_q(default)};"]
    lines += [f"    {key} {value};" for key, value in entries]
    return "\n".join([*lines, "}", ""])


def _cab_targets(table: BookTable) -> list[tuple[str, Answer]]:
    targets = [(f"cab/{table.book}/full.cab", table.full)]
    targets += [
        (f"cab/{table.book}/delta-{base}.cab", answer) for base, answer in table.deltas.items()
    ]
    return targets


def render_maps(tables: dict[str, BookTable]) -> str:
    """Every ``map`` the server block relies on (variables prefixed ``opencm_pbs_``)."""
    # nginx tries no expression on an empty value: the default answers the bare request (rule 1),
    # and a query no rule refuses ends at the last expression.
    assert RULES[0].pattern == "^$"
    rules = [(_q("~*" + FAST_PATH), '""')]
    rules += [(_q("~*" + rule.pattern), str(i)) for i, rule in enumerate(RULES, start=1)]
    rules.append(('"~."', '""'))
    parts = [
        "# Written by `opencm pbs export`; do not edit (the next export replaces it).",
        "map_hash_max_size 65536;",
        "map_hash_bucket_size 128;",
        "",
        _map("$args", "opencm_pbs_rule", rules, "1"),
        _map(
            "$opencm_pbs_rule",
            "opencm_pbs_error_status",
            [(str(i), str(r.error.status)) for i, r in enumerate(RULES, start=1)],
            "",
        ),
        _map(
            "$opencm_pbs_rule",
            "opencm_pbs_error_text",
            [(str(i), _q(r.error.body)) for i, r in enumerate(RULES, start=1)],
            "",
        ),
        _map("$args", "opencm_pbs_pb", [(_q("~*" + BOOK_VALUE), "$1")], ""),
        _map("$args", "opencm_pbs_v", [(_q("~*" + VERSION_VALUE), "$1")], ""),
        # Plain strings in a map are compared without regard to case: any spelling finds it.
        _map("$opencm_pbs_pb", "opencm_pbs_book", [(b, b) for b in sorted(tables)], ""),
        _map(
            "$opencm_pbs_book",
            "opencm_pbs_current",
            [(b, str(t.version)) for b, t in sorted(tables.items())],
            "",
        ),
        _map(
            "$opencm_pbs_current:$opencm_pbs_v",
            "opencm_pbs_older",
            [(_q("~" + pattern), "1") for pattern in _OLDER],
            "0",
        ),
    ]
    targets: list[tuple[str, str]] = [
        (_q("~^([^:]+):[^:]*:0:"), "none/$1"),
        (_q("~^([^:]+):([0-9]+):1:"), "cab/$1/full.cab"),
    ]
    answers: list[tuple[str, Answer]] = []
    for book, table in sorted(tables.items()):
        answers.append((f"none/{book}", table.none))
        for target, answer in _cab_targets(table):
            answers.append((target, answer))
            if answer is not table.full:
                base = target.rsplit("-", 1)[1].removesuffix(".cab")
                if table.decide(int(base)) is answer:
                    targets.append((_q(f"{book}:{table.version}:1:{base}"), _q(target)))
    parts.append(
        _map(
            "$opencm_pbs_book:$opencm_pbs_current:$opencm_pbs_older:$opencm_pbs_v",
            "opencm_pbs_target",
            targets,
            "",
        )
    )
    header_maps = {
        "etag": b"etag",
        "kind": b"x-opencm-pbs-kind",
        "bookname": b"x-opencm-pbs-book",
        "version": b"x-opencm-pbs-version",
        "base": b"x-opencm-pbs-base",
        "signature": b"x-opencm-pbs-signature",
        "disposition": b"content-disposition",
    }
    for variable, header in header_maps.items():
        entries = [(_q(t), _q(_header(a, header))) for t, a in answers if _header(a, header)]
        parts.append(_map("$opencm_pbs_target", f"opencm_pbs_{variable}", entries, ""))
    parts.append(
        _map(
            "$opencm_pbs_etag|$http_if_none_match",
            "opencm_pbs_not_modified",
            [(_q("~" + ETAG_MATCH), "1")],
            "",
        )
    )
    return "\n".join(parts)


def _pbs_headers() -> str:
    names = {
        "ETag": "etag",
        "Cache-Control": None,
        "X-Opencm-Pbs-Kind": "kind",
        "X-Opencm-Pbs-Book": "bookname",
        "X-Opencm-Pbs-Version": "version",
        "X-Opencm-Pbs-Base": "base",
    }
    lines = []
    for header, variable in names.items():
        value = '"public, no-cache"' if variable is None else f"$opencm_pbs_{variable}"
        lines.append(f"        add_header {header} {value};")
    return "\n".join(lines)


def render_server(generation: Path) -> str:
    """The inside of the ``server`` block for one generation."""
    status_ifs = "\n".join(
        f"        if ($opencm_pbs_error_status = {code}) "
        f"{{ return {code} $opencm_pbs_error_text; }}"
        for code in sorted({rule.error.status for rule in RULES})
    )
    not_found = bytes(NOT_A_PBS_PATH.body)
    method = bytes(METHOD_NOT_ALLOWED.body)
    unknown = unknown_book_text("$opencm_pbs_pb")
    too_long = next(r.error.body for r in RULES if r.error.status == 414)
    return f"""# Written by `opencm pbs export` for {generation}; do not edit.
    server_tokens off;
    etag off;
    if_modified_since off;
    max_ranges 0;
    charset off;
    default_type "text/plain; charset=utf-8";
    large_client_header_buffers 4 {max(8, (MAX_QUERY_BYTES * 2) // 1024)}k;
    error_page 404 = @opencm_pbs_not_found;
    error_page 414 /.opencm-pbs/too-long;

    location @opencm_pbs_not_found {{ return 404 {_q(not_found)}; }}
    location = /.opencm-pbs/too-long {{ internal; return 414 {_q(too_long)}; }}
    location / {{ return 404 {_q(not_found)}; }}

    location ~* ^/pbserver/pbserver\\.dll$ {{
        if ($request_method !~ ^(GET|HEAD)$) {{
            add_header Allow "GET, HEAD" always;
            return 405 {_q(method)};
        }}
        if ($opencm_pbs_rule) {{ rewrite ^ /.opencm-pbs/error last; }}
        if ($opencm_pbs_book = "") {{ rewrite ^ /.opencm-pbs/unknown last; }}
        rewrite ^ /.opencm-pbs/$opencm_pbs_target last;
    }}
    location = /.opencm-pbs/error {{
        internal;
{status_ifs}
        return 400 "Bad Request\\n";
    }}
    location = /.opencm-pbs/unknown {{
        internal;
        return 404 {_q(unknown)};
    }}
    location ^~ /.opencm-pbs/none/ {{
        internal;
{_pbs_headers()}
        if ($opencm_pbs_not_modified) {{ return 304; }}
        return 204;
    }}
    location ^~ /.opencm-pbs/cab/ {{
        internal;
        alias {generation}/files/;
        types {{ }}
        default_type application/vnd.ms-cab-compressed;
        add_header Content-Disposition $opencm_pbs_disposition;
{_pbs_headers()}
        add_header X-Opencm-Pbs-Signature $opencm_pbs_signature;
        if ($opencm_pbs_not_modified) {{ return 304; }}
    }}
    location = /healthz {{
        alias {generation}/healthz.json;
        default_type application/json;
    }}
    location = /openapi.json {{
        alias {generation}/openapi.json;
        default_type application/json;
    }}
"""


def render_snippet(out: Path, listen: str) -> str:
    current = out / CURRENT_LINK
    return f"""# opencm Phone Book Service, exported by `opencm pbs export` (docs/pbs-deploy.md).
# Include this file in nginx's http block. After a new export, `nginx -s reload`.
include {current}/pbs-maps.conf;
server {{
    listen {listen};
    include {current}/pbs-server.conf;
}}
"""


def render_standalone(out: Path) -> str:
    return f"""# A complete nginx configuration for the export: nginx -p {out}/nginx -c nginx.conf
# (runs in the foreground; pid, logs and temporary files stay inside {out}/nginx).
daemon off;
worker_processes auto;
pid nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log logs/access.log combined;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_header_timeout 10s;
    keepalive_timeout 30s;
    open_file_cache max=20000 inactive=60s;
    include {SNIPPET};
}}
"""


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    os.chmod(target, 0o644)


def _next_generation(out: Path) -> Path:
    root = out / GENERATIONS
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    return root / f"{max(numbers, default=0) + 1:06d}"


def _write(path: Path, text: str) -> None:
    atomic_write(path, text.encode(), mode=0o644)


def export(data: Path, out: Path, *, listen: str = "127.0.0.1:8080", keep: int = 5) -> ExportResult:
    """Write a new generation of the static tree and make it current."""
    if not data.is_dir():
        raise InputError("no such folder (the publish store)", path=data)
    out = out.resolve()
    tables: dict[str, BookTable] = {}
    for folder in store.list_books(data):
        table = load_table(data, folder)  # checks every file against release.json
        if table is None:
            continue
        if table.book in tables:
            raise InputError(f"two folders spell the book {table.book}", path=data / folder)
        tables[table.book] = table
    generation = _next_generation(out)
    incoming = generation.with_name(f".incoming-{generation.name}")
    shutil.rmtree(incoming, ignore_errors=True)
    (incoming / "files").mkdir(parents=True)
    for folder in store.list_books(data):
        release = store.load_current(data, folder)
        if release is None:
            continue
        book_dir = incoming / "files" / folder.upper()
        book_dir.mkdir()
        for artifact in (release.full, *release.deltas.values()):
            _link_or_copy(release.path(artifact), book_dir / artifact.file)
    books = {book: table.version for book, table in sorted(tables.items())}
    health = {"status": "ok", "books": books, "problems": {}}
    _write(incoming / "healthz.json", json.dumps(health))
    _write(incoming / "openapi.json", json.dumps(openapi_document()))
    _write(incoming / "pbs-maps.conf", render_maps(tables))
    _write(incoming / "pbs-server.conf", render_server(generation))
    for directory in [incoming, *incoming.rglob("*")]:
        if directory.is_dir():
            os.chmod(directory, 0o755)
    os.rename(incoming, generation)
    fsync_dir(generation.parent)
    link = out / CURRENT_LINK
    temporary = out / f".{CURRENT_LINK}.new"
    temporary.unlink(missing_ok=True)
    os.symlink(generation.relative_to(out), temporary)
    os.replace(temporary, link)  # the switch: one rename
    fsync_dir(out)
    nginx_dir = out / "nginx"
    for sub in ("logs", "tmp"):
        (nginx_dir / sub).mkdir(parents=True, exist_ok=True)
    _write(nginx_dir / SNIPPET, render_snippet(out, listen))
    _write(nginx_dir / "nginx.conf", render_standalone(out))
    _prune(out / GENERATIONS, keep, generation)
    return ExportResult(generation, books, nginx_dir / SNIPPET, nginx_dir / "nginx.conf")


def check_listen(listen: str) -> str:
    """``HOST:PORT`` (or ``[V6]:PORT``) with a port nginx accepts."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{listen!r} is not HOST:PORT", field="--listen")
    if any(c in listen for c in " ;{}\"'\\\n"):
        raise InputError(f"{listen!r} contains characters nginx would misread", field="--listen")
    return listen


def reload_nginx(pid_file: Path) -> None:
    """Ask a running nginx (by its pid file) to reload: it then serves the new generation."""
    try:
        pid = int(pid_file.read_text("ascii").strip())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read an nginx pid from it ({error})", path=pid_file) from error
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as error:
        raise InputError(f"no nginx runs with pid {pid}", path=pid_file) from error


def _prune(root: Path, keep: int, current: Path) -> None:
    """Remove all but the newest ``keep`` generations (older nginx workers may still use them)."""
    numbered = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: p.name)
    for old in numbered[: max(0, len(numbered) - keep)]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
