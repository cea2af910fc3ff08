"""The live scheduler's queue pass, replayed: queue order, EASY backfill and deadline deferral through core.

`replay_queue` drives jobs through the same core function as `services.scheduler.Scheduler.place_pending`
(`core.scheduling_pass.decide_pass`: the skip of deferred jobs in step 2, and step 3) for on-demand jobs,
one full pass per event time (as `Scheduler.tick` runs after each event):
1. order the pending jobs with the deployment's `core.queueing` queue (`multifactor`, `fair`, `fifo`, `sjf`),
   with tenants' fair shares and their usage decayed to now (`core.priority`; recomputed at most every
   `usage_refresh_ms`, from the runs that ended, as the live scheduler reads reported usage intervals);
2. when a job in that order has a price limit or chooses its model by price, price every node at its site's
   posted schedule now (`posted_node_prices`, as services/billing/node_prices does) and order the models of
   the jobs that choose by the cheapest work (`core.placement.preference.prefer_cheapest_work`); then
   give each job with a deadline and a time limit a start plan when first seen (`core.deferral`), and skip it
   until its planned start, then try its planned site first (`core.backfill.place_preferring`);
3. place the first `batch` jobs in order; the first that does not fit gets a reservation
   (`core.backfill.head_reservation`, from running jobs' start + time limit) and later jobs start only when
   `Reservation.admits` them, or when their deadline is due.
A request that failed is not tried again in the pass. Events at one time: completions, then arrivals, then
the pass. A waiting job's planned start, and the moment its deadline becomes due (latest start -
`DEADLINE_SLACK_MS`), are event times of their own: `computegrid up` passes every few seconds, so it starts
such a job then, with nothing else changed.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from computegrid.core.backfill import DEADLINE_SLACK_MS, NEVER_MS, whole_release
from computegrid.core.billing import PriceError, price_fen_per_du
from computegrid.core.catalog import Catalog, default_catalog
from computegrid.core.deferral import PostedTariff, StartPlan, candidate_tariffs, plan_start
from computegrid.core.jobs import parse_job_spec
from computegrid.core.jobs.spec import PRIORITY_CLASSES
from computegrid.core.metering import UsageInterval, meter
from computegrid.core.placement import Placement, PlacementPolicy, PlacementRequest, get_policy
from computegrid.core.placement.base import RttTable
from computegrid.core.placement.preference import cheapest_model_prices, chooses_model_by_price, prefer_cheapest_work
from computegrid.core.pool import NodeAllocation, PoolSnapshot
from computegrid.core.priority import DEFAULT_WEIGHTS, Weights, decayed_interval
from computegrid.core.queueing import QUEUE_POLICIES, QueuedJob, Release, make_queue
from computegrid.core.scheduling_pass import decide_pass
from computegrid.core.throughput import default_throughputs
from computegrid.core.units import MILLI_PER_DEVICE
from computegrid.sim.live_replay import LiveNode, Run, SpecJob, pool_of, request_for
from computegrid.sim.pools import Site


@dataclass(frozen=True)
class QueueJob:
    """A job as the live queue sees it: arrival and run time (ms), its placement request, tenant, class,
    package priority, and the spec's time limit and deadline (ms; None when not given)."""

    arrival_ms: int
    duration_ms: int
    request: PlacementRequest
    tenant: str = "default"
    priority_class: int = 1
    package_priority: int = 0
    time_limit_ms: int | None = None
    deadline_ms: int | None = None

    @property
    def latest_start_ms(self) -> int | None:
        if self.deadline_ms is None or self.time_limit_ms is None:
            return None
        return self.deadline_ms - self.time_limit_ms


@dataclass
class QueueSettings:
    """How the replayed scheduler is set up (the live `Scheduler` fields of the same names)."""

    queue_policy: str = "multifactor"
    shares: dict[str, int] = field(default_factory=dict)  # tenant -> Tenant.fair_share
    posted: Mapping[str, PostedTariff] = field(default_factory=dict)  # site -> posted prices
    rtt: RttTable = field(default_factory=dict)
    batch: int = 500
    usage_refresh_ms: int = 60_000
    weights: Weights = DEFAULT_WEIGHTS
    catalog: Catalog = field(default_factory=default_catalog)


def posted_node_prices(pool: PoolSnapshot, posted: Mapping[str, PostedTariff], now_ms: int) -> dict[int, int]:
    """Node id -> fen per du at `now_ms` (epoch ms): the node's site's posted schedule for its first device's model
    and the site's tier, as services/billing/node_prices prices a node. Nodes without devices, at sites that post
    nothing, or that the schedule cannot price are left out (unpriced)."""
    out: dict[int, int] = {}
    for row, node_id in enumerate(pool.node_ids.tolist()):
        tariff = posted.get(str(pool.site[row]))
        if tariff is None or int(pool.dev_count[row]) == 0:
            continue
        start, _ = pool.node_devices(row)
        try:
            out[node_id] = price_fen_per_du(tariff.schedule, str(pool.dev_model[start]), tariff.tier, now_ms,
                                            tariff.utc_offset_min)
        except PriceError:
            continue
    return out


