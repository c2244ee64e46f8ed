"""Property: releases made by the workspace from any edit history carry deltas that turn each
base in the window into exactly the full book (POP and region edits, renumbering included)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from opencm.errors import OpencmError
from opencm.phonebook.cabinet import read_cab
from opencm.phonebook.release import Snapshot, build_release, delta_bases
from opencm.phonebook.update import apply_update, installed_version
from opencm.phonebook.workspace import Workspace
from tests.phonebook.conftest import make_keys
from tests.phonebook.strategies import pops

KEYS = make_keys()

operation = st.one_of(
    st.tuples(
        st.just("add"),
        # Cut to PBA's field limits, which the workspace enforces.
        pops(st.integers(1, 40)).map(
            lambda p: replace(p, region=p.region % 4, name=p.name[:30], area=p.area[:10])
        ),
    ),
    st.tuples(st.just("delete"), st.integers(1, 40)),
    st.tuples(st.just("rename"), st.integers(1, 40)),
    st.tuples(st.just("region+"), st.integers(0, 99)),
    st.tuples(st.just("region-"), st.integers(1, 4)),
)


def run(ws: Workspace, op: str, arg: object) -> None:
    try:
        if op == "add":
            ws.add_pop("W", arg)  # type: ignore[arg-type]
        elif op == "delete":
            ws.delete_pop("W", arg)  # type: ignore[arg-type]
        elif op == "rename":
            ws.edit_pop("W", arg, name=f"renamed {arg}")  # type: ignore[arg-type]
        elif op == "region+":
            ws.add_region("W", f"R{arg}")
        elif op == "region-":
            ws.delete_region("W", str(arg), force=True)
        else:
            raise AssertionError(op)
    except OpencmError:
        pass  # refused operations (duplicates, missing POPs) leave the book as it was


def build(snapshot: Snapshot, previous: dict[int, Snapshot]) -> dict[str, bytes]:
    return build_release("W", snapshot, previous, KEYS.secret)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(operation, max_size=8), min_size=2, max_size=9))
def test_workspace_release_deltas_rebuild_the_full_book(
    change_sets: list[list[tuple[str, object]]],
) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        with Workspace(root / "ws") as ws:
            ws.create_book("W")
            fulls: dict[int, bytes] = {}
            for number, change_set in enumerate(change_sets):
                for op, arg in change_set:
                    run(ws, op, arg)
                ws.add_region("W", f"Set{number}")  # every change set changes something
                ws.add_release("W", build)
                version = ws.book("W").version
                fulls[version] = ws.release_files("W", version)["full.cab"]
            latest = ws.book("W").version
            assert latest == len(change_sets)
            files = ws.release_files("W", latest)
        expected = read_cab(files["full.cab"])
        for base in delta_bases(latest):
            client = root / f"client{base}"
            apply_update(client, "W", fulls[base], kind="full", base=None, version=base)
            apply_update(
                client, "W", files[f"delta-{base}.cab"], kind="delta", base=base, version=latest
            )
            assert installed_version(client, "W") == latest
            for name, data in expected.items():
                assert (client / name).read_bytes() == data
