"""The scheduler: place pending jobs on the pool snapshot, and declare silent nodes' jobs lost.

Placement itself is core's policy; this service loads state, calls it, and persists
each assignment in its own transaction. On PostgreSQL one scheduler holds an
advisory lock, so a second one waits instead of double-placing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.engine import Connection

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import ACTIVE_STATES, JobState, SpecError, parse_job_spec
from computegrid.core.placement import Placement, PlacementFailure, PlacementPolicy, PlacementRequest
from computegrid.core.placement.base import RttTable
from computegrid.core.placement.preference import prefer_models
from computegrid.core.throughput import default_throughputs
from computegrid.services.billing.node_prices import node_prices
from computegrid.services.clock import Clock
from computegrid.services.jobs import mark_lost, record_event, requeue_preempted
from computegrid.services.market.capacity import place_on
from computegrid.services.market.common import DEFAULT_NOTICE_MS
from computegrid.services.market.placement import MarketJob, MarketPass, Target, load_pass, market_job
from computegrid.services.market.rounds import run_round
from computegrid.services.pool_state import load_pool
from computegrid.store.db import Database
from computegrid.store.models import Job, JobAllocation, Node
from computegrid.store.models_market import MarketLease

log = logging.getLogger(__name__)
UNPRICED_FEN_PER_DU = 100
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
class Scheduler:
    db: Database
    policy: PlacementPolicy
    catalog: Catalog
    clock: Clock
    heartbeat_timeout_ms: int = 30_000
    batch: int = 500
    rtt: RttTable = field(default_factory=dict)
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

    def __post_init__(self) -> None:
        # Nodes get a full timeout after the control plane (re)starts before being declared lost.
        self.started_ms = self.clock.now_ms()
        self._last_round = time.monotonic()  # the first market round comes one interval after start

    def place_pending(self, *, only_new: bool = False) -> TickResult:
        """One pass over the oldest pending jobs, first come first tried.

        With `only_new`, only jobs submitted since the last pass are tried: when no capacity
        was freed, a job that did not fit then cannot fit now.
        """
        result = TickResult()
        with self.db.reading() as session:
            query = select(Job.id).where(Job.state == JobState.PENDING.value).order_by(Job.id).limit(self.batch)
            if only_new:
                query = query.where(Job.id > self._seen_max_id)
            pending_ids = list(session.scalars(query))
            if not pending_ids:
                if not only_new:
                    self._requests.clear()
                    self._reasons.clear()
                    self._market.clear()
                return result
            pool = load_pool(session=session)
            missing = [i for i in pending_ids if i not in self._requests]
            if missing:
                for job_id, spec in session.execute(select(Job.id, Job.spec).where(Job.id.in_(missing))):
                    self._requests[job_id], self._market[job_id] = self._parse(spec)
            if any(isinstance(r, PlacementRequest) and r.max_price_fen_per_du is not None
                   for i in pending_ids if (r := self._requests.get(i)) is not None):
                pool.set_prices(node_prices(session, pool, self.clock.now_ms()))  # only when a job has a limit
            market = load_pass(session, pool, self.clock.now_ms(),
                               {i: m for i in pending_ids if (m := self._market.get(i)) is not None})
        self._seen_max_id = max(self._seen_max_id, pending_ids[-1])
        if not only_new:  # forget jobs that left the queue some other way (cancelled while pending)
            live, last = set(pending_ids), pending_ids[-1]
            for cache in (self._requests, self._reasons, self._market):
                for job_id in [k for k in cache if k <= last and k not in live]:
                    del cache[job_id]
        reasons: dict[int, str] = {}
        for job_id in pending_ids:
            req = self._requests[job_id]
            mjob = self._market.get(job_id)
            decision = market.decide(job_id, mjob, self.rtt) if mjob is not None and not isinstance(req, str) \
                else None
            if isinstance(decision, str):
                result.waiting += 1
                if self._reasons.get(job_id) != decision:
                    reasons[job_id] = decision
                continue
            outcome: Placement | PlacementFailure | str
            if isinstance(req, str):
                outcome = req
            elif decision is not None:
                if decision.reservation_id is not None:
                    market.withholding.release(decision.site, decision.model)
                # The market fixed the price (spot clearing, reservation): the posted on-demand price is moot.
                outcome = place_on(pool, replace(req, max_price_fen_per_du=None), decision.site, decision.model,
                                   self.rtt)
            else:
                outcome = self.policy.place(pool, req, self.rtt)
            if isinstance(outcome, Placement):
                persisted = self._persist(job_id, outcome, pool.site[pool.node_row[outcome.allocations[0].node_id]],
                                          decision)
                if persisted:
                    pool.allocate(outcome.allocations)
                    result.placed += 1
                    if decision is not None:
                        market.placed(decision)
                self._rewithhold(market, decision, placed=persisted)
                self._requests.pop(job_id, None)
                self._reasons.pop(job_id, None)
                self._market.pop(job_id, None)
                continue
            self._rewithhold(market, decision, placed=False)
            result.waiting += 1
            reason = f"waiting: {outcome}"
            if decision is not None:
                reason = f"waiting: its {decision.price_kind} devices at {decision.site} are not free yet: {outcome}"
            if self._reasons.get(job_id) != reason:
                reasons[job_id] = reason
        if reasons:
            # One executemany, not one ORM load per job: many jobs can be waiting.
            with self.db.transaction() as session:
                jobs = Job.__table__
                session.connection().execute(
                    update(jobs)  # type: ignore[arg-type]
                    .where(jobs.c.id == bindparam("job_id"), jobs.c.state == JobState.PENDING.value)
                    .values(state_reason=bindparam("reason")),
                    [{"job_id": job_id, "reason": reason} for job_id, reason in reasons.items()])
            self._reasons.update(reasons)
        return result

    def _parse(self, spec_json: str) -> tuple[PlacementRequest | str, MarketJob | None]:
        try:
            spec = parse_job_spec(json.loads(spec_json), self.catalog)
        except SpecError as exc:
            return f"stored spec no longer valid: {exc}", None
        req = PlacementRequest.from_spec(spec)
        if req.workload is not None and len(req.models) > 1:
            # Until providers post prices (the market), every model costs the same per du, so the
            # order is measured throughput per du: what a chip delivers against what it is rated.
            prices = dict.fromkeys(req.models, UNPRICED_FEN_PER_DU)
            req = prefer_models(req, default_throughputs(), prices, self.catalog)
        return req, market_job(spec)

    @staticmethod
    def _rewithhold(market: MarketPass, target: Target | None, *, placed: bool) -> None:
        """Hold a reservation's unused devices back again after one of its jobs was tried."""
        if target is not None and target.reservation_id is not None:
            market.withholding.reapply(target.site, target.model, target.devices if placed else 0)

    def _persist(self, job_id: int, placement: Placement, site_name: str, target: Target | None = None) -> bool:
        now = self.clock.now_ms()
        with self.db.transaction() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.state != JobState.PENDING.value:
                return False  # cancelled meanwhile
            lease = None
            if target is not None and target.lease_id is not None:
                lease = session.get(MarketLease, target.lease_id, with_for_update=True)
                if lease is None or lease.state != "allocated" or lease.job_id != job_id:
                    return False  # a round took the allocation back meanwhile
            job.attempt += 1
            nodes = {n.id: n for n in session.scalars(
                select(Node).where(Node.id.in_([a.node_id for a in placement.allocations])))}
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
