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
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.engine import Connection

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import ACTIVE_STATES, JobState, SpecError, parse_job_spec
from computegrid.core.placement import Placement, PlacementFailure, PlacementPolicy, PlacementRequest
from computegrid.core.placement.base import RttTable
from computegrid.core.placement.preference import prefer_models
from computegrid.core.throughput import default_throughputs
from computegrid.services.clock import Clock
from computegrid.services.jobs import mark_lost, record_event, requeue_preempted
from computegrid.services.pool_state import load_pool
from computegrid.store.db import Database
from computegrid.store.models import Job, JobAllocation, Node

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
    _seen_max_id: int = 0
    _leader: Connection | None = None
    _is_leader: bool = False

    def __post_init__(self) -> None:
        # Nodes get a full timeout after the control plane (re)starts before being declared lost.
        self.started_ms = self.clock.now_ms()

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
                return result
            pool = load_pool(session=session)
            missing = [i for i in pending_ids if i not in self._requests]
            if missing:
                for job_id, spec in session.execute(select(Job.id, Job.spec).where(Job.id.in_(missing))):
                    self._requests[job_id] = self._parse(spec)
        self._seen_max_id = max(self._seen_max_id, pending_ids[-1])
        if not only_new:  # forget jobs that left the queue some other way (cancelled while pending)
            live, last = set(pending_ids), pending_ids[-1]
            for cache in (self._requests, self._reasons):
                for job_id in [k for k in cache if k <= last and k not in live]:
                    del cache[job_id]
        reasons: dict[int, str] = {}
        for job_id in pending_ids:
            req = self._requests[job_id]
            outcome: Placement | PlacementFailure | str = req if isinstance(req, str) else self.policy.place(
                pool, req, self.rtt)
            if isinstance(outcome, Placement):
                if self._persist(job_id, outcome, pool.site[pool.node_row[outcome.allocations[0].node_id]]):
                    pool.allocate(outcome.allocations)
                    result.placed += 1
                self._requests.pop(job_id, None)
                self._reasons.pop(job_id, None)
                continue
            result.waiting += 1
            reason = f"waiting: {outcome}"
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

    def _parse(self, spec_json: str) -> PlacementRequest | str:
        try:
            req = PlacementRequest.from_spec(parse_job_spec(json.loads(spec_json), self.catalog))
        except SpecError as exc:
            return f"stored spec no longer valid: {exc}"
        if req.workload is not None and len(req.models) > 1:
            # Until providers post prices (the market), every model costs the same per du, so the
            # order is measured throughput per du: what a chip delivers against what it is rated.
            prices = dict.fromkeys(req.models, UNPRICED_FEN_PER_DU)
            req = prefer_models(req, default_throughputs(), prices, self.catalog)
        return req

    def _persist(self, job_id: int, placement: Placement, site_name: str) -> bool:
        now = self.clock.now_ms()
        with self.db.transaction() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job is None or job.state != JobState.PENDING.value:
                return False  # cancelled meanwhile
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
            job.price_kind, job.price_fen_per_du = "on-demand", None  # the provider's posted schedule
            record_event(session, job, JobState.PLACED,
                         f"placed by {placement.policy} on {site_name}/{where} (attempt {job.attempt})", now)
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

    def tick(self, *, only_new: bool = False) -> TickResult:
        """Declare silent nodes lost, end overdue preemptions, then place pending jobs (only new ones if
        `only_new`)."""
        lost = self.declare_lost()
        freed = self.end_overdue_preemptions()
        result = self.place_pending(only_new=only_new and lost == 0 and freed == 0)
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
