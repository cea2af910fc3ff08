"""The scheduler: place pending jobs on the pool snapshot, and declare silent nodes' jobs lost.

A pass's decisions are core's (`core.scheduling_pass.decide_pass`, the loop the simulator runs too); this
service loads its inputs, adds the market path and the time bound, and persists on-demand assignments in
batches as they are decided (`commit_batch` per transaction, each job locked and checked still
pending), market ones each in its own transaction. On PostgreSQL one scheduler holds an
advisory lock, so a second one waits instead of double-placing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import ACTIVE_STATES, JobState, SpecError, parse_job_spec, transition
from computegrid.core.placement import Placement, PlacementPolicy, PlacementRequest
from computegrid.core.placement.base import RttTable
from computegrid.core.placement.preference import (
    cheapest_model_prices,
    chooses_model_by_price,
    prefer_cheapest_work,
)
from computegrid.core.pool import PoolSnapshot
from computegrid.core.priority import DEFAULT_WEIGHTS, Weights
from computegrid.core.scheduling_pass import MarketHook, Placed, decide_pass
from computegrid.core.throughput import default_throughputs
from computegrid.services.billing.node_prices import node_prices
from computegrid.services.clock import Clock
from computegrid.services.jobs import mark_lost, record_event, requeue_preempted
from computegrid.services.market.capacity import place_on
from computegrid.services.market.common import DEFAULT_NOTICE_MS
from computegrid.services.market.placement import MarketJob, MarketPass, Target, load_pass, market_job
from computegrid.services.market.rounds import run_round
from computegrid.services.placement_writes import write_placements
from computegrid.services.pool_state import load_pool
from computegrid.services.queue_state import (
    QueueCache,
    check_queue_policy,
    default_queue_policy,
    id_in,
    load_queue_pass,
    load_specs,
    plan_deferrals,
    releases,
)
from computegrid.services.regions import RttVersion, load_rtt, rtt_version
from computegrid.store.db import Database
from computegrid.store.models import Job, JobAllocation, JobEvent, Node
from computegrid.store.models_market import MarketLease

log = logging.getLogger(__name__)
LEADER_LOCK_KEY = 0x6367_7363  # "cgsc"


class SchedulerWake:
    """Why the scheduler should look again: new jobs (try just those) or freed capacity (try all)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._capacity = False

    def new_jobs(self) -> None:
        self._event.set()

    def capacity(self) -> None:
        with self._lock:
            self._capacity = True
        self._event.set()

    def wait(self, timeout_s: float) -> bool:
        """Wait for a signal; True when capacity changed (a full pass is due). Clears both."""
        self._event.wait(timeout_s)
        with self._lock:
            self._event.clear()
            capacity, self._capacity = self._capacity, False
        return capacity


@dataclass
class TickResult:
    placed: int = 0
    waiting: int = 0
    lost: int = 0


@dataclass
class _CommitBatches:
    """A pass's on-demand placements, committed `commit_batch` at a time while the pass goes on
    (core.scheduling_pass.OnPlaced)."""

    scheduler: Scheduler
    pool: PoolSnapshot
    unsaved: list[tuple[int, Placement, str, Target | None]] = field(default_factory=list)
    committed: int = 0

    def add(self, placed: Placed) -> list[int]:
        self.unsaved.append((placed.job_id, placed.placement, placed.site, None))
        return self.flush() if len(self.unsaved) >= self.scheduler.commit_batch else []

    def flush(self) -> list[int]:
        """Commit what is buffered; the ids of jobs that left the queue meanwhile (given back)."""
        if not self.unsaved:
            return []
        count = len(self.unsaved)
        given_back = self.scheduler._commit(self.pool, self.unsaved)
        self.committed += count - len(given_back)
        return given_back


