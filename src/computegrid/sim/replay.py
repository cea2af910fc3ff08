"""Replay a job trace on one pool: core's queueing and placement decide, the event engine keeps time.

Events: an ARRIVAL per job (each arrival schedules the next, so the heap stays small) and a COMPLETE
when a job's known duration has passed. After all events of a millisecond the scheduler makes one pass
(`_settle`): it starts the queue's head while it fits, exactly as the live scheduler does (the placement
policy's `place` on the pool snapshot, then `PoolSnapshot.allocate`); with a backfilling queue it then
plans the blocked head's reservation and lets later jobs start early when `Reservation.admits` them.
Passes stay cheap: a full backfill scan (at most `backfill_scan` candidates) runs only when capacity was
released or the head changed; otherwise only the jobs that just arrived are tried. A job whose shape
already failed in a pass is not tried again in that pass (capacity only shrinks within a pass).

Job shape: trace jobs ask for whole GPUs and no CPU or memory (the traces give none). A job that fits on
one node of the pool (GPUs <= the largest node) asks for one node. A bigger job becomes a gang of
whole-device members: per member the largest node size in the pool that divides its GPU count, as many
members as that takes, on distinct nodes (e.g. 16 GPUs on 8-GPU nodes: 2 x 8). A job with no such size, or
more members than the pool has nodes that large, can never run: it is counted as unplaceable at
arrival, with the reason, and left out of JCT and wait figures. Members may land on different models.

Figures: JCT = end - arrival, wait = start - arrival (seconds); p95 by linear interpolation (numpy's
default); utilisation = busy device-time / (devices x makespan), makespan from the first arrival to the
last end; du through core.metering (exact), per model; opaque models (unknown FP16) report device-hours
instead of du.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from computegrid.core.catalog import default_catalog
from computegrid.core.metering import UsageInterval, meter
from computegrid.core.placement import Placement, PlacementPolicy, PlacementRequest, get_policy, typical_pods
from computegrid.core.placement.base import feasible_nodes
from computegrid.core.placement.gang import widest_group
from computegrid.core.pool import NodeAllocation
from computegrid.core.queueing import QueuedJob, Reservation, WaitQueue, make_queue
from computegrid.core.units import MILLI_PER_DEVICE, MS_PER_HOUR
from computegrid.sim.engine import EventEngine, EventKind
from computegrid.sim.fgd_protocol import TAKES_RNG, TAKES_TYPICAL
from computegrid.sim.pools import SimPool
from computegrid.sim.traces import Trace

BACKFILL_SCAN = 64
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class ReplayProgress:
    """Where a replay is: jobs ended or rejected of all, simulated time (ms), wall time (s), queue sizes."""

    done: int
    total: int
    sim_ms: int
    wall_s: float
    running: int
    waiting: int


@dataclass
class ReplayResult:
    trace: str
    pool: str
    queue: str
    policy: str
    seed: int
    jobs: int
    completed: int
    unplaceable: dict[str, int]
    skipped_rows: dict[str, int]
    devices: int
    avg_jct_s: float
    mean_wait_s: float
    p95_wait_s: float
    utilisation_pct: float
    makespan_s: float
    device_hours: float
    du: Fraction
    unmetered_device_hours: dict[str, float]
    backfilled: int
    events: int
    wall_s: float
    start_ms: np.ndarray = field(repr=False)
    end_ms: np.ndarray = field(repr=False)

    @property
    def unplaceable_total(self) -> int:
        return sum(self.unplaceable.values())

    def figures(self) -> dict[str, Any]:
        """The result as plain JSON values (du as an exact fraction string and a rounded float)."""
        return {
            "trace": self.trace, "pool": self.pool, "queue": self.queue, "policy": self.policy, "seed": self.seed,
            "jobs": self.jobs, "completed": self.completed, "unplaceable": self.unplaceable_total,
            "unplaceable_by_reason": self.unplaceable, "skipped_rows": self.skipped_rows, "devices": self.devices,
            "avg_jct_s": round(self.avg_jct_s, 3), "mean_wait_s": round(self.mean_wait_s, 3),
            "p95_wait_s": round(self.p95_wait_s, 3), "utilisation_pct": round(self.utilisation_pct, 3),
            "makespan_s": round(self.makespan_s, 3), "device_hours": round(self.device_hours, 3),
            "du": round(float(self.du), 3), "du_exact": str(self.du),
            "unmetered_device_hours": {k: round(v, 3) for k, v in self.unmetered_device_hours.items()},
            "backfilled": self.backfilled, "events": self.events, "wall_s": round(self.wall_s, 3),
            "events_per_s": round(self.events / self.wall_s, 1) if self.wall_s > 0 else None,
        }


def job_shape(gpus: int, node_sizes: dict[int, int]) -> tuple[int, int] | str:
    """(devices per member, members) for a job of `gpus` GPUs, or the reason it can never run.

    `node_sizes` maps a node's device count to how many nodes have that many (see the module docstring).
    """
    if not node_sizes:
        return "the pool has no devices"
    largest = max(node_sizes)
    if gpus <= largest:
        return gpus, 1
    divisors = [s for s in node_sizes if gpus % s == 0]
    if not divisors:
        return f"no node size divides {gpus} GPUs"
    per = max(divisors)
    have = sum(count for size, count in node_sizes.items() if size >= per)
    if have < gpus // per:
        return f"{gpus // per} nodes of {per} GPUs needed, {have} in the pool"
    return per, gpus // per


def make_policy(name: str, requests: list[PlacementRequest], rng: np.random.Generator) -> PlacementPolicy:
    """The placement policy `name` with the options it takes (typical mix from the trace, the run's rng)."""
    options: dict[str, Any] = {}
    if name in TAKES_TYPICAL:
        options["typical"] = typical_pods(requests)
    if name in TAKES_RNG:
        options["rng"] = rng
    return get_policy(name, **options)


class _Replay:
    def __init__(self, trace: Trace, pool: SimPool, queue: WaitQueue, engine: EventEngine, policy_name: str,
                 backfill_scan: int, progress: Callable[[ReplayProgress], None] | None, audit: bool) -> None:
        self.trace, self.pool, self.snap, self.queue, self.engine = trace, pool, pool.snapshot, queue, engine
        self.arrival = trace.arrival_ms.tolist()
        self.duration = trace.duration_ms.tolist()
        self.gpus = trace.gpus.tolist()
        n = len(self.arrival)
        self.start = [-1] * n
        self.end = [-1] * n
        sizes: dict[int, int] = {}
        for node in pool.nodes:
            if node.devices:
                sizes[node.devices] = sizes.get(node.devices, 0) + 1
        self.shapes: dict[int, tuple[int, int] | str] = {}
        self.requests: dict[tuple[int, int], PlacementRequest] = {}
        for g in sorted(set(self.gpus)):
            shape = self.shapes[g] = job_shape(g, sizes)
            if isinstance(shape, tuple):
                req = PlacementRequest(milli_per_node=shape[0] * MILLI_PER_DEVICE, cpu_milli=0, memory_mb=0,
                                       nodes=shape[1])
                fit = feasible_nodes(self.snap, req, empty=True)
                if int(np.count_nonzero(fit.node_mask)) < shape[1]:
                    self.shapes[g] = f"{shape[1]} x {shape[0]} GPUs never fit"
                elif shape[1] > 1 and widest_group(self.snap, fit.node_mask, "site")[1] < shape[1]:
                    self.shapes[g] = f"{shape[1]} x {shape[0]} GPUs never fit on one site"  # a gang is whole there
                else:
                    self.requests[shape] = req
        self.policy = make_policy(policy_name, [self.requests[s] for g in self.gpus
                                                if isinstance(s := self.shapes[g], tuple)], engine.rng)
        self.policy_name = policy_name
        #: per job: (devices per member, members), None when it can never run
        self.job_shape: list[tuple[int, int] | None] = [s if isinstance(s := self.shapes[g], tuple) else None
                                                        for g in self.gpus]
        self.node_model = [n.model for n in pool.nodes]
        self.running: dict[int, tuple[int, list[tuple[int, int]], tuple[NodeAllocation, ...]]] = {}
        self.ends: list[tuple[int, int]] = []  # (end ms, job) of running jobs, a heap; ended ones popped lazily
        self.queued: dict[int, QueuedJob] = {}
        self.new_jobs: list[QueuedJob] = []
        self.released = False
        self.reservation: Reservation | None = None
        self.unplaceable: dict[str, int] = {}
        self.device_ms: dict[str, int] = {}
        self.backfilled = 0
        self.done = 0
        self.backfill_scan = backfill_scan
        self.progress = progress
        self.audit = audit
        self.wall_started = time.perf_counter()
        self.last_progress = self.wall_started

    # ------------------------------------------------------------------ events

    def handle(self, kind: EventKind, job: int) -> None:
        if kind is EventKind.ARRIVAL:
            if job + 1 < len(self.arrival):
                self.engine.schedule(self.arrival[job + 1], EventKind.ARRIVAL, job + 1)
            shape = self.shapes[self.gpus[job]]
            if isinstance(shape, str):
                self.unplaceable[shape] = self.unplaceable.get(shape, 0) + 1
                self.done += 1
            else:
                entry = QueuedJob(job, self.arrival[job], self.duration[job], self.gpus[job], self.trace.group[job])
                self.queue.push(entry)
                self.queued[job] = entry
                self.new_jobs.append(entry)
        elif kind is EventKind.COMPLETE:
            _, _, allocations = self.running.pop(job)
            ends = self.ends
            while ends and ends[0][1] not in self.running:
                heapq.heappop(ends)
            self.snap.release(allocations)
            self.end[job] = self.engine.now_ms
            self.queue.advance(self.engine.now_ms)
            self.queue.on_finish(QueuedJob(job, self.arrival[job], self.duration[job], self.gpus[job],
                                           self.trace.group[job]))
            self.released = True
            self.done += 1
        if self.progress is not None and self.engine.handled % 2048 == 0:
            now = time.perf_counter()
            if now - self.last_progress >= PROGRESS_EVERY_S:
                self.last_progress = now
                self.progress(self.snapshot_progress())

    def snapshot_progress(self) -> ReplayProgress:
        return ReplayProgress(self.done, len(self.arrival), self.engine.now_ms, time.perf_counter() - self.wall_started,
                              len(self.running), len(self.queue))

    # ------------------------------------------------------------------ the scheduler's pass

    def _fits(self, shape: tuple[int, int], memo: dict[tuple[int, int], bool]) -> bool:
        """Whether free whole devices could hold the shape now (exact for trace requests: no CPU or memory)."""
        hit = memo.get(shape)
        if hit is None:
            per, members = shape
            free = self.snap.free_whole
            hit = bool(free.max() >= per) if members == 1 else int(np.count_nonzero(free >= per)) >= members
            memo[shape] = hit
        return hit

    def _place(self, job: QueuedJob, memo: dict[tuple[int, int], bool]) -> Placement | None:
        shape = self.job_shape[job.job_id]
        assert shape is not None
        if not self._fits(shape, memo):
            return None
        outcome = self.policy.place(self.snap, self.requests[shape])
        if not isinstance(outcome, Placement):
            memo[shape] = False
            return None
        return outcome

    def _parts(self, placement: Placement) -> list[tuple[int, int]]:
        row = self.snap.node_row
        return [(row[a.node_id], len(a.device_indices)) for a in placement.allocations]

    def _start(self, job: QueuedJob, placement: Placement, parts: list[tuple[int, int]], now: int) -> None:
        if self.audit and self.reservation is not None and self.reservation.job_id == job.job_id \
                and now > self.reservation.start_ms:
            raise AssertionError(f"job {job.job_id} started at {now} ms, after its reservation "
                                 f"({self.reservation.start_ms} ms)")
        self.snap.allocate(placement.allocations)
        self.queue.remove(job.job_id)
        del self.queued[job.job_id]
        self.queue.on_start(job)
        end = now + job.duration_ms
        self.start[job.job_id] = now
        self.running[job.job_id] = (end, parts, placement.allocations)
        self.engine.schedule(end, EventKind.COMPLETE, job.job_id)
        heapq.heappush(self.ends, (end, job.job_id))
        for row, devices in parts:
            model = self.node_model[row]
            self.device_ms[model] = self.device_ms.get(model, 0) + devices * job.duration_ms

    def settle(self, now: int) -> None:
        released, self.released = self.released, False
        new, self.new_jobs = self.new_jobs, []
        self.queue.advance(now)
        if self.audit:
            self._audit()
        if not len(self.queue):
            return
        memo: dict[tuple[int, int], bool] = {}
        while True:
            head = self.queue.head()
            if head is None:
                return
            placement = self._place(head, memo)
            if placement is None:
                break
            self._start(head, placement, self._parts(placement), now)
            self.reservation = None  # it counted the devices this head just took as free
            memo.clear()
        if not self.queue.backfill:
            return
        res = self.reservation
        # replan for a new head, or (a safety net; exact accounting never needs it) a head past its start
        planned = res is None or res.job_id != head.job_id or now > res.start_ms
        if planned:
            res = self.reservation = self._plan(head, now)
        if res is None:
            return
        if released or planned:
            candidates = self.queue.ordered(self.backfill_scan + 1)
        else:
            candidates = [j for j in new if j.job_id in self.queued]
        # shapes whose placement the reservation refused: until the pool changes, the policy would place
        # another job of that shape the same way, so only one that ends by the shadow time can start
        refused: set[tuple[int, int]] = set()
        shape_of, shapes = self.job_shape, len(self.requests)
        for job in candidates:
            shape = shape_of[job.job_id]
            assert shape is not None  # only placeable jobs are queued
            if memo.get(shape) is False:
                continue
            end = now + job.duration_ms
            if job.job_id == head.job_id or (end > res.start_ms and shape in refused):
                continue
            placement = self._place(job, memo)
            if placement is None:
                if len(memo) == shapes and not any(memo.values()):
                    break  # no shape fits any more, so no later candidate can start
                continue
            parts = self._parts(placement)
            if res.admits(end, parts):
                self._start(job, placement, parts, now)
                res.take(end, parts)
                self.backfilled += 1
                memo.clear()
                refused.clear()
            else:
                refused.add(shape)
        if self.audit:
            self._audit()

    def _plan(self, head: QueuedJob, now: int) -> Reservation | None:
        shape = self.shapes[self.gpus[head.job_id]]
        assert isinstance(shape, tuple)
        return Reservation.plan(head.job_id, now, self.snap.free_whole.tolist(), self._releases(), shape[0], shape[1])

    def _releases(self) -> Iterator[tuple[int, list[tuple[int, int]]]]:
        """Running jobs' releases in end order, lazily (a best-first walk of the end-time heap)."""
        heap, running = self.ends, self.running
        frontier = [(heap[0], 0)] if heap else []
        while frontier:
            (end, job), i = heapq.heappop(frontier)
            held = running.get(job)
            if held is not None and held[0] == end:
                yield end, held[1]
            for child in (2 * i + 1, 2 * i + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))

    def _audit(self) -> None:
        """Conservation: every device's free share is what the running jobs leave of it (no over-allocation)."""
        snap = self.snap
        held = np.zeros(len(snap.dev_free), dtype=np.int64)
        for _, _, allocations in self.running.values():
            for a in allocations:
                for i in a.device_indices:
                    held[snap.dev_row[(a.node_id, i)]] += a.milli_per_device
        if (held > MILLI_PER_DEVICE).any() or not np.array_equal(snap.dev_free, MILLI_PER_DEVICE - held):
            raise AssertionError(f"device capacity not conserved at {self.engine.now_ms} ms")


