"""The job state machine, declared as data.

Each transition names the states it leaves from and the one it enters, in the
shape of Prefect's orchestration rules, but without any database session.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"
    PLACED = "placed"
    STARTING = "starting"
    RUNNING = "running"
    PREEMPTING = "preempting"  # told to stop (spot capacity taken back); holds its devices until it stops
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset({JobState.PLACED, JobState.STARTING, JobState.RUNNING, JobState.PREEMPTING})


@dataclass(frozen=True)
class Transition:
    name: str
    from_states: frozenset[JobState]
    to_state: JobState


def _t(name: str, from_states: set[JobState], to_state: JobState) -> Transition:
    return Transition(name, frozenset(from_states), to_state)


S = JobState
TRANSITIONS: tuple[Transition, ...] = (
    _t("place", {S.PENDING}, S.PLACED),
    # The agent may report a later state first when a job is quick; that is allowed.
    _t("start", {S.PLACED}, S.STARTING),
    _t("run", {S.PLACED, S.STARTING}, S.RUNNING),
    _t("succeed", {S.PLACED, S.STARTING, S.RUNNING, S.PREEMPTING}, S.SUCCEEDED),
    _t("fail", {S.PLACED, S.STARTING, S.RUNNING, S.PREEMPTING}, S.FAILED),
    _t("cancel", {S.PENDING, S.PLACED, S.STARTING, S.RUNNING, S.PREEMPTING, S.LOST}, S.CANCELLED),
    _t("lose", {S.PLACED, S.STARTING, S.RUNNING, S.PREEMPTING}, S.LOST),
    # Interruptible work: a higher bid or an on-demand buyer takes the capacity back after a notice period.
    _t("preempt", {S.PLACED, S.STARTING, S.RUNNING}, S.PREEMPTING),
    _t("requeue", {S.LOST, S.PREEMPTING}, S.PENDING),
)
_BY_PAIR = {(src, t.to_state): t for t in TRANSITIONS for src in t.from_states}


class InvalidTransition(ValueError):
    """A state change the state machine does not declare."""


def transition(current: JobState, target: JobState) -> Transition:
    """The declared transition from `current` to `target`; raises InvalidTransition."""
    found = _BY_PAIR.get((current, target))
    if found is None:
        raise InvalidTransition(f"a job cannot go from {current} to {target}")
    return found


def can_transition(current: JobState, target: JobState) -> bool:
    """Whether the machine declares `current` -> `target`."""
    return (current, target) in _BY_PAIR