@dataclass(frozen=True)
class QueueStart:
    """One start: the job (index), when (ms), where, and when it ended (ms)."""

    job: int
    start_ms: int
    end_ms: int
    allocations: tuple[NodeAllocation, ...]


class _QueueReplay:
    def __init__(self, jobs: Sequence[QueueJob], pool: PoolSnapshot, policy: PlacementPolicy,
                 settings: QueueSettings) -> None:
        if settings.queue_policy not in QUEUE_POLICIES:
            raise KeyError(f"unknown queue policy {settings.queue_policy!r}; known: {', '.join(QUEUE_POLICIES)}")
        self.jobs, self.pool, self.policy, self.s = jobs, pool, policy, settings
        self.requests = dict(enumerate(job.request for job in jobs))  # model preferences move with posted prices
        self.pending: dict[int, None] = {}
        self.running: dict[int, tuple[int, tuple[NodeAllocation, ...]]] = {}  # job -> (start, allocations)
        self.ended: list[tuple[str, int, int, float]] = []  # (tenant, start, end, devices) of finished runs
        self.plans: dict[int, StartPlan | None] = {}
        self.usage: dict[str, float] = {}
        self.usage_at: int | None = None
        self.starts: list[QueueStart] = []
        self.events: list[tuple[int, int, int]] = []  # (time, kind 0 end / 1 arrival / 2 wake, job)

    def run(self) -> list[QueueStart]:
        for j, job in enumerate(self.jobs):
            heapq.heappush(self.events, (job.arrival_ms, 1, j))
        started_at: dict[int, int] = {}
        woken: set[tuple[int, int]] = set()  # (job, time) of wakes already queued (plans and deadlines never change)
        while self.events:
            now = self.events[0][0]
            while self.events and self.events[0][0] == now:
                _, kind, j = heapq.heappop(self.events)
                if kind == 0:
                    start, allocations = self.running.pop(j)
                    self.pool.release(allocations)
                    devices = sum(len(a.device_indices) * a.milli_per_device for a in allocations) / MILLI_PER_DEVICE
                    self.ended.append((self.jobs[j].tenant, start, now, devices))
                    self.starts[started_at[j]] = QueueStart(j, start, now, allocations)
                elif kind == 1:
                    self.pending[j] = None
            for j in self._pass(now):
                started_at[j] = len(self.starts)
                self.starts.append(QueueStart(j, now, -1, self.running[j][1]))
                heapq.heappush(self.events, (now + self.jobs[j].duration_ms, 0, j))
            for j in self.pending:
                plan, latest = self.plans.get(j), self.jobs[j].latest_start_ms
                for at in (plan.start_ms if plan is not None else None,
                           latest - DEADLINE_SLACK_MS if latest is not None else None):
                    if at is not None and at > now and (j, at) not in woken:
                        woken.add((j, at))
                        heapq.heappush(self.events, (at, 2, j))
        return self.starts

    def _order(self, now: int) -> list[int]:
        s = self.s
        if s.queue_policy == "multifactor" and (self.usage_at is None or now - self.usage_at >= s.usage_refresh_ms):
            since = now - 10 * s.weights.half_life_ms
            usage: dict[str, float] = {}
            for tenant, start, end, devices in self.ended:
                if end > since:
                    usage[tenant] = usage.get(tenant, 0.0) + devices * decayed_interval(start, end, now,
                                                                                        s.weights.half_life_ms)
            self.usage, self.usage_at = usage, now
        options: dict[str, object] = {}
        if s.queue_policy == "multifactor":
            options = {"weights": s.shares, "usage": self.usage, "now_ms": now, "factors": s.weights}
        elif s.queue_policy == "fair":
            options = {"weights": s.shares}
        queue = make_queue(s.queue_policy, **options)
        if s.queue_policy == "fair":
            for j, (_, allocations) in self.running.items():
                queue.on_start(QueuedJob(-1, 0, 0, sum(len(a.device_indices) for a in allocations),
                                         self.jobs[j].tenant))
        for j in self.pending:
            job = self.jobs[j]
            queue.push(QueuedJob(j, job.arrival_ms, job.time_limit_ms if job.time_limit_ms is not None else NEVER_MS,
                                 0, job.tenant, job.priority_class, job.package_priority))
        queue.advance(now)
        return [q.job_id for q in queue.ordered(len(self.pending))][:s.batch]

    def _price(self, order: list[int], now: int) -> None:
        """As the live pass: only when a job in `order` has a price limit or chooses its model by price."""
        pool, requests = self.pool, self.requests
        if not any(requests[j].max_price_fen_per_du is not None or chooses_model_by_price(requests[j])
                   for j in order):
            return
        pool.price[:] = -1  # the live pool is loaded unpriced each pass
        pool.set_prices(posted_node_prices(pool, self.s.posted, now))
        prices = cheapest_model_prices(pool)
        for j in order:
            if chooses_model_by_price(requests[j]):
                requests[j] = prefer_cheapest_work(requests[j], default_throughputs(), prices, self.s.catalog)

    def _pass(self, now: int) -> list[int]:
        pool, s = self.pool, self.s
        order = self._order(now)
        self._price(order, now)
        for j in order:
            job = self.jobs[j]
            if j not in self.plans and job.deadline_ms is not None and job.time_limit_ms is not None:
                self.plans[j] = plan_start(now, job.deadline_ms, job.time_limit_ms,
                                           candidate_tariffs(pool, self.requests[j], s.posted, s.rtt))
        running: list[Release] = sorted(
            (whole_release(pool, Placement(allocations, ""), max(start + limit, now))
             for j, (start, allocations) in self.running.items()
             if (limit := self.jobs[j].time_limit_ms) is not None), key=lambda r: r[0])
        decided = decide_pass(order=order, requests=self.requests, pool=pool, policy=self.policy, now_ms=now,
                              backfill=QUEUE_POLICIES[s.queue_policy], plans=self.plans, limits=self._limits,
                              running=running, rtt=s.rtt)
        for placed in decided.placed:
            del self.pending[placed.job_id]
            self.running[placed.job_id] = (now, placed.placement.allocations)
        return [placed.job_id for placed in decided.placed]

    def _limits(self, j: int) -> tuple[int | None, int | None]:
        job = self.jobs[j]
        return job.time_limit_ms, job.latest_start_ms


