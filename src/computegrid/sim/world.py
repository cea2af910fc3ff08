"""One world of the federation simulator: the demand's jobs on one pool, through the event engine and core.

Events (see `engine`): an ARRIVAL per job (each schedules the next) and per deferred job a second ARRIVAL
when it is released (at its start plan's time, see "Deadlines" below); a COMPLETE when a run's known
duration has passed; a TICK per spot round (market worlds only). After all events of a millisecond the
scheduler makes one pass (`_settle`).

**The scheduler's pass is the live scheduler's run with `--queue-policy fifo`** (`services.scheduler.Scheduler.
place_pending`, docs/scheduling.md): waiting on-demand jobs are tried first come first tried, in arrival
order, and each starts if its placement policy places it on the pool snapshot (`policy.place`, then
`PoolSnapshot.allocate`); there is no reservation and no head-of-line blocking. The live default,
`multifactor` with EASY backfill, is not modelled: the demand has one priority class and no per-tenant
shares, so its order would reduce to age, i.e. arrival order, but its backfill reservation would hold back
later jobs that fifo starts at once. The live pass looks at the oldest 500 pending jobs (`batch`); this
one at all of them. To keep passes cheap with many jobs waiting, jobs that ask for exactly the same
(same route, see `routes`) share a queue: once the first of them fails in a pass, the rest would fail
too (capacity only shrinks within a pass), so they are skipped; and a route whose jobs failed is tried
again only after capacity came back at one of its (site, model) pairs. Before a policy is called,
`capacity.Tracker.could_fit` rules out requests that no allowed node could hold. None of this changes
which job starts where.

Market worlds keep two snapshots: `live` (every allocation) and `firm` (on-demand allocations only).
An on-demand job is placed on `live` if it fits; otherwise on `firm`, which counts spot devices as free,
and the spot jobs on the devices it takes are preempted at once ("on demand outranks spot",
docs/market.md). Spot jobs run only where a spot round (`spot_market`) put them. The simulator gives
no preemption notice: a preempted job checkpoints at that moment, keeps its progress, and waits for a
later round.

Deadlines (worlds with `time_shift`): the live scheduler's rule (`services.scheduler`, `core.deferral`). A
deadline-tolerant job gets a start plan when it arrives: `core.deferral.plan_start` over the sites its
route could ever use (`core.deferral.candidate_tariffs` for each of its steps' requests, merged by site),
each with its posted schedule (`pricing.site_prices`), tier, UTC offset (its region's) and the rated models
of the job's eligible nodes there (opaque models have no posted price and are left out). The live service
takes the spec's `time_limit` as the run time and `deadline` as the time the run must end by; a sim job
has neither, so its time limit is its trace duration and, since the demand's deadline is the time it
must *start* by, the deadline given to the plan is that start deadline + the time limit (the plan's
latest start is then the demand's deadline). When the plan starts later than now, the job waits and is
queued at the plan's start; either way, while it waits in the queue it is tried at the plan's site first
and, only if no step fits there, anywhere (`core.backfill.place_at_site`, as the live scheduler's
`place_preferring`).

Durations: an inference service holds its devices for its trace duration; a training job's run lasts
its remaining work x the duration factor of its slowest member's model (`speed.SpeedModel.factor`).
Every run leaves segments (job, start, end, (site, model) pair, devices, spot) for the metrics.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from computegrid.core.backfill import place_at_site
from computegrid.core.billing.prices import MS_PER_DAY, next_band_change_ms
from computegrid.core.catalog import Catalog
from computegrid.core.deferral import PostedTariff, SiteTariff, StartPlan, candidate_tariffs, plan_start, window_cost
from computegrid.core.placement import Placement, PlacementPolicy, PlacementRequest
from computegrid.core.placement.base import RttTable, rtt_between
from computegrid.core.pool import NodeAllocation
from computegrid.core.throughput import default_throughputs
from computegrid.sim.capacity import PairIndex, Tracker
from computegrid.sim.demand import DEADLINE, INFERENCE, SIM_EPOCH_MS, SPOT, Demand
from computegrid.sim.engine import EventEngine, EventKind
from computegrid.sim.pools import SimPool, build_pool
from computegrid.sim.pricing import Pricing
from computegrid.sim.replay import make_policy
from computegrid.sim.routes import Route, Router, Step

PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class WorldConfig:
    """How a world schedules (see `federation` for the two worlds)."""

    name: str
    policy: str
    cross_site: bool
    market: bool = False
    time_shift: bool = False
    model_preference: bool = False
    spot_tick_ms: int = 5 * 60_000
    max_bids: int = 1000


@dataclass(frozen=True)
class WorldProgress:
    world: str
    sim_ms: int
    arrived: int
    total: int
    running: int
    waiting: int
    wall_s: float


@dataclass
class Running:
    start_ms: int
    allocations: tuple[NodeAllocation, ...]
    pairs: list[int]
    factor: float
    spot: bool
    attempt: int


def fresh_pool(pool: SimPool) -> SimPool:
    """A copy of `pool` with everything free (each world allocates on its own snapshot)."""
    return build_pool(pool.name, pool.source, pool.nodes)


class World:
    """The state and event handling of one world; `run` drives it (see the module docstring)."""

    def __init__(self, demand: Demand, pool: SimPool, config: WorldConfig, *, seed: int, pricing: Pricing,
                 rtt: RttTable, utc_offset_min: dict[str, int], catalog: Catalog,
                 progress: Callable[[WorldProgress], None] | None = None,
                 requests: list[PlacementRequest] | None = None, keep_starts: bool = False,
                 policy: PlacementPolicy | None = None) -> None:
        self.demand, self.pool, self.config, self.pricing = demand, pool, config, pricing
        self.rtt, self.offsets, self.catalog = rtt, utc_offset_min, catalog
        self.engine = EventEngine(seed)
        self.pairs = PairIndex(pool)
        self.live = Tracker(pool.snapshot, self.pairs)
        self.firm = Tracker(fresh_pool(pool).snapshot, self.pairs) if config.market else None
        prices, self._prices_until = pricing.cheapest_posted(SIM_EPOCH_MS, utc_offset_min)
        self.router = Router(self.pairs, cross_site=config.cross_site, rtt=rtt,
                             throughput=default_throughputs() if config.model_preference else None,
                             prices=prices, catalog=catalog)
        n = len(demand)
        if policy is not None:  # used as it is (e.g. built as the live service builds it)
            self.policy: PlacementPolicy = policy
        else:
            mix = requests if requests is not None else self._typical_requests()
            self.policy = make_policy(config.policy, mix, self.engine.rng)
        self.firm_policy = make_policy(config.policy, requests if requests is not None else self._typical_requests(),
                                       self.engine.rng) if self.firm is not None else None
        self.node_pair = self.pairs.node_pair
        self.first_start = [-1] * n
        self.remaining = [float(d) for d in demand.trace_duration_ms]
        self.attempt = [0] * n
        self.running: dict[int, Running] = {}
        self.owner: dict[tuple[int, int], int] = {}
        self.waiting_routes: set[Route] = set()
        self.spot_waiting: dict[int, None] = {}
        self.unplaceable: dict[str, int] = {}
        self.seg_job: list[int] = []
        self.seg_start: list[int] = []
        self.seg_end: list[int] = []
        self.seg_pair: list[int] = []
        self.seg_devices: list[int] = []
        self.seg_spot: list[bool] = []
        self.latency_violations = 0
        self.preemptions = 0
        self.deferred = 0
        #: the site of each deadline-tolerant job's start plan (tried first when the job is placed)
        self.planned_site: dict[int, str] = {}
        self.posted = {name: PostedTariff(p.site.tier, p.schedule, utc_offset_min[p.site.region])
                       for name, p in pricing.sites.items()}
        self.priced_models = {name: frozenset(catalog.get(m).model for m in p.peak)
                              for name, p in pricing.sites.items()}
        self._tariffs: dict[PlacementRequest, list[SiteTariff]] = {}
        self._route_tariffs: dict[tuple[Any, ...], list[SiteTariff]] = {}
        self.spot_rounds = 0
        self.spot_unplaced = 0
        self.arrived = 0
        #: (time, job, allocations) of every start, in order, when `keep_starts` (for agreement checks)
        self.keep_starts = keep_starts
        self.starts: list[tuple[int, int, tuple[NodeAllocation, ...]]] = []
        self.progress = progress
        self.end_ms = max([demand.window_end_ms] + [demand.deadline_ms[j] for j in range(n) if demand.in_window(j)])
        self.wall_s = 0.0
        self.market: Any = None
        if config.market:
            from computegrid.sim.spot_market import SpotMarket

            self.market = SpotMarket(self)

    def _typical_requests(self) -> list[PlacementRequest]:
        """One request per job at its first shape (the typical-pod mix of fragmentation-aware policies)."""
        out = []
        for j in range(len(self.demand)):
            if self.demand.kind[j] == SPOT and self.config.market:
                continue
            route = self.router.route(self.demand, j)
            if route.steps:
                out.append(route.steps[0].request)
        return out

    # ------------------------------------------------------------------ running the world

    def run(self) -> None:
        """Handle every event up to `end_ms` (the last deadline of a job arriving in the window)."""
        started = time.perf_counter()
        self._last_progress = started
        self._wall_started = started
        if len(self.demand):
            self.engine.schedule(self.demand.arrival_ms[0], EventKind.ARRIVAL, 0)
        if self.market is not None:
            self.engine.schedule(0, EventKind.TICK, None)
        self.engine.run(self.handle, self.settle, until_ms=self.end_ms)
        for job in sorted(self.running):
            self._record(job, self.end_ms)
        self.wall_s = time.perf_counter() - started
        if self.progress is not None:
            self.progress(self.snapshot_progress())

    def snapshot_progress(self) -> WorldProgress:
        waiting = sum(len(r.queue) for r in self.waiting_routes) + len(self.spot_waiting)
        return WorldProgress(self.config.name, self.engine.now_ms, self.arrived, len(self.demand), len(self.running),
                             waiting, time.perf_counter() - self._wall_started)

    def handle(self, kind: EventKind, payload: Any) -> None:
        now = self.engine.now_ms
        if kind is EventKind.COMPLETE:
            job, attempt = payload
            run = self.running.get(job)
            if run is not None and run.attempt == attempt:
                self.stop(job, now, preempted=False)
        elif kind is EventKind.ARRIVAL:
            if isinstance(payload, tuple):
                self._enqueue(payload[1])
            else:
                self._arrive(payload, now)
        elif kind is EventKind.TICK:
            self.market.tick(now)
            if now + self.config.spot_tick_ms <= self.end_ms:
                self.engine.schedule(now + self.config.spot_tick_ms, EventKind.TICK, None)
        if self.progress is not None and self.engine.handled % 4096 == 0:
            wall = time.perf_counter()
            if wall - self._last_progress >= PROGRESS_EVERY_S:
                self._last_progress = wall
                self.progress(self.snapshot_progress())

    def _arrive(self, job: int, now: int) -> None:
        demand = self.demand
        if job + 1 < len(demand):
            self.engine.schedule(demand.arrival_ms[job + 1], EventKind.ARRIVAL, job + 1)
        self.arrived += 1
        kind = demand.kind[job]
        if kind == SPOT and self.market is not None:
            self.spot_waiting[job] = None
            return
        if kind == DEADLINE and self.config.time_shift:
            plan = self.start_plan(job, now)
            if plan is not None:
                self.planned_site[job] = plan.site
                if plan.defers(SIM_EPOCH_MS + now):
                    self.deferred += 1
                    self.engine.schedule(plan.start_ms - SIM_EPOCH_MS, EventKind.ARRIVAL, ("release", job))
                    return
        self._enqueue(job)

    def start_plan(self, job: int, now: int) -> StartPlan | None:
        """The live scheduler's start plan for deadline-tolerant `job` at `now` (sim ms): `core.deferral.plan_start`
        with time limit = the trace duration and deadline = the demand's start deadline + that time limit
        (epoch ms in the plan); None when no site its route could use has a posted price."""
        route = self.router.route(self.demand, job)
        run_ms = max(1, self.demand.trace_duration_ms[job])
        deadline = SIM_EPOCH_MS + self.demand.deadline_ms[job] + run_ms
        tariffs = self._route_tariffs.get(route.key)
        if tariffs is None:
            tariffs = self._route_tariffs[route.key] = not_undercut(self.route_tariffs(route))
        return plan_start(SIM_EPOCH_MS + now, deadline, run_ms, tariffs)

    def route_tariffs(self, route: Route) -> list[SiteTariff]:
        """The priced sites `route`'s steps could ever use (`core.deferral.candidate_tariffs` per step, merged
        by site, rated models only), by site name."""
        merged: dict[str, SiteTariff] = {}
        for step in route.steps:
            for tariff in self._step_tariffs(step.request):
                seen = merged.get(tariff.site)
                models = tariff.models if seen is None else tuple(sorted({*seen.models, *tariff.models}))
                merged[tariff.site] = replace(tariff, models=models)
        return [merged[site] for site in sorted(merged)]

    def _step_tariffs(self, request: PlacementRequest) -> list[SiteTariff]:
        key = replace(request, workload=None, model_preference=())  # neither changes which nodes qualify
        hit = self._tariffs.get(key)
        if hit is None:
            hit = []
            for tariff in candidate_tariffs(self.pool.snapshot, key, self.posted, self.rtt):
                models = tuple(m for m in tariff.models if m in self.priced_models[tariff.site])
                if models:
                    hit.append(replace(tariff, models=models))
            self._tariffs[key] = hit
        return hit

    def _enqueue(self, job: int) -> None:
        route = self.router.route(self.demand, job)
        if route.reason is not None:
            self.unplaceable[route.reason] = self.unplaceable.get(route.reason, 0) + 1
            return
        if not route.queue:
            route.blocked = False
            self.waiting_routes.add(route)
        route.queue.append(job)

    # ------------------------------------------------------------------ the scheduler's pass

    def reprice(self, now: int) -> None:
        """At a band edge, give the router the cheapest posted price per model (as the live pass reads it);
        when a model order changed, route the waiting training jobs again, each keeping its place in line."""
        if self._prices_until is None or now < self._prices_until - SIM_EPOCH_MS:
            return
        prices, self._prices_until = self.pricing.cheapest_posted(SIM_EPOCH_MS + now, self.offsets)
        if not self.router.reprice(prices):
            return
        training = [r for r in self.waiting_routes if r.key[0] == "training"]
        jobs = sorted(j for r in training for j in r.queue)
        for route in training:
            route.queue.clear()
            self.waiting_routes.discard(route)
        for job in jobs:
            self._enqueue(job)

    def settle(self, now: int) -> None:
        self.reprice(now)
        blocking = self.firm if self.firm is not None else self.live
        dirty = blocking.take_dirty()
        if self.firm is not None:
            self.live.take_dirty()
        if not self.waiting_routes:
            return
        heap = [(r.queue[0], id(r), r) for r in self.waiting_routes
                if not r.blocked or r.always_retry or (dirty and not dirty.isdisjoint(r.pairs))]
        heapq.heapify(heap)
        while heap:
            job, key, route = heapq.heappop(heap)
            if self._try_start(job, route.steps, now):
                route.queue.popleft()
                if route.queue:
                    heapq.heappush(heap, (route.queue[0], key, route))
                else:
                    self.waiting_routes.discard(route)
            else:
                route.blocked = True

    def place_on(self, tracker: Tracker, policy: PlacementPolicy, step: Step) -> Placement | None:
        """The policy's placement of `step` on the tracker's snapshot, or None (checked cheaply first)."""
        if step.precheck and not tracker.could_fit(step.pairs, step.per, step.members):
            return None
        outcome = policy.place(tracker.snap, step.request, self.rtt)
        return outcome if isinstance(outcome, Placement) else None

    def place_at(self, tracker: Tracker, policy: PlacementPolicy, step: Step, site: str) -> Placement | None:
        """The policy's placement of `step` on `site`'s nodes only, or None (checked cheaply first)."""
        if step.precheck and not tracker.could_fit([p for p in step.pairs if self.pairs.site[p] == site], step.per,
                                                   step.members):
            return None
        outcome = place_at_site(policy, tracker.snap, step.request, site, self.rtt)
        return outcome if isinstance(outcome, Placement) else None

    def _place(self, job: int, tracker: Tracker, policy: PlacementPolicy, steps: tuple[Step, ...]) -> Placement | None:
        """The first step that fits: at the job's planned site first (if it has one), then anywhere."""
        site = self.planned_site.get(job)
        if site is not None:
            for step in steps:
                placement = self.place_at(tracker, policy, step, site)
                if placement is not None:
                    return placement
        for step in steps:
            placement = self.place_on(tracker, policy, step)
            if placement is not None:
                return placement
        return None

    def _try_start(self, job: int, steps: tuple[Step, ...], now: int) -> bool:
        placement = self._place(job, self.live, self.policy, steps)
        if placement is not None:
            self.start(job, placement, now, spot=False)
            return True
        if self.firm is None or self.firm_policy is None:
            return False
        placement = self._place(job, self.firm, self.firm_policy, steps)
        if placement is not None:
            victims = sorted({self.owner[(a.node_id, i)] for a in placement.allocations
                              for i in a.device_indices if (a.node_id, i) in self.owner})
            for victim in victims:
                self.stop(victim, now, preempted=True)
            self.start(job, placement, now, spot=False)
            return True
        return False

    # ------------------------------------------------------------------ starting and stopping runs

    def start(self, job: int, placement: Placement, now: int, *, spot: bool) -> None:
        """Allocate the placement and run the job until its remaining work is done."""
        allocations = placement.allocations
        self.live.allocate(allocations)
        if self.firm is not None and not spot:
            self.firm.allocate(allocations)
        snap = self.live.snap
        pairs = [self.node_pair[snap.node_row[a.node_id]] for a in allocations]
        demand = self.demand
        workload = demand.workload[job]
        factor = 1.0 if workload is None else max(demand.speed.factor(self.pairs.model[p], workload) for p in pairs)
        duration = max(1, math.ceil(self.remaining[job] * factor))
        self.attempt[job] += 1
        if self.keep_starts:
            self.starts.append((now, job, allocations))
        self.running[job] = Running(now, allocations, pairs, factor, spot, self.attempt[job])
        self.engine.schedule(now + duration, EventKind.COMPLETE, (job, self.attempt[job]))
        if self.first_start[job] < 0:
            self.first_start[job] = now
        if spot:
            for a in allocations:
                for i in a.device_indices:
                    self.owner[(a.node_id, i)] = job
        limit = demand.max_rtt_ms[job]
        if demand.kind[job] == INFERENCE and limit is not None:
            for p in set(pairs):
                ms = rtt_between(self.rtt, demand.region[job], self.pairs.region[p])
                if ms is None or ms > limit:
                    self.latency_violations += 1
                    break

    def _record(self, job: int, now: int) -> Running:
        run = self.running.pop(job)
        for a, p in zip(run.allocations, run.pairs, strict=True):
            self.seg_job.append(job)
            self.seg_start.append(run.start_ms)
            self.seg_end.append(now)
            self.seg_pair.append(p)
            self.seg_devices.append(len(a.device_indices))
            self.seg_spot.append(run.spot)
        return run

    def stop(self, job: int, now: int, *, preempted: bool) -> None:
        """End the job's run at `now`: done, or preempted (progress kept, back to the spot queue)."""
        run = self._record(job, now)
        self.live.release(run.allocations)
        if self.firm is not None and not run.spot:
            self.firm.release(run.allocations)
        if run.spot:
            for a in run.allocations:
                for i in a.device_indices:
                    del self.owner[(a.node_id, i)]
        if preempted:
            self.preemptions += 1
            self.remaining[job] = max(0.0, self.remaining[job] - (now - run.start_ms) / run.factor)
            if self.remaining[job] > 0:
                self.spot_waiting[job] = None
        else:
            self.remaining[job] = 0.0


def not_undercut(tariffs: list[SiteTariff]) -> list[SiteTariff]:
    """`tariffs` less each one that another undercuts at every moment: same bands and UTC offset, and a
    strictly lower price (cheapest model) in every part of the day. `plan_start` can never pick such a site
    (its every window costs more than the same window at the other), so leaving it out changes no plan;
    it only saves time (a plan per deadline-tolerant job, over every site)."""
    prices: list[tuple[Any, list[int]]] = []
    for tariff in tariffs:
        moments = [SIM_EPOCH_MS]
        while (edge := next_band_change_ms(tariff.schedule, moments[-1], tariff.utc_offset_min)) is not None \
                and edge < SIM_EPOCH_MS + MS_PER_DAY:
            moments.append(edge)
        group = (tariff.schedule.bands, tariff.utc_offset_min)
        prices.append((group, [window_cost(tariff, m, 1) for m in moments]))
    return [t for t, (group, mine) in zip(tariffs, prices, strict=True)
            if not any(other_group == group and all(o < m for o, m in zip(other, mine, strict=True))
                       for other_group, other in prices)]

