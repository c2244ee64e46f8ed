"""One test per row of the transition table, and the table's own consistency."""

from __future__ import annotations

import itertools

import pytest

from opencm.profile.model import ConnectionType
from opencm.session.machine import (
    TRANSITIONS,
    Event,
    InvalidTransition,
    SessionMachine,
    State,
    Transition,
    find_transition,
)


def _type_for(row: Transition) -> ConnectionType:
    return next(kind for kind in ConnectionType if row.guard.admits(kind))


@pytest.mark.parametrize(
    "row", TRANSITIONS, ids=[f"{r.source}-{r.event}-{r.guard}->{r.target}" for r in TRANSITIONS]
)
def test_each_row_moves_the_machine(row: Transition) -> None:
    for kind in ConnectionType:
        if not row.guard.admits(kind):
            continue
        machine = SessionMachine(kind, state=row.source)
        seen: list[Transition] = []
        machine.subscribe(seen.append)
        assert machine.fire(row.event) is row
        assert machine.state is row.target
        assert seen == [row] == machine.history


def test_no_two_rows_compete_for_the_same_state_event_and_type() -> None:
    for state, event, kind in itertools.product(State, Event, ConnectionType):
        matching = [
            r
            for r in TRANSITIONS
            if r.source is state and r.event is event and r.guard.admits(kind)
        ]
        assert len(matching) <= 1, (state, event, kind, matching)


def test_every_state_is_reachable_from_pre_init() -> None:
    reached = {State.PRE_INIT}
    frontier = [State.PRE_INIT]
    while frontier:
        state = frontier.pop()
        for row in TRANSITIONS:
            if row.source is state and row.target not in reached:
                reached.add(row.target)
                frontier.append(row.target)
    assert reached == set(State)


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        (
            ConnectionType.DIRECT,
            [State.PRE_CONNECT, State.PRE_TUNNEL, State.TUNNELLING, State.POST_CONNECT],
        ),
        (
            ConnectionType.DIALUP,
            [State.PRE_CONNECT, State.PRE_DIAL, State.DIALING, State.POST_CONNECT],
        ),
        (
            ConnectionType.DOUBLE,
            [
                State.PRE_CONNECT,
                State.PRE_DIAL,
                State.DIALING,
                State.PRE_TUNNEL,
                State.TUNNELLING,
                State.POST_CONNECT,
            ],
        ),
    ],
)
def test_pre_dial_only_when_dialing_and_pre_tunnel_only_when_tunnelling(
    kind: ConnectionType, path: list[State]
) -> None:
    machine = SessionMachine(kind)
    machine.fire(Event.INIT_DONE)
    machine.fire(Event.CONNECT)
    visited = [machine.state]
    while machine.state is not State.CONNECTED:
        event = (
            Event.LINK_UP
            if machine.state in (State.DIALING, State.TUNNELLING)
            else (Event.ACTIONS_DONE)
        )
        machine.fire(event)
        visited.append(machine.state)
    assert visited == [*path, State.CONNECTED]


def test_invalid_event_is_a_clear_error_and_changes_nothing() -> None:
    machine = SessionMachine(ConnectionType.DIRECT, state=State.READY)
    with pytest.raises(InvalidTransition) as caught:
        machine.fire(Event.LINK_UP)
    assert str(caught.value) == (
        "event 'link-up' is not allowed in state 'ready' for a direct connection "
        "(allowed: connect, cancel)"
    )
    assert machine.state is State.READY
    assert machine.history == []


def test_pre_dial_is_unreachable_for_direct_and_cancel_when_idle_skips_on_cancel() -> None:
    direct = [r for r in TRANSITIONS if r.guard.admits(ConnectionType.DIRECT)]
    assert all(r.target is not State.PRE_DIAL for r in direct)
    idle = find_transition(State.READY, Event.CANCEL, ConnectionType.DIRECT)
    assert idle is not None and idle.target is State.DISCONNECTED
