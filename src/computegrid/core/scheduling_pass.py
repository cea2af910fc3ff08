"""One scheduling pass: the decision loop the live scheduler and the simulator both run.

`decide_pass` walks the pending jobs in queue order (`core.queueing` made it) and decides, for each:
- **deferred**: it has a start plan (`core.deferral`) whose start has not come; it waits, saying why;
- **market**: an optional hook (the live service's spot and reserved capacity) takes the job, places it or
  says why it waits; such a job is never checked against the head's reservation;
- **placed**: the placement policy fits it (a job whose planned start has come tries its planned site first,
  `core.backfill.place_preferring`), and, with a reservation held, `Reservation.admits` it or its deadline is
  due (`core.backfill.deadline_due`). The pool snapshot is allocated as it places;
- **waiting**: it does not fit, or would delay the head. With a backfilling queue, the first job that does
  not fit is the head and gets the EASY reservation (`core.backfill.head_reservation`).
A request that failed is not tried again in the pass (capacity only shrinks within it); a job with a start plan
is always tried, as it may fit its planned site. An optional check stops the pass early (a time bound, as
Slurm's bf_max_time): the jobs not reached are left undecided.

Pure: time (`now_ms`, epoch ms) and the time bound come in as arguments. Services/scheduler.py persists
the decisions; sim/live_queue.py replays them as runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from computegrid.core.backfill import (
    NEVER_MS,
    deadline_due,
    expected_end_ms,
    head_reservation,
    place_preferring,
    placement_parts,
    whole_release,
)
from computegrid.core.deferral import StartPlan
from computegrid.core.placement.base import Placement, PlacementFailure, PlacementPolicy, PlacementRequest, RttTable
from computegrid.core.pool import PoolSnapshot
from computegrid.core.queueing import Release, Reservation

SHOWN_OFFSET = timezone(timedelta(hours=8), "UTC+8")  # reasons show China Standard Time, as bills do

# A job's market path (live: spot leases and reservations): None when the job takes on-demand capacity;
# a string when it waits (the reason); True when it was placed, False when its placement was dropped at commit.
MarketHook = Callable[[int, PlacementRequest], "bool | str | None"]
# Called with each on-demand placement as it is made; returns the job ids (among all placed so far) whose
# placements were given back meanwhile (their devices already released from the pool), e.g. at a commit.
OnPlaced = Callable[["Placed"], Sequence[int]]


def shown_time(ms: int) -> str:
    """`ms` (epoch ms) as 'YYYY-MM-DD HH:MM UTC+8'."""
    return datetime.fromtimestamp(ms / 1000, SHOWN_OFFSET).strftime("%Y-%m-%d %H:%M UTC+8")


def deferral_reason(plan: StartPlan) -> str:
    """Why a job waits: e.g. 'deferred to 2026-12-30 23:00 UTC+8 (off-peak) at s2; must start by ...'."""
    band = f" ({plan.band})" if plan.band else ""
    return (f"deferred to {shown_time(plan.start_ms)}{band} at {plan.site}, where the run costs least; "
            f"must start by {shown_time(plan.latest_start_ms)} to meet its deadline")


@dataclass(frozen=True, slots=True)
class Placed:
    """An on-demand placement: the job, where (its first node's site), and when it is expected to end (epoch
    ms: now + time limit, `NEVER_MS` without one)."""

    job_id: int
    placement: Placement
    site: str
    end_ms: int


@dataclass
class PassDecisions:
    """What a pass decided. `waiting`: job id -> reason, for every job tried that did not start (deferred ones
    included); `deferred`: the jobs among them waiting for their planned start; `head`/`reservation`: the
    blocked head and its reservation (None: none); `not_tried`: jobs the time bound left undecided;
    `market_placed`: jobs the market hook placed."""

    placed: list[Placed] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)
    deferred: list[int] = field(default_factory=list)
    head: int | None = None
    reservation: Reservation | None = None
    not_tried: int = 0
    market_placed: int = 0

    @property
    def cut(self) -> bool:
        """Whether the time bound stopped the pass before every job was tried."""
        return self.not_tried > 0


def _no_limits(_job_id: int) -> tuple[int | None, int | None]:
    return None, None


def decide_pass(*, order: Sequence[int], requests: Mapping[int, PlacementRequest | str], pool: PoolSnapshot,
                policy: PlacementPolicy, now_ms: int, backfill: bool,
                plans: Mapping[int, StartPlan | None] | None = None,
                limits: Callable[[int], tuple[int | None, int | None]] = _no_limits,
                running: Sequence[Release] = (), rtt: RttTable | None = None,
                out_of_time: Callable[[], bool] | None = None, market: MarketHook | None = None,
                on_placed: OnPlaced | None = None) -> PassDecisions:
    """Decide `order` (job ids, queue order) against `pool` (allocated in place as jobs are placed).

    - `requests[job]`: its placement request, or why its stored spec cannot run (it waits with that reason);
    - `plans[job]`: its start plan (`core.deferral.plan_start`), if any;
    - `limits(job)`: its (time limit, latest start), ms, each None when not known;
    - `running`: the running jobs' whole devices as releases (expected end ms, [(node row, devices)]), end order;
    - `backfill`: whether the blocked head gets a reservation that later jobs must not delay (False also for a
      pass that plans none, e.g. a pass over new jobs only);
    - `out_of_time()`: checked before each job; True stops the pass (the rest count in `not_tried`);
    - `market(job, request)`: see `MarketHook`; `on_placed(placed)`: see `OnPlaced`.
    Reasons are worded for the job's `state_reason`.
    """
    plans = plans if plans is not None else {}
    out = PassDecisions()
    started: dict[int, Release] = {}  # whole devices placed in this pass, by expected end (for the head's plan)
    failed: dict[PlacementRequest, PlacementFailure] = {}
    said: dict[int, tuple[object, str]] = {}  # by the outcome's identity (kept alive here): its waiting text
    reservation: Reservation | None = None
    for tried, job_id in enumerate(order):
        if out_of_time is not None and out_of_time():
            out.not_tried = len(order) - tried
            break
        req = requests[job_id]
        plan = plans.get(job_id)
        if plan is not None and now_ms < plan.start_ms:
            out.waiting[job_id] = deferral_reason(plan)
            out.deferred.append(job_id)
            continue
        if market is not None and not isinstance(req, str):
            taken = market(job_id, req)
            if isinstance(taken, str):
                out.waiting[job_id] = taken
                continue
            if taken is not None:
                out.market_placed += taken
                continue
        outcome: Placement | PlacementFailure | str
        if isinstance(req, str):
            outcome = req
        else:
            known = failed.get(req) if plan is None else None
            outcome = known if known is not None else policy.place(pool, req, rtt) if plan is None \
                else place_preferring(policy, pool, req, plan.site, rtt)
            if isinstance(outcome, PlacementFailure) and plan is None:
                failed[req] = outcome
        if isinstance(outcome, Placement):
            end, latest = NEVER_MS, None
            if backfill:
                limit, latest = limits(job_id)
                end = expected_end_ms(now_ms, limit)
            if reservation is not None:
                parts = placement_parts(pool, outcome)
                if not reservation.admits(end, parts) and not deadline_due(latest, now_ms):
                    out.waiting[job_id] = (f"waiting: job {reservation.job_id} is next, reserved to start by "
                                           f"{shown_time(reservation.start_ms)}; starting this job now would delay it")
                    continue
                reservation.take(end, parts)
            pool.allocate(outcome.allocations)
            if backfill and end < NEVER_MS:  # no time limit: never ends
                started[job_id] = whole_release(pool, outcome, end)
            placed = Placed(job_id, outcome, str(pool.site[pool.node_row[outcome.allocations[0].node_id]]), end)
            out.placed.append(placed)
            if on_placed is not None:
                for given_back in on_placed(placed):
                    started.pop(given_back, None)
            continue
        shown = said.get(id(outcome))
        if shown is None:
            shown = said[id(outcome)] = (outcome, f"waiting: {outcome}")
        reason = shown[1]
        if backfill and out.head is None and isinstance(req, PlacementRequest):
            out.head = job_id
            ends = sorted([*running, *started.values()], key=lambda r: r[0])
            reservation = head_reservation(pool, req, job_id, now_ms, ends, rtt)
            if reservation is not None and reservation.start_ms > now_ms:
                reason += f"; next in line, reserved to start by {shown_time(reservation.start_ms)}"
        out.waiting[job_id] = reason
    out.reservation = reservation
    return out
