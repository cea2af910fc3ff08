"""core/jobs/states.py: the declared job state machine."""

from __future__ import annotations

import itertools

import pytest

from computegrid.core.jobs import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    JobState,
    Transition,
    can_transition,
    transition,
)

S = JobState
DECLARED = {(src, t.to_state) for t in TRANSITIONS for src in t.from_states}
ALL_PAIRS = list(itertools.product(JobState, JobState))


@pytest.mark.parametrize(("src", "dst"), sorted(DECLARED))
def test_every_declared_transition_is_allowed(src, dst):
    assert can_transition(src, dst)
    found = transition(src, dst)
    assert isinstance(found, Transition)
    assert src in found.from_states and found.to_state == dst


@pytest.mark.parametrize(("src", "dst"), [p for p in ALL_PAIRS if p not in DECLARED])
def test_every_undeclared_pair_is_refused(src, dst):
    assert not can_transition(src, dst)
    with pytest.raises(InvalidTransition, match=f"from {src} to {dst}"):
        transition(src, dst)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_have_no_way_out(terminal):
    for target in JobState:
        assert not can_transition(terminal, target)
        with pytest.raises(InvalidTransition):
            transition(terminal, target)


def test_terminal_and_active_sets():
    assert frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED}) == TERMINAL_STATES
    assert frozenset({S.PLACED, S.STARTING, S.RUNNING, S.PREEMPTING}) == ACTIVE_STATES
    assert not TERMINAL_STATES & ACTIVE_STATES


def test_every_terminal_state_is_reachable_from_every_active_state():
    for active in ACTIVE_STATES:
        for terminal in TERMINAL_STATES:
            assert can_transition(active, terminal), (active, terminal)


def test_lost_can_be_requeued_or_cancelled():
    assert transition(S.LOST, S.PENDING).name == "requeue"
    assert transition(S.LOST, S.CANCELLED).name == "cancel"


def test_pending_cannot_jump_to_running():
    assert not can_transition(S.PENDING, S.RUNNING)
    with pytest.raises(InvalidTransition):
        transition(S.PENDING, S.RUNNING)


def test_quick_jobs_may_skip_starting():
    assert transition(S.PLACED, S.RUNNING).name == "run"
    assert transition(S.PLACED, S.SUCCEEDED).name == "succeed"


def test_no_self_transitions():
    for state in JobState:
        assert not can_transition(state, state)


def test_transition_names_are_unique_and_pairs_unambiguous():
    names = [t.name for t in TRANSITIONS]
    assert len(names) == len(set(names))
    pairs = [(src, t.to_state) for t in TRANSITIONS for src in t.from_states]
    assert len(pairs) == len(set(pairs))


def test_happy_path():
    state = S.PENDING
    for target in (S.PLACED, S.STARTING, S.RUNNING, S.SUCCEEDED):
        state = transition(state, target).to_state
    assert state == S.SUCCEEDED


def test_states_are_their_string_values():
    assert S("lost") is S.LOST
    assert str(S.RUNNING) == "running"


def test_invalid_transition_is_a_value_error():
    assert issubclass(InvalidTransition, ValueError)