def replay_queue(jobs: Sequence[QueueJob], pool: PoolSnapshot, policy: PlacementPolicy,
                 settings: QueueSettings | None = None) -> list[QueueStart]:
    """Every start of `jobs` on `pool` (allocated as they run, all free again at the end), in start order.

    Raises KeyError for an unknown queue policy.
    """
    return _QueueReplay(jobs, pool, policy, settings or QueueSettings()).run()


def replay_specs_queued(jobs: Sequence[SpecJob], nodes: list[LiveNode], *, policy: str,
                        settings: QueueSettings | None = None, tenants: Sequence[str] | None = None,
                        package_priorities: Sequence[int] | None = None, site: Site | None = None,
                        node_sites: Sequence[Site] | None = None, catalog: Catalog | None = None) -> list[Run]:
    """`sim.live_replay.replay_specs` with the live queue pass: every start of `jobs` on `nodes` (at `site`, or
    node i at `node_sites[i]`), through `replay_queue`, as `Run`s in start order (then job order), du metered by
    `core.metering`.

    Each spec's `priority`, `time_limit` and `deadline` are read as the live service stores them;
    `tenants[i]` is job i's tenant (default "default"), `package_priorities[i]` its package priority (0).
    """
    catalog = catalog or default_catalog()
    site = site or Site("local", "local", "core", 0.0)
    sim_pool = pool_of(nodes, catalog, site, node_sites)
    queued = []
    for i, job in enumerate(jobs):
        spec = parse_job_spec(job.spec, catalog)
        queued.append(QueueJob(
            job.arrival_ms, job.duration_ms, request_for(job.spec, catalog),
            tenant=tenants[i] if tenants is not None else "default", priority_class=PRIORITY_CLASSES[spec.priority],
            package_priority=package_priorities[i] if package_priorities is not None else 0,
            time_limit_ms=spec.time_limit_s * 1000 if spec.time_limit_s is not None else None,
            deadline_ms=spec.deadline_ms))
    starts = replay_queue(queued, sim_pool.snapshot, get_policy(policy), replace(settings or QueueSettings(),
                                                                                  catalog=catalog))
    runs = []
    for s in sorted(starts, key=lambda s: (s.start_ms, s.job)):
        intervals = [UsageInterval(sim_pool.nodes[a.node_id].model, a.milli_per_device, s.start_ms, s.end_ms)
                     for a in s.allocations for _ in a.device_indices]
        du = meter(intervals, catalog).du
        runs.append(Run(s.job, s.start_ms, s.end_ms,
                        tuple((sim_pool.nodes[a.node_id].name, a.device_indices) for a in s.allocations),
                        du if du is not None else Fraction(0)))
    return runs
