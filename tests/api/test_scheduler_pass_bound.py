"""A scheduler pass bounded in time (`Scheduler.max_pass_s`, as Slurm's bf_max_time bounds a backfill cycle):
it stops trying jobs when its time is up, the jobs it did not reach keep their reasons and wait for the next
full pass in queue order, and no quick pass over new jobs jumps them meanwhile."""

from __future__ import annotations

from tests.api.conftest import World
from tests.api.test_queue_live import show, state, submit, t4


class SteppingTimer:
    """A wall clock that moves on one second each time it is read."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        self.now_s += 1.0
        return self.now_s


def test_a_pass_stops_at_its_time_bound_and_the_next_full_pass_goes_on_in_queue_order(world: World) -> None:
    w = world
    w.register_node("prov1", "s1", "n1", devices=t4(4))
    jobs = [submit(w) for _ in range(4)]
    before = [show(w, j)["state_reason"] for j in jobs]
    w.scheduler.max_pass_s = 2.5
    w.scheduler.pass_timer = SteppingTimer()
    # The pass reads the timer once to set its bound (1 s + 2.5 s), then before each job: 2 s and 3 s are
    # within it, so two jobs are tried; at 4 s the pass stops.
    result = w.scheduler.place_pending()
    assert (result.placed, result.waiting) == (2, 2)
    assert [state(w, j) for j in jobs] == ["placed", "placed", "pending", "pending"]
    assert [show(w, j)["state_reason"] for j in jobs[2:]] == before[2:]  # not tried: not told anything new

    late = submit(w)  # a quick pass would place it ahead of the two older jobs the cut pass did not reach
    assert w.scheduler.place_pending(only_new=True).placed == 0
    assert state(w, late) == "pending"

    w.scheduler.max_pass_s = None  # unbounded: the two older jobs take the last two devices, in queue order
    assert w.scheduler.place_pending().placed == 2
    assert [state(w, j) for j in [*jobs, late]] == ["placed"] * 4 + ["pending"]

