"""core.scheduling_pass.decide_pass: the one decision loop of the live scheduler and the simulator."""

from __future__ import annotations

from computegrid.core.backfill import NEVER_MS
from computegrid.core.deferral import StartPlan
from computegrid.core.placement import Placement, PlacementFailure, PlacementRequest, get_policy
from computegrid.core.placement.base import RttTable
from computegrid.core.pool import NodeAllocation, PoolSnapshot
from computegrid.core.scheduling_pass import PassDecisions, Placed, decide_pass, deferral_reason, shown_time
from tests.core._helpers import devices, make_pool, node

NOW = 1_800_000_000_000
HOUR = 3_600_000


def t4(count: int) -> PlacementRequest:
    return PlacementRequest(models=frozenset({"T4"}), milli_per_node=1000 * count)


class CountingPolicy:
    """First fit, counting the placements it is asked for."""

    name = "first-fit"

    def __init__(self) -> None:
        self.inner = get_policy("first-fit")
        self.calls = 0

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        self.calls += 1
        return self.inner.place(pool, req, rtt)


def busy(pool: PoolSnapshot, node_id: int, indices: tuple[int, ...]) -> None:
    pool.allocate([NodeAllocation(node_id, indices, 1000, 1000, 1024)])


def test_the_head_gets_a_reservation_that_admits_a_short_backfill_and_refuses_a_long_one() -> None:
    # n1: 2 of 4 devices busy for an hour; n2: 2 of 4 busy with no time limit (never frees them).
    pool = make_pool([node(1), node(2)], [*devices(1, "T4", 4), *devices(2, "T4", 4)])
    busy(pool, 1, (0, 1))
    busy(pool, 2, (0, 1))
    head, long_job, short_job = 10, 11, 12
    limits = {head: HOUR, long_job: 2 * HOUR, short_job: HOUR // 2}
    decided = decide_pass(order=[head, long_job, short_job],
                          requests={head: t4(4), long_job: t4(2), short_job: t4(2)},
                          pool=pool, policy=get_policy("first-fit"), now_ms=NOW, backfill=True,
                          limits=lambda j: (limits[j], None), running=[(NOW + HOUR, [(0, 2)])])

    assert decided.head == head
    assert decided.reservation is not None and decided.reservation.start_ms == NOW + HOUR
    assert decided.waiting[head].startswith("waiting: ")
    assert decided.waiting[head].endswith(f"; next in line, reserved to start by {shown_time(NOW + HOUR)}")
    # The 2-hour job would take n1's devices past the head's start; the 30-minute one ends before it.
    assert decided.waiting[long_job] == (f"waiting: job {head} is next, reserved to start by "
                                         f"{shown_time(NOW + HOUR)}; starting this job now would delay it")
    assert [(p.job_id, p.placement.allocations[0].node_id, p.end_ms) for p in decided.placed] == \
        [(short_job, 1, NOW + HOUR // 2)]
    assert int(pool.free_whole[0]) == 0  # the pool holds the placement


def test_without_backfill_no_head_is_chosen_and_later_jobs_take_what_fits() -> None:
    pool = make_pool([node(1)], devices(1, "T4", 4))
    busy(pool, 1, (0, 1))
    decided = decide_pass(order=[1, 2], requests={1: t4(4), 2: t4(2)}, pool=pool,
                          policy=get_policy("first-fit"), now_ms=NOW, backfill=False)
    assert decided.head is None and decided.reservation is None
    assert [p.job_id for p in decided.placed] == [2] and decided.placed[0].end_ms == NEVER_MS


def test_a_deferred_job_waits_for_its_planned_start_then_goes_to_its_planned_site() -> None:
    pool = make_pool([node(1, site="s1"), node(2, site="s2")], [*devices(1, "T4", 4), *devices(2, "T4", 4)])
    plan = StartPlan(start_ms=NOW + HOUR, site="s2", band="off-peak", latest_start_ms=NOW + 5 * HOUR, cost=1,
                     cost_now=2)

    def pass_at(now_ms: int) -> PassDecisions:
        return decide_pass(order=[7], requests={7: t4(2)}, pool=pool, policy=get_policy("first-fit"), now_ms=now_ms,
                           backfill=True, plans={7: plan})

    before = pass_at(NOW)
    assert before.placed == [] and before.deferred == [7]
    assert before.waiting == {7: deferral_reason(plan)}
    assert before.head is None  # a deferred job is not the head
    assert int(pool.free_whole.sum()) == 8

    after = pass_at(NOW + HOUR)
    assert [(p.job_id, p.site) for p in after.placed] == [(7, "s2")]  # first fit alone would pick s1's node
    assert after.waiting == {} and after.deferred == []


def test_a_request_that_failed_is_not_tried_again_in_the_pass_unless_the_job_has_a_plan() -> None:
    pool = make_pool([node(1)], devices(1, "T4", 2))
    policy = CountingPolicy()
    too_big = t4(4)
    plan = StartPlan(start_ms=NOW, site="s1", band=None, latest_start_ms=NOW + HOUR, cost=1, cost_now=1)
    decided = decide_pass(order=[1, 2, 3, 4], requests={1: too_big, 2: t4(4), 3: too_big, 4: too_big}, pool=pool,
                          policy=policy, now_ms=NOW, backfill=False, plans={4: plan})
    # jobs 1-3 share one failure (equal requests); job 4, with a plan, tries its site then anywhere (2 calls)
    assert policy.calls == 1 + 2
    assert set(decided.waiting) == {1, 2, 3, 4}
    assert decided.waiting[1] == decided.waiting[2] == decided.waiting[3]
    assert decided.waiting[1].startswith("waiting: ")


def test_the_time_bound_stops_the_pass_and_leaves_the_rest_undecided() -> None:
    pool = make_pool([node(1)], devices(1, "T4", 8))
    checks = iter([False, False, True])
    decided = decide_pass(order=[1, 2, 3, 4], requests={j: t4(1) for j in (1, 2, 3, 4)}, pool=pool,
                          policy=get_policy("first-fit"), now_ms=NOW, backfill=True,
                          out_of_time=lambda: next(checks))
    assert [p.job_id for p in decided.placed] == [1, 2]
    assert decided.cut and decided.not_tried == 2
    assert decided.waiting == {}
    assert int(pool.free_whole[0]) == 6


def test_the_market_hook_takes_its_jobs_and_they_never_become_the_head() -> None:
    pool = make_pool([node(1)], devices(1, "T4", 2))
    said: dict[int, bool | str] = {1: "waiting for a spot round (interruptible): its bid joins the next round", 2: True}
    given: list[int] = []

    def on_placed(placed: Placed) -> list[int]:
        given.append(placed.job_id)
        return []

    requests: dict[int, PlacementRequest | str] = {1: t4(4), 2: t4(4), 3: t4(2), 4: "stored spec no longer valid: x"}
    decided = decide_pass(order=[1, 2, 3, 4], requests=requests, pool=pool, policy=get_policy("first-fit"),
                          now_ms=NOW, backfill=True, market=lambda j, req: said.get(j), on_placed=on_placed)
    assert decided.waiting[1] == said[1]
    assert decided.market_placed == 1
    assert [p.job_id for p in decided.placed] == [3] and given == [3]
    assert decided.waiting[4] == "waiting: stored spec no longer valid: x"
    assert decided.head is None  # neither a market job nor an unparseable spec heads the queue
