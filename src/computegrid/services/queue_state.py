"""The live queue's inputs, loaded for the scheduler: pending jobs, fair shares, decayed usage, running jobs'
expected ends, and candidate sites' posted prices; and core's queue order, reservation and start plans over them.

The rules are core's (`core.queueing`, `core.priority`, `core.deferral`); this module only reads state:
- queue order: `order_pending` pushes the pending jobs into the deployment's `core.queueing` queue
  (`fifo`, `sjf`, `fair`, `multifactor`) and reads its order, as the simulator's replay does.
- usage: per tenant, device-seconds from `usage_intervals` (each device share weighted by its milli share),
  every instant decayed to now with the half-life (`core.priority.decayed_interval`). Intervals that ended
  more than ten half-lives ago (under 0.1 %) are not read.
- releases: a running attempt ends, as far as the scheduler knows, at its start (or placement, before it
  started) + the spec's `time_limit`; an attempt without a time limit never ends as far as a reservation can
  tell, so it frees nothing before the head's shadow time. Only whole-device allocations count (a device
  share freed does not make a whole device free).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import BigInteger, ColumnElement, String, any_, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session

from computegrid.core.backfill import NEVER_MS
from computegrid.core.deferral import PostedTariff, StartPlan, candidate_tariffs, plan_start
from computegrid.core.jobs import ACTIVE_STATES, JobState
from computegrid.core.placement import PlacementRequest
from computegrid.core.placement.base import RttTable
from computegrid.core.pool import PoolSnapshot
from computegrid.core.priority import DEFAULT_WEIGHTS, Weights, decayed_interval, multifactor_order
from computegrid.core.queueing import QUEUE_POLICIES, QueuedJob, Release, make_queue
from computegrid.core.units import MILLI_PER_DEVICE
from computegrid.services.billing.prices import PostedPrices, load_prices
from computegrid.services.placement_writes import array_literal
from computegrid.store.models import Job, JobAllocation, Site, Tenant, UsageRecord

CHUNK = 10_000  # ids per IN (...) list (SQLite bounds the number of parameters)


def default_queue_policy() -> str:
    return "multifactor"


def check_queue_policy(name: str) -> str:
    """`name` if it is a known queue policy; ValueError naming the known ones otherwise."""
    if name not in QUEUE_POLICIES:
        raise ValueError(f"unknown queue policy {name!r}; known: {', '.join(QUEUE_POLICIES)}")
    return name


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending job's queue inputs."""

    job_id: int
    tenant: str
    submitted_ms: int
    priority_class: int
    package_priority: int


@dataclass(frozen=True, slots=True)
class Timing:
    """From a job's spec: its time limit and deadline (ms), each None when not given."""

    time_limit_ms: int | None
    deadline_ms: int | None

    @classmethod
    def of_spec(cls, spec_json: str) -> Timing:
        spec = json.loads(spec_json)
        limit = spec.get("time_limit")
        deadline = spec.get("deadline")
        deadline_ms = None
        if isinstance(deadline, str):
            try:
                at = datetime.fromisoformat(deadline)
            except ValueError:
                at = None
            if at is not None:
                at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
                deadline_ms = int(at.timestamp() * 1000)
        return cls(int(limit) * 1000 if isinstance(limit, int) and limit > 0 else None, deadline_ms)

    def latest_start_ms(self) -> int | None:
        if self.time_limit_ms is None or self.deadline_ms is None:
            return None
        return self.deadline_ms - self.time_limit_ms


@dataclass(frozen=True, slots=True)
class RunningAllocation:
    job_id: int
    since_ms: int
    node_id: int
    devices: int
    whole: bool


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


def id_in(session: Session, column: ColumnElement[int] | InstrumentedAttribute[int],
          ids: Sequence[int]) -> Iterable[ColumnElement[bool]]:
    """`column IN ids` as few conditions as the database takes: one `= ANY(array)` on PostgreSQL (one
    parameter, however many ids), IN lists of `CHUNK` ids on SQLite (which bounds the parameters)."""
    if session.get_bind().dialect.name == "postgresql":
        # The ids as one array literal: the server parses it faster than the driver adapts a list.
        yield column == any_(cast(bindparam("ids", array_literal(ids), type_=String), ARRAY(BigInteger)))
        return
    for chunk in _chunks(list(ids)):
        yield column.in_(chunk)


def load_pending(session: Session, after_id: int | None = None) -> list[Pending]:
    """Pending jobs' queue inputs, by id; only ids above `after_id` when given."""
    query = select(Job.id, Job.tenant_id, Job.submitted_ms, Job.priority_class, Job.package_priority) \
        .where(Job.state == JobState.PENDING.value).order_by(Job.id)
    if after_id is not None:
        query = query.where(Job.id > after_id)
    return [Pending(i, str(t), s, c, p) for i, t, s, c, p in session.execute(query)]


