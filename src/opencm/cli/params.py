"""The parameter types and options that commands spell the same way, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

_F = TypeVar("_F", bound=Callable[..., Any])

#: A path that need not exist yet (an output, or one the command checks itself).
PATH = click.Path(path_type=Path)
#: An existing file.
FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def json_option(help: str = "Print JSON for scripts.") -> Callable[[_F], _F]:
    """``--json`` (the ``as_json`` parameter), which every command a script reads offers."""
    return click.option("--json", "as_json", is_flag=True, help=help)


#: ``--json`` with the usual help.
JSON = json_option()
