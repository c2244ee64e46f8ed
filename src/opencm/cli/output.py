"""How commands print: JSON for scripts, short plain text for people."""

from __future__ import annotations

import json
from typing import Any

import click

from opencm.problems import Problem


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout (what ``--json`` promises)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False))


def warn(message: str) -> None:
    """Print a warning on stderr, where it never mixes with ``--json`` output."""
    click.echo(f"warning: {message}", err=True)


def warn_problem(problem: Problem) -> None:
    """Print a problem found in a file on stderr, rendered as every check renders it."""
    click.echo(str(problem), err=True)
