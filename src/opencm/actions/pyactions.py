"""Python actions: callables registered in the ``opencm.actions`` entry-point group.

A Python action has the custom-action DLL contract ("Incorporating Custom Actions") in Python::

    def action(parent: None, instance: None, command_line: str, reserved: int) -> int:
        ...  # < 0 is a failure, shown as "Custom Action <Description> failed <value>"

It is named two ways in a profile:

- ``python:NAME [parameters]``: the entry point called ``NAME``;
- as the Linux replacement of a Windows DLL: ``dir\\cmroute.dll,SetRoutes …`` finds the entry
  point ``cmroute.SetRoutes`` (DLL stem in lower case, a dot, the entry point as written), when no
  ``cmroute.so`` lies beside the DLL.

They run in opencm's own process (they are trusted code installed like opencm itself), so they
cost a function call; the engine's timeout does not apply to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opencm.actions.api import RunContext

GROUP = "opencm.actions"

#: The connection a Python action runs for, while the engine calls it: built-in replacements
#: of Windows DLLs (``cmroute.SetRoutes``) need the link's interface, which the DLL contract's
#: four arguments cannot carry.
CURRENT_CONTEXT: ContextVar[RunContext | None] = ContextVar("opencm_action_context", default=None)

#: The signature of a Python action: (parent window, instance, command line, reserved) -> int.
PythonAction = Callable[[None, None, str, int], object]


def replacement_name(library_stem: str, entry: str) -> str:
    """The entry-point name that replaces ``<stem>.dll,<entry>`` on Linux."""
    return f"{library_stem.lower()}.{entry}"


class PythonActions:
    """The registered Python actions, discovered once and loaded on first use."""

    def __init__(self, registry: Mapping[str, PythonAction] | None = None) -> None:
        #: Given callables (tests, embedding) win over entry points of the same name.
        self._given = dict(registry or {})
        self._entry_points: dict[str, EntryPoint] | None = None
        self._loaded: dict[str, PythonAction] = {}

    def _discover(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in entry_points(group=GROUP)}
        return self._entry_points

    def has(self, name: str) -> bool:
        return name in self._given or name in self._discover()

    def load(self, name: str) -> PythonAction:
        """The callable registered as ``name``; raises LookupError when there is none."""
        if name in self._given:
            return self._given[name]
        if name not in self._loaded:
            entry_point = self._discover().get(name)
            if entry_point is None:
                raise LookupError(name)
            loaded = entry_point.load()
            if not callable(loaded):
                raise TypeError(f"entry point {name!r} ({entry_point.value}) is not callable")
            self._loaded[name] = loaded
        return self._loaded[name]