def replay(trace: Trace, pool: SimPool, *, queue: str = "fifo", policy: str = "best-fit", seed: int = 1,
           backfill_scan: int = BACKFILL_SCAN, progress: Callable[[ReplayProgress], None] | None = None,
           audit: bool = False) -> ReplayResult:
    """Replay `trace` on `pool` with a queue and a placement policy (by name); raises KeyError for an unknown one.

    The pool's capacity is allocated and released as jobs run; all of it is free again at the end.
    Deterministic for a given seed. `progress` gets a `ReplayProgress` every ~2 s of wall time. `audit`
    checks, after every pass, that device capacity is conserved, and on every start that no head starts
    after its reservation (slow; for tests).
    """
    started = time.perf_counter()
    engine = EventEngine(seed)
    run = _Replay(trace, pool, make_queue(queue), engine, policy, backfill_scan, progress, audit)
    if len(trace):
        engine.schedule(run.arrival[0], EventKind.ARRIVAL, 0)
    engine.run(run.handle, run.settle)
    if audit and (pool.snapshot.dev_free != MILLI_PER_DEVICE).any():
        raise AssertionError("capacity is still held after the last job ended")
    wall = time.perf_counter() - started
    if progress is not None:
        progress(run.snapshot_progress())
    start, end = np.array(run.start, dtype=np.int64), np.array(run.end, dtype=np.int64)
    arrival = trace.arrival_ms
    ran = start >= 0
    waits = (start[ran] - arrival[ran]) / 1000.0
    jcts = (end[ran] - arrival[ran]) / 1000.0
    makespan_ms = int(end.max()) if ran.any() else 0
    busy_ms = sum(run.device_ms.values())
    catalog = default_catalog()
    du = Fraction(0)
    unmetered: dict[str, float] = {}
    for model, device_ms in sorted(run.device_ms.items()):
        usage = meter([UsageInterval(model, MILLI_PER_DEVICE, 0, device_ms)], catalog)
        if usage.du is None:
            unmetered[model] = device_ms / MS_PER_HOUR
        else:
            du += usage.du
    return ReplayResult(
        trace=trace.name, pool=pool.name, queue=queue, policy=policy, seed=seed, jobs=len(trace),
        completed=int(ran.sum()), unplaceable=dict(sorted(run.unplaceable.items())), skipped_rows=dict(trace.skipped),
        devices=pool.devices, avg_jct_s=float(jcts.mean()) if len(jcts) else 0.0,
        mean_wait_s=float(waits.mean()) if len(waits) else 0.0,
        p95_wait_s=float(np.percentile(waits, 95)) if len(waits) else 0.0,
        utilisation_pct=100.0 * busy_ms / (pool.devices * makespan_ms) if makespan_ms and pool.devices else 0.0,
        makespan_s=makespan_ms / 1000.0, device_hours=busy_ms / MS_PER_HOUR, du=du, unmetered_device_hours=unmetered,
        backfilled=run.backfilled, events=engine.handled, wall_s=wall, start_ms=start, end_ms=end)