@dataclass
class Scheduler:
    db: Database
    policy: PlacementPolicy
    catalog: Catalog
    clock: Clock
    heartbeat_timeout_ms: int = 30_000
    batch: int = 500
    rtt: RttTable = field(default_factory=dict)
    rtt_from_db: bool = True  # load `rtt`: the built-in region table plus operators' overrides (services/regions)
    _rtt_version: RttVersion | None = None
    started_ms: int = 0
    _requests: dict[int, PlacementRequest | str] = field(default_factory=dict)
    _reasons: dict[int, str] = field(default_factory=dict)
    wake: SchedulerWake = field(default_factory=SchedulerWake)
    full_pass_every_s: float = 2.0
    new_jobs_poll_s: float | None = None  # without an in-process wake, look for new jobs this often
    market_interval_s: float = 10.0  # a market round (spot auction, reserved bids) this often; inf: only on call
    market_notice_ms: int = DEFAULT_NOTICE_MS  # SIGTERM now, stopped this much later, when spot work is preempted
    _market: dict[int, MarketJob | None] = field(default_factory=dict)
    _last_round: float = float("-inf")
    _seen_max_id: int = 0
    _leader: Connection | None = None
    _is_leader: bool = False
    # Queue order (core.queueing: multifactor, fifo, sjf, fair), EASY backfill and deadline deferral:
    # services/queue_state.py loads their inputs; see docs/scheduling.md.
    queue_policy: str = field(default_factory=default_queue_policy)
    priority_weights: Weights = DEFAULT_WEIGHTS
    usage_refresh_ms: int = 60_000  # recompute tenants' decayed usage at most this often (clock ms)
    _queue_cache: QueueCache = field(default_factory=QueueCache)
    _head_reserved: bool = False  # the last full pass left a blocked head with a reservation
    commit_batch: int = 500  # on-demand placements committed per transaction
    # A pass stops trying jobs after this many seconds (wall time, as Slurm's bf_max_time bounds a backfill
    # cycle); the jobs it did not reach wait for the next full pass, in queue order. None: no bound.
    max_pass_s: float | None = 5.0
    pass_timer: Callable[[], float] = time.monotonic  # the wall clock `max_pass_s` is measured on
    _cut_short: bool = False  # a pass was cut at `max_pass_s`, and no full pass has run whole since

    def __post_init__(self) -> None:
        check_queue_policy(self.queue_policy)
        # Nodes get a full timeout after the control plane (re)starts before being declared lost.
        self.started_ms = self.clock.now_ms()
        self._last_round = time.monotonic()  # the first market round comes one interval after start

    def place_pending(self, *, only_new: bool = False) -> TickResult:
        """One pass over the pending jobs in the queue policy's order (the first `batch` of them).

        With a backfilling policy (`multifactor`, `fair`), the first on-demand job that does not fit is the
        head: it gets an EASY reservation, and a later job starts only if the reservation admits it (it
        ends by the head's start, or leaves the head's devices), so no backfill delays the head. Jobs with a
        deadline wait for their start plan (`core.deferral`), then try the planned site first.
        With `only_new`, only jobs submitted since the last pass are tried: when no capacity
        was freed, a job that did not fit then cannot fit now; and while a head holds a reservation such a
        pass does nothing (new jobs wait for the next full pass, so none jumps the head).
        After `max_pass_s` seconds the pass stops trying jobs: those it did not reach count as waiting, keep
        their reasons, and are tried by the next full pass (quick passes do nothing until then).
        """
        result = TickResult()
        now = self.clock.now_ms()
        if only_new and (self._head_reserved or self._cut_short):
            return result  # new jobs wait for the full pass: none jumps a head or jobs a cut pass did not reach
        stop_at = None if self.max_pass_s is None else self.pass_timer() + self.max_pass_s
        with self.db.reading() as session:
            self.refresh_rtt(session, full=not only_new)
            queue = load_queue_pass(session, policy=self.queue_policy, cache=self._queue_cache, now_ms=now,
                                    batch=self.batch, after_id=self._seen_max_id if only_new else None,
                                    weights=self.priority_weights, usage_refresh_ms=self.usage_refresh_ms)
            pending_ids = queue.order
            if not pending_ids:
                self._head_reserved = self._head_reserved and only_new
                if not only_new:
                    self._cut_short = False
                    self._requests.clear()
                    self._reasons.clear()
                    self._market.clear()
                return result
            pool = load_pool(session=session)
            missing = [i for i in pending_ids if i not in self._requests]
            if missing:
                specs = {i: queue.specs[i] for i in missing if i in queue.specs}
                specs.update(load_specs(session, [i for i in missing if i not in specs]))
                parsed: dict[str, tuple[PlacementRequest | str, MarketJob | None]] = {}  # job arrays repeat specs
                interned: dict[PlacementRequest, PlacementRequest] = {}
                for job_id, spec in specs.items():
                    if spec not in parsed:
                        request, mjob = self._parse(spec)
                        if isinstance(request, PlacementRequest):  # equal requests share one object: cheap lookups
                            request = interned.setdefault(request, request)
                        parsed[spec] = request, mjob
                    self._requests[job_id], self._market[job_id] = parsed[spec]
            if any(isinstance(r, PlacementRequest) and (r.max_price_fen_per_du is not None or chooses_model_by_price(r))
                   for i in pending_ids if (r := self._requests.get(i)) is not None):
                # Only when a job has a price limit or chooses its model by price; every pass, as prices move.
                pool.set_prices(node_prices(session, pool, self.clock.now_ms()))
                self._order_models_by_price(pending_ids, pool)
            market_jobs = {i: m for i in pending_ids if (m := self._market.get(i)) is not None}
            market = load_pass(session, pool, self.clock.now_ms(), market_jobs)
            plan_deferrals(session, pool, pending_ids, self._requests, self._queue_cache, now, self.rtt)
        self._seen_max_id = max(self._seen_max_id, max(queue.seen))
        if not only_new:  # forget jobs that left the queue some other way (cancelled while pending)
            live = set(queue.seen)
            for cache in (self._requests, self._reasons, self._market):
                for job_id in [k for k in cache if k not in live]:
                    del cache[job_id]
        backfill = queue.backfill and not only_new  # a pass over new jobs plans no reservation
        timing = self._queue_cache.timing

        def limits(job_id: int) -> tuple[int | None, int | None]:
            t = timing.get(job_id)
            return (None, None) if t is None else (t.time_limit_ms, t.latest_start_ms())

        batches = _CommitBatches(self, pool)
        decided = decide_pass(
            order=pending_ids, requests=self._requests, pool=pool, policy=self.policy, now_ms=now, backfill=backfill,
            plans=self._queue_cache.plans, limits=limits,
            running=releases(pool, queue.running, timing, now) if backfill else (), rtt=self.rtt,
            out_of_time=None if stop_at is None else lambda: self.pass_timer() > stop_at,
            market=self._market_hook(market, pool) if market_jobs else None, on_placed=batches.add)
        batches.flush()
        for placed in decided.placed:
            self._requests.pop(placed.job_id, None)
            self._reasons.pop(placed.job_id, None)
            self._market.pop(placed.job_id, None)
        result.placed = batches.committed + decided.market_placed
        result.waiting = len(decided.waiting) + decided.not_tried
        if decided.cut:  # the rest keep their reasons and wait for the next pass
            log.info("scheduler pass stopped after %s s (max_pass_s): %d of %d jobs not tried",
                     self.max_pass_s, decided.not_tried, len(pending_ids))
        if not only_new:
            self._head_reserved = decided.reservation is not None
        if decided.cut or not only_new:
            self._cut_short = decided.cut
        reasons = {job_id: reason for job_id, reason in decided.waiting.items() if self._reasons.get(job_id) != reason}
        if reasons:
            # deferred jobs newly told they wait for a cheaper start get an event too
            self._write_reasons(reasons, [job_id for job_id in decided.deferred if job_id in reasons], now)
        return result

    def _market_hook(self, market: MarketPass, pool: PoolSnapshot) -> MarketHook:
        """The pass's market path (core.scheduling_pass.MarketHook): a spot or reserved job is placed on the
        capacity the market gave it, each in its own transaction; None sends a job to on-demand capacity."""

        def take(job_id: int, req: PlacementRequest) -> bool | str | None:
            mjob = self._market.get(job_id)
            decision = market.decide(job_id, mjob, self.rtt) if mjob is not None else None
            if decision is None or isinstance(decision, str):
                return decision
            if decision.reservation_id is not None:
                market.withholding.release(decision.site, decision.model)
            # The market fixed the price (spot clearing, reservation): the posted on-demand price is moot.
            outcome = place_on(pool, replace(req, max_price_fen_per_du=None), decision.site, decision.model, self.rtt)
            if not isinstance(outcome, Placement):
                self._rewithhold(market, decision, placed=False)
                return f"waiting: its {decision.price_kind} devices at {decision.site} are not free yet: {outcome}"
            site_name = str(pool.site[pool.node_row[outcome.allocations[0].node_id]])
            persisted = self._persist(job_id, outcome, site_name, decision)
            if persisted:
                pool.allocate(outcome.allocations)
                market.placed(decision)
            self._rewithhold(market, decision, placed=persisted)
            self._requests.pop(job_id, None)
            self._reasons.pop(job_id, None)
            self._market.pop(job_id, None)
            return persisted

        return take

    def _write_reasons(self, reasons: dict[int, str], deferred: list[int], now: int) -> None:
        """Tell waiting jobs why they wait (and deferred ones in an event too), in one transaction."""
        # One UPDATE per distinct reason (many waiting jobs share one), not one ORM load per job.
        by_reason: dict[str, list[int]] = {}
        for job_id, reason in reasons.items():
            by_reason.setdefault(reason, []).append(job_id)
        with self.db.transaction() as session:
            jobs = Job.__table__
            conn = session.connection()
            for reason, ids in by_reason.items():
                for condition in id_in(session, jobs.c.id, ids):
                    # A row that already says so (a restarted scheduler's first pass) is not written again.
                    conn.execute(update(jobs)  # type: ignore[arg-type]
                                 .where(condition, jobs.c.state == JobState.PENDING.value,
                                        jobs.c.state_reason != reason)
                                 .values(state_reason=reason))
            if deferred:
                session.execute(insert(JobEvent), [
                    {"job_id": job_id, "at_ms": now, "from_state": JobState.PENDING.value,
                     "to_state": JobState.PENDING.value, "reason": reasons[job_id]} for job_id in deferred])
        self._reasons.update(reasons)

    def _parse(self, spec_json: str) -> tuple[PlacementRequest | str, MarketJob | None]:
        try:
            spec = parse_job_spec(json.loads(spec_json), self.catalog)
        except SpecError as exc:
            return f"stored spec no longer valid: {exc}", None
        # A job choosing among models gets its order from the prices of each pass (_order_models_by_price).
        return PlacementRequest.from_spec(spec), market_job(spec)

    def _order_models_by_price(self, job_ids: list[int], pool: PoolSnapshot) -> None:
        """Order the models of each job that chooses by price (core.placement.preference.prefer_cheapest_work),
        from the cheapest price per du posted now for each model among the pool's nodes (`pool.price`)."""
        prices = cheapest_model_prices(pool)
        orders: dict[tuple[frozenset[str], str | None], tuple[str, ...]] = {}
        for job_id in job_ids:
            req = self._requests.get(job_id)
            if not isinstance(req, PlacementRequest) or not chooses_model_by_price(req):
                continue
            key = (req.models, req.workload)
            if key not in orders:
                orders[key] = prefer_cheapest_work(req, default_throughputs(), prices, self.catalog).model_preference
            if req.model_preference != orders[key]:
                self._requests[job_id] = replace(req, model_preference=orders[key])

    def refresh_rtt(self, session: Session, *, full: bool = True) -> None:
        """Reload the latency table when operators' overrides changed (one aggregate query); on a pass over
        new jobs only (`full=False`), only when it was never loaded. Does nothing with `rtt_from_db` off."""
        if not self.rtt_from_db or (not full and self._rtt_version is not None):
            return
        version = rtt_version(session)
        if version != self._rtt_version:
            self.rtt, self._rtt_version = load_rtt(session), version

    @staticmethod
    def _rewithhold(market: MarketPass, target: Target | None, *, placed: bool) -> None:
        """Hold a reservation's unused devices back again after one of its jobs was tried."""
        if target is not None and target.reservation_id is not None:
            market.withholding.reapply(target.site, target.model, target.devices if placed else 0)

    def _commit(self, pool: PoolSnapshot, unsaved: list[tuple[int, Placement, str, Target | None]]) -> list[int]:
        """Commit buffered placements (the pool already holds them); give back those of jobs that left the
        queue meanwhile (their devices released from the pool). Returns the ids given back; empties `unsaved`."""
        saved = self._persist_many(unsaved)
        given_back = []
        for (job_id, placement, _, _), ok in zip(unsaved, saved, strict=True):
            if not ok:
                pool.release(placement.allocations)
                given_back.append(job_id)
        unsaved.clear()
        return given_back

    def _persist(self, job_id: int, placement: Placement, site_name: str, target: Target | None = None) -> bool:
        return self._persist_many([(job_id, placement, site_name, target)])[0]

    def _persist_many(self, items: list[tuple[int, Placement, str, Target | None]]) -> list[bool]:
        """Persist placements in one transaction, their jobs locked first (in id order); a job cancelled
        meanwhile, or whose spot lease a round took back, is skipped (False)."""
        if all(target is None for *_, target in items):
            return self._persist_on_demand(items)
        now = self.clock.now_ms()
        with self.db.transaction() as session:
            ids = sorted({job_id for job_id, *_ in items})
            jobs = {j.id: j for j in session.scalars(
                select(Job).where(Job.id.in_(ids)).order_by(Job.id).with_for_update())}
            node_ids = sorted({a.node_id for _, placement, _, _ in items for a in placement.allocations})
            nodes = {n.id: n for n in session.scalars(select(Node).where(Node.id.in_(node_ids)))}
            return [self._persist_one(session, jobs.get(job_id), placement, site_name, target, nodes, now)
                    for job_id, placement, site_name, target in items]

    def _persist_on_demand(self, items: list[tuple[int, Placement, str, Target | None]]) -> list[bool]:
        """On-demand placements in one transaction of bulk statements (lock, update, two inserts): the same
        rows `_persist_one` writes, without loading ORM objects."""
        now = self.clock.now_ms()
        transition(JobState.PENDING, JobState.PLACED)  # the declared transition these rows make
        jobs = Job.__table__
        with self.db.transaction() as session:
            conn = session.connection()
            ids = sorted({job_id for job_id, *_ in items})
            attempt = {i: a for i, a, state in conn.execute(
                select(jobs.c.id, jobs.c.attempt, jobs.c.state).where(or_(*id_in(session, jobs.c.id, ids)))
                .order_by(jobs.c.id).with_for_update()) if state == JobState.PENDING.value}
            node_ids = sorted({a.node_id for _, placement, _, _ in items for a in placement.allocations})
            nodes = {i: (site, name) for i, site, name in conn.execute(
                select(Node.id, Node.site_id, Node.name).where(or_(*id_in(session, Node.id, node_ids))))}
            saved, job_rows, alloc_rows, event_rows = [], [], [], []
            for job_id, placement, site_name, _ in items:
                if job_id not in attempt:
                    saved.append(False)  # cancelled meanwhile
                    continue
                attempt[job_id] += 1
                n = attempt.pop(job_id)
                where = ", ".join(sorted({nodes[a.node_id][1] for a in placement.allocations}))
                reason = f"placed by {placement.policy} on {site_name}/{where} (attempt {n})"
                job_rows.append({"job_id": job_id, "attempt": n, "site_id": nodes[placement.allocations[0].node_id][0],
                                 "reason": reason})
                alloc_rows += [{"job_id": job_id, "attempt": n, "node_id": a.node_id, "rank": rank,
                                "device_indices": ",".join(str(i) for i in a.device_indices),
                                "milli_per_device": a.milli_per_device, "cpu_milli": a.cpu_milli,
                                "memory_mb": a.memory_mb, "active": True}
                               for rank, a in enumerate(placement.allocations)]
                event_rows.append({"job_id": job_id, "at_ms": now, "from_state": JobState.PENDING.value,
                                   "to_state": JobState.PLACED.value, "reason": reason})
                saved.append(True)
            write_placements(conn, now_ms=now, state=JobState.PLACED.value, price_kind="on-demand",
                             job_rows=job_rows, alloc_rows=alloc_rows, event_rows=event_rows)
        return saved

    @staticmethod
    def _persist_one(session: Session, job: Job | None, placement: Placement, site_name: str, target: Target | None,
                     nodes: dict[int, Node], now: int) -> bool:
        if job is None or job.state != JobState.PENDING.value:
            return False  # cancelled meanwhile
        lease = None
        if target is not None and target.lease_id is not None:
            lease = session.get(MarketLease, target.lease_id, with_for_update=True)
            if lease is None or lease.state != "allocated" or lease.job_id != job.id:
                return False  # a round took the allocation back meanwhile
        job.attempt += 1
        job.site_id = nodes[placement.allocations[0].node_id].site_id
        job.placed_ms = now
        for rank, alloc in enumerate(placement.allocations):
            session.add(JobAllocation(job_id=job.id, attempt=job.attempt, node_id=alloc.node_id, rank=rank,
                                      device_indices=",".join(str(i) for i in alloc.device_indices),
                                      milli_per_device=alloc.milli_per_device, cpu_milli=alloc.cpu_milli,
                                      memory_mb=alloc.memory_mb, active=True))
        where = ", ".join(sorted({nodes[a.node_id].name for a in placement.allocations}))
        bought = ""
        if target is None:
            job.price_kind, job.price_fen_per_du = "on-demand", None  # the provider's posted schedule
        else:
            job.price_kind, job.price_fen_per_du = target.price_kind, target.price_fen_per_du
            bought = (f" on spot lease {target.lease_id} at {target.price_fen_per_du} fen/du" if lease is not None
                      else f" on reservation {target.reservation_id}")
        if lease is not None:
            lease.state, lease.attempt, lease.start_ms, lease.updated_ms = "active", job.attempt, now, now
        record_event(session, job, JobState.PLACED,
                     f"placed by {placement.policy} on {site_name}/{where}{bought} (attempt {job.attempt})", now)
        return True

    def declare_lost(self) -> int:
        """Nodes silent for longer than the timeout go down; their jobs become lost (and maybe requeued)."""
        now = self.clock.now_ms()
        cutoff = now - self.heartbeat_timeout_ms
        if self.started_ms > cutoff:
            return 0
        lost = 0
        with self.db.transaction() as session:
            silent = session.scalars(select(Node).where(Node.state == "up", Node.last_heartbeat_ms < cutoff)).all()
            for node in silent:
                node.state = "down"
                jobs = session.scalars(
                    select(Job).join(JobAllocation, JobAllocation.job_id == Job.id)
                    .where(JobAllocation.node_id == node.id, JobAllocation.active.is_(True),
                           JobAllocation.attempt == Job.attempt,
                           Job.state.in_([s.value for s in ACTIVE_STATES]))).all()
                for job in jobs:
                    silent_s = (now - node.last_heartbeat_ms) // 1000
                    mark_lost(session, job, f"node {node.name} sent no heartbeat for {silent_s} s", now)
                    lost += 1
        return lost

    def end_overdue_preemptions(self) -> int:
        """Preempted attempts whose notice has run out are requeued, and their capacity freed, even if
        their agent has not yet said they stopped (it stops them when the assignment disappears)."""
        now = self.clock.now_ms()
        with self.db.transaction() as session:
            overdue = session.scalars(select(Job).where(Job.state == JobState.PREEMPTING.value,
                                                        Job.stop_by_ms < now)).all()
            for job in overdue:
                requeue_preempted(session, job, f"attempt {job.attempt} did not stop within its notice; requeued",
                                  now)
        return len(overdue)

    def run_market_round(self, *, force: bool = False) -> dict[str, Any] | None:
        """One market round now (see services/market/rounds.py); None when the market is idle."""
        self._last_round = time.monotonic()
        with self.db.transaction() as session:
            self.refresh_rtt(session)
            report = run_round(session, now_ms=self.clock.now_ms(), catalog=self.catalog,
                               notice_ms=self.market_notice_ms, rtt=self.rtt, force=force)
        if report is not None:
            self._reasons.clear()  # leases and bids changed: waiting jobs get their news
        return report

    def tick(self, *, only_new: bool = False) -> TickResult:
        """Declare silent nodes lost, end overdue preemptions, run a market round when one is due, then
        place pending jobs (only new ones if `only_new` and nothing else changed)."""
        lost = self.declare_lost()
        freed = self.end_overdue_preemptions()
        traded = False
        if time.monotonic() - self._last_round >= self.market_interval_s:
            traded = self.run_market_round() is not None
        result = self.place_pending(only_new=only_new and lost == 0 and freed == 0 and not traded)
        result.lost = lost
        return result

    def acquire_leadership(self) -> bool:
        """On PostgreSQL, take the scheduler advisory lock (held for this process's life)."""
        if self.db.is_sqlite or self._is_leader:
            return True
        if self._leader is None:
            self._leader = self.db.engine.connect()
        got = bool(self._leader.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}).scalar())
        self._leader.commit()
        self._is_leader = got
        return got

    def run(self, stop: threading.Event, interval_s: float = 0.1) -> None:
        """Tick until `stop` is set (call `wake.capacity()` after setting it to stop at once).

        New jobs get a quick pass over just themselves; freed capacity, and every
        `full_pass_every_s` regardless, a full pass. At most one pass per `interval_s`.
        """
        last_full = float("-inf")
        capacity_changed = True
        while not stop.is_set():
            started = time.monotonic()
            full = capacity_changed or started - last_full >= self.full_pass_every_s
            try:
                if self.acquire_leadership():
                    self.tick(only_new=not full)
                    if full:
                        last_full = started
            except Exception:  # keep scheduling through a transient database error
                log.exception("scheduler tick failed")
                last_full = float("-inf")
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
            wait_s = max(0.0, self.full_pass_every_s - (time.monotonic() - last_full))
            if self.new_jobs_poll_s is not None:
                wait_s = min(wait_s, self.new_jobs_poll_s)
            capacity_changed = self.wake.wait(wait_s)
        self.release_leadership()

    def release_leadership(self) -> None:
        """Give up the advisory lock (a crashed leader's lock goes with its connection)."""
        if self._leader is None:
            return
        if self._is_leader:
            self._leader.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEADER_LOCK_KEY})
            self._leader.commit()
        self._leader.close()
        self._leader = None
        self._is_leader = False