def load_specs(session: Session, ids: Sequence[int]) -> dict[int, str]:
    """Job id -> stored spec JSON. On PostgreSQL each distinct text is read once with its jobs' ids (job
    arrays repeat one spec)."""
    out: dict[int, str] = {}
    grouped = session.get_bind().dialect.name == "postgresql"
    for condition in id_in(session, Job.id, ids):
        if grouped:
            for spec, group in session.execute(select(Job.spec, func.array_agg(Job.id)).where(condition)
                                               .group_by(Job.spec)):
                out.update(dict.fromkeys(group, spec))
        else:
            out.update((i, spec) for i, spec in session.execute(select(Job.id, Job.spec).where(condition)))
    return out


def load_shares(session: Session) -> dict[str, int]:
    """Tenant id (as text) -> fair-share weight (at least 1)."""
    return {str(i): max(int(s or 1), 1) for i, s in session.execute(select(Tenant.id, Tenant.fair_share))}


def load_usage(session: Session, now_ms: int, half_life_ms: int = DEFAULT_WEIGHTS.half_life_ms) -> dict[str, float]:
    """Tenant id (as text) -> decayed device-seconds at `now_ms` (see the module docstring)."""
    since = now_ms - 10 * half_life_ms
    usage: dict[str, float] = {}
    rows = session.execute(
        select(Job.tenant_id, UsageRecord.share_milli, UsageRecord.start_ms, UsageRecord.end_ms)
        .join(Job, Job.id == UsageRecord.job_id)
        .where(UsageRecord.end_ms > since, UsageRecord.device_index >= 0))
    for tenant, share, start, end in rows:
        key = str(tenant)
        usage[key] = usage.get(key, 0.0) + share / MILLI_PER_DEVICE * decayed_interval(start, end, now_ms,
                                                                                          half_life_ms)
    return usage


def load_running(session: Session) -> list[RunningAllocation]:
    """The current attempt's allocations of every active job."""
    rows = session.execute(
        select(Job.id, Job.started_ms, Job.placed_ms, JobAllocation.node_id, JobAllocation.device_indices,
               JobAllocation.milli_per_device)
        .join(JobAllocation, (JobAllocation.job_id == Job.id) & (JobAllocation.attempt == Job.attempt))
        .where(JobAllocation.active.is_(True), Job.state.in_([s.value for s in ACTIVE_STATES])))
    return [RunningAllocation(job_id, started if started is not None else (placed or 0), node_id,
                              len([d for d in indices.split(",") if d]), milli >= MILLI_PER_DEVICE)
            for job_id, started, placed, node_id, indices, milli in rows]


def order_pending(policy: str, pending: Sequence[Pending], now_ms: int, *, shares: dict[str, int],
                  usage: dict[str, float], timing: dict[int, Timing], held: dict[str, int] | None = None,
                  weights: Weights = DEFAULT_WEIGHTS) -> list[int]:
    """Pending job ids in the queue policy's order, through the same `core.queueing` queue the simulator uses
    (for `multifactor`, the function that queue orders by, `core.priority.multifactor_order`).

    `timing` gives `sjf` its durations (a job without a time limit goes last); `held` gives `fair` the
    devices each tenant holds now.
    """
    if policy == "multifactor":
        # What `MultifactorQueue` orders by, called directly: its queue objects cost more than the order.
        if any(w <= 0 for w in shares.values()):
            raise ValueError("fair-share weights must be positive")
        return [p.job_id for p in multifactor_order(pending, now_ms, shares, usage, weights)]
    options: dict[str, object] = {}
    if policy == "fair":
        options = {"weights": shares}
    queue = make_queue(policy, **options)
    for tenant, devices in (held or {}).items():
        queue.on_start(QueuedJob(-1, 0, 0, devices, tenant))
    for p in pending:
        t = timing.get(p.job_id)
        duration = t.time_limit_ms if t is not None and t.time_limit_ms is not None else NEVER_MS
        queue.push(QueuedJob(p.job_id, p.submitted_ms, duration, 0, p.tenant, p.priority_class, p.package_priority))
    queue.advance(now_ms)
    return [j.job_id for j in queue.ordered(len(pending))]


def held_devices(running: Sequence[RunningAllocation], tenant_of: dict[int, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in running:
        tenant = tenant_of.get(a.job_id)
        if tenant is not None:
            out[tenant] = out.get(tenant, 0) + a.devices
    return out


def releases(pool: PoolSnapshot, running: Sequence[RunningAllocation], timing: dict[int, Timing],
             now_ms: int) -> list[Release]:
    """Running jobs' whole devices as (expected end ms, [(node row, devices)]), in end order; jobs without a
    time limit are left out (they never end, as far as a reservation can tell)."""
    by_job: dict[int, tuple[int, list[tuple[int, int]]]] = {}
    for a in running:
        t = timing.get(a.job_id)
        row = pool.node_row.get(a.node_id)
        if t is None or t.time_limit_ms is None or row is None or not a.whole:
            continue
        end = max(a.since_ms + t.time_limit_ms, now_ms)
        by_job.setdefault(a.job_id, (end, []))[1].append((row, a.devices))
    return sorted(by_job.values(), key=lambda r: r[0])


def load_posted(session: Session) -> dict[str, PostedTariff]:
    """Site name -> its tier and its provider's posted schedule, for the sites whose provider posts prices."""
    posted: dict[str, PostedTariff] = {}
    by_provider: dict[int, PostedPrices | None] = {}
    for name, provider_id, tier in session.execute(select(Site.name, Site.provider_id, Site.tier)):
        if provider_id is None:
            continue
        if provider_id not in by_provider:
            by_provider[provider_id] = load_prices(session, provider_id)
        prices = by_provider[provider_id]
        if prices is not None:
            posted[name] = PostedTariff(tier, prices.schedule, prices.utc_offset_min)
    return posted


@dataclass
class QueueCache:
    """What the scheduler keeps between passes: spec timings, start plans of jobs with deadlines, and
    tenants' decayed usage with the time (clock ms) it was computed."""

    timing: dict[int, Timing] = field(default_factory=dict)
    plans: dict[int, StartPlan | None] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    usage_at_ms: int | None = None


@dataclass
class QueuePass:
    """One pass's queue: up to `batch` pending ids in policy order, every pending id read, the running
    allocations (for reservations) and whether the policy backfills."""

    order: list[int]
    seen: list[int]
    running: list[RunningAllocation]
    backfill: bool
    specs: dict[int, str] = field(default_factory=dict)  # the specs read to fill the timing cache


def _timing(spec_json: str, memo: dict[str, Timing]) -> Timing:
    found = memo.get(spec_json)
    if found is None:
        found = memo[spec_json] = Timing.of_spec(spec_json)
    return found


def _ensure_timing(session: Session, cache: QueueCache, ids: Iterable[int]) -> dict[int, str]:
    """Fill the timing of jobs not yet cached; returns the specs it read."""
    missing = [i for i in ids if i not in cache.timing]
    specs = load_specs(session, missing)
    memo: dict[str, Timing] = {}
    for job_id, spec in specs.items():
        cache.timing[job_id] = _timing(spec, memo)
    return specs


def load_queue_pass(session: Session, *, policy: str, cache: QueueCache, now_ms: int, batch: int,
                    after_id: int | None = None, weights: Weights = DEFAULT_WEIGHTS,
                    usage_refresh_ms: int = 60_000) -> QueuePass:
    """The pending jobs in `policy` order (the first `batch`), with what backfill and deferral need cached.

    With `after_id`, only jobs with a higher id (a pass over new jobs). Tenants' usage is recomputed when
    `usage_refresh_ms` has passed since the last time (0: every pass).
    """
    pending = load_pending(session, after_id)
    if not pending:
        return QueuePass([], [], [], QUEUE_POLICIES[policy])
    backfill = QUEUE_POLICIES[policy]
    # a pass over new jobs plans no reservation, so it needs running jobs only for `fair`'s held devices
    running = load_running(session) if (backfill and after_id is None) or policy == "fair" else []
    specs: dict[int, str] = {}
    if policy == "sjf":
        specs = _ensure_timing(session, cache, (p.job_id for p in pending))
    shares: dict[str, int] = {}
    if policy in ("fair", "multifactor"):
        shares = load_shares(session)
    if policy == "multifactor" and (cache.usage_at_ms is None or now_ms - cache.usage_at_ms >= usage_refresh_ms
                                    or now_ms < cache.usage_at_ms):
        cache.usage, cache.usage_at_ms = load_usage(session, now_ms, weights.half_life_ms), now_ms
    held = None
    if policy == "fair":
        ids = sorted({a.job_id for a in running})
        tenant_of = {j: str(t) for condition in id_in(session, Job.id, ids)
                     for j, t in session.execute(select(Job.id, Job.tenant_id).where(condition))}
        held = held_devices(running, tenant_of)
    order = order_pending(policy, pending, now_ms, shares=shares, usage=cache.usage, timing=cache.timing,
                          held=held, weights=weights)[:batch]
    specs.update(_ensure_timing(session, cache, [*order, *{a.job_id for a in running}]))
    if after_id is None:  # forget jobs that are neither pending nor running
        keep = {p.job_id for p in pending} | {a.job_id for a in running}
        cache.timing = {k: v for k, v in cache.timing.items() if k in keep}
        cache.plans = {k: v for k, v in cache.plans.items() if k in keep}
    return QueuePass(order, [p.job_id for p in pending], running, backfill, specs)


def plan_deferrals(session: Session, pool: PoolSnapshot, ids: Iterable[int],
                   requests: dict[int, PlacementRequest | str], cache: QueueCache, now_ms: int,
                   rtt: RttTable | None = None) -> None:
    """A start plan (core.deferral.plan_start) for each job among `ids` with a deadline and a time limit that
    has none yet; made once, when the job is first seen (prices are posted ahead, and a plan that moved
    with every pass would never arrive)."""
    posted: dict[str, PostedTariff] | None = None
    for job_id in ids:
        if job_id in cache.plans:
            continue
        t = cache.timing.get(job_id)
        req = requests.get(job_id)
        if t is None or t.deadline_ms is None or t.time_limit_ms is None or not isinstance(req, PlacementRequest):
            continue
        if posted is None:
            posted = load_posted(session)
        cache.plans[job_id] = plan_start(now_ms, t.deadline_ms, t.time_limit_ms,
                                         candidate_tariffs(pool, req, posted, rtt))
