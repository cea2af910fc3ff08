"""Queueing rules: which waiting job goes next, and when a later job may jump ahead (EASY backfill).

A `WaitQueue` orders waiting jobs by a policy and names its head, the job that must start next:
- `fifo`: by arrival (ms), then job id.
- `sjf`: shortest known duration (ms) first, then arrival, then job id.
- `fair`: fair share between groups (tenants, virtual clusters) with EASY backfill. The group holding
  the fewest devices per unit of weight goes first (ties: the earlier head arrival, then the group name);
  within a group, by arrival. Shares are the devices a group holds now (`on_start` / `on_finish`).
- `multifactor`: Slurm-style multi-factor priority (`core.priority`: age, priority class, fair share of
  decayed usage, package priority) with EASY backfill; ties by arrival, then job id. The live
  scheduler's default. The order depends on the time, so the owner calls `advance(now_ms)` before asking.

Backfill (EASY): when the head cannot start, `Reservation.plan` finds its shadow time, the earliest
moment (ms) it fits if running jobs end when their known durations say, and the free whole devices per
node at that moment. A later job may start now only if it ends by the shadow time, or if the head still
fits at the shadow time with the later job's devices taken (`Reservation.admits`). So a backfilled job
never delays the head's reserved start. The reservation counts whole devices per node, which is exact for
jobs that ask for whole devices and no CPU or memory (as trace replays do).

Everything here is deterministic: ties are broken by arrival time and job id, never by chance.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from computegrid.core.priority import (
    DEFAULT_WEIGHTS,
    PriorityInputs,
    Weights,
    decay,
    decayed_interval,
    multifactor_order,
)

#: queue policy names and whether each backfills
QUEUE_POLICIES = {"fifo": False, "sjf": False, "fair": True, "multifactor": True}


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A waiting job: id, arrival time (ms), known duration (ms), devices it holds in total, fair-share group,
    priority class (0 low, 1 normal, 2 high) and package priority (read by `multifactor` only)."""

    job_id: int
    arrival_ms: int
    duration_ms: int
    devices: int
    group: str = ""
    priority_class: int = 1
    package_priority: int = 0


_Key = tuple[int, ...]


class _ArrivalOrder:
    """Jobs by (arrival ms, job id) in an OrderedDict: O(1) head, push in order and removal.

    Pushes normally come in arrival order; an earlier one (say, a job requeued with its first arrival)
    rebuilds the order, O(n), which is rare.
    """

    def __init__(self) -> None:
        self.live: OrderedDict[int, QueuedJob] = OrderedDict()
        self._last: tuple[int, int] | None = None

    def push(self, job: QueuedJob) -> None:
        if job.job_id in self.live:
            raise ValueError(f"job {job.job_id} is already queued")
        key = (job.arrival_ms, job.job_id)
        self.live[job.job_id] = job
        if self._last is not None and key < self._last:
            ordered = sorted(self.live.values(), key=lambda j: (j.arrival_ms, j.job_id))
            self.live = OrderedDict((j.job_id, j) for j in ordered)
        else:
            self._last = key

    def remove(self, job_id: int) -> None:
        del self.live[job_id]
        if not self.live:
            self._last = None

    def head(self) -> QueuedJob | None:
        return next(iter(self.live.values()), None)

    def ordered(self, limit: int) -> list[QueuedJob]:
        return list(itertools.islice(self.live.values(), limit))

    def __len__(self) -> int:
        return len(self.live)


class _LazyHeap:
    """A heap of (key..., job_id) entries with removal by job id (lazily: dead entries are skipped).

    An entry is live while it is the one recorded for its job, so a job removed and pushed again
    (say, requeued after a preemption) is never seen twice.
    """

    def __init__(self, key: Callable[[QueuedJob], _Key]) -> None:
        self._key = key
        self._heap: list[_Key] = []
        self._entry: dict[int, _Key] = {}
        self.live: dict[int, QueuedJob] = {}

    def _alive(self, entry: _Key) -> bool:
        return self._entry.get(entry[-1]) is entry

    def push(self, job: QueuedJob) -> None:
        if job.job_id in self.live:
            raise ValueError(f"job {job.job_id} is already queued")
        entry = (*self._key(job), job.job_id)
        self.live[job.job_id] = job
        self._entry[job.job_id] = entry
        heapq.heappush(self._heap, entry)

    def remove(self, job_id: int) -> None:
        del self.live[job_id]
        del self._entry[job_id]
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self.live):
            self._heap = [e for e in self._heap if self._alive(e)]
            heapq.heapify(self._heap)

    def head(self) -> QueuedJob | None:
        heap = self._heap
        while heap and not self._alive(heap[0]):
            heapq.heappop(heap)
        return self.live[heap[0][-1]] if heap else None

    def ordered(self, limit: int) -> list[QueuedJob]:
        """Up to `limit` live jobs in key order, by a best-first walk of the heap (O(k log k) for k visited)."""
        heap = self._heap
        out: list[QueuedJob] = []
        frontier: list[tuple[_Key, int]] = [(heap[0], 0)] if heap else []
        while frontier and len(out) < limit:
            entry, i = heapq.heappop(frontier)
            if self._alive(entry):
                out.append(self.live[entry[-1]])
            for child in (2 * i + 1, 2 * i + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child], child))
        return out

    def __len__(self) -> int:
        return len(self.live)


class WaitQueue:
    """Waiting jobs in policy order (see the module docstring). Subclasses set the order."""

    name = "queue"

    def __init__(self, *, backfill: bool = False) -> None:
        self.backfill = backfill

    def push(self, job: QueuedJob) -> None:
        """Add a waiting job; raises ValueError if its id is already queued."""
        raise NotImplementedError

    def remove(self, job_id: int) -> None:
        """Take a job out (it started or was cancelled); raises KeyError if it is not queued."""
        raise NotImplementedError

    def head(self) -> QueuedJob | None:
        """The job that must start next, or None when nothing waits."""
        raise NotImplementedError

    def ordered(self, limit: int) -> list[QueuedJob]:
        """Up to `limit` waiting jobs in policy order, head first (the backfill candidates after it)."""
        raise NotImplementedError

    def advance(self, now_ms: int) -> None:
        """The time is now `now_ms` (orders that depend on time, `multifactor`, reorder)."""

    def on_start(self, job: QueuedJob) -> None:
        """A job of this queue started and now holds `job.devices` devices (fair share counts them)."""

    def on_finish(self, job: QueuedJob) -> None:
        """A started job ended and gave its devices back."""

    def __len__(self) -> int:
        raise NotImplementedError


class _KeptInOrder(WaitQueue):
    """A queue whose order is kept by one container (`_jobs`); the subclass chooses the container."""

    _jobs: _ArrivalOrder | _LazyHeap

    def push(self, job: QueuedJob) -> None:
        self._jobs.push(job)

    def remove(self, job_id: int) -> None:
        self._jobs.remove(job_id)

    def head(self) -> QueuedJob | None:
        return self._jobs.head()

    def ordered(self, limit: int) -> list[QueuedJob]:
        return self._jobs.ordered(limit)

    def __len__(self) -> int:
        return len(self._jobs)


class FifoQueue(_KeptInOrder):
    """First come, first served: by arrival (ms), then job id."""

    name = "fifo"

    def __init__(self, *, backfill: bool = False) -> None:
        super().__init__(backfill=backfill)
        self._jobs = _ArrivalOrder()


class ShortestJobFirstQueue(_KeptInOrder):
    """Shortest known duration (ms) first, then arrival, then job id."""

    name = "sjf"

    def __init__(self, *, backfill: bool = False) -> None:
        super().__init__(backfill=backfill)
        self._jobs = _LazyHeap(lambda j: (j.duration_ms, j.arrival_ms))


class FairShareQueue(WaitQueue):
    """Fair share between groups: the group holding the fewest devices per unit of weight goes first.

    `weights` maps a group to its share weight (a positive integer; 1 for a group not listed). Within a
    group jobs go by arrival. Held devices change through `on_start` / `on_finish`.
    """

    name = "fair"

    def __init__(self, *, weights: dict[str, int] | None = None, backfill: bool = True) -> None:
        super().__init__(backfill=backfill)
        self.weights = dict(weights or {})
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("fair-share weights must be positive")
        self._scale = 1
        for w in set(self.weights.values()):
            self._scale *= w
        self.held: dict[str, int] = {}
        self._groups: dict[str, _ArrivalOrder] = {}
        self._group_of: dict[int, str] = {}

    def _rank(self, group: str, first: QueuedJob) -> tuple[int, int, int, str]:
        # held / weight, scaled by the product of the weights so the comparison stays exact in integers
        return (self.held.get(group, 0) * self._scale // self.weights.get(group, 1), first.arrival_ms,
                first.job_id, group)

    def push(self, job: QueuedJob) -> None:
        if job.job_id in self._group_of:
            raise ValueError(f"job {job.job_id} is already queued")
        jobs = self._groups.get(job.group)
        if jobs is None:
            jobs = self._groups[job.group] = _ArrivalOrder()
        jobs.push(job)
        self._group_of[job.job_id] = job.group

    def remove(self, job_id: int) -> None:
        group = self._group_of.pop(job_id)
        self._groups[group].remove(job_id)

    def _ranked_groups(self) -> list[_ArrivalOrder]:
        ranked = []
        for group, jobs in self._groups.items():
            first = jobs.head()
            if first is not None:
                ranked.append((self._rank(group, first), jobs))
        ranked.sort(key=lambda t: t[0])
        return [jobs for _, jobs in ranked]

    def head(self) -> QueuedJob | None:
        best: tuple[tuple[int, int, int, str], QueuedJob] | None = None
        for group, jobs in self._groups.items():
            first = jobs.head()
            if first is not None:
                rank = self._rank(group, first)
                if best is None or rank < best[0]:
                    best = (rank, first)
        return None if best is None else best[1]

    def ordered(self, limit: int) -> list[QueuedJob]:
        """The head, then the groups' jobs taken in turn: each round one job per group, groups in share
        order (as the shares stand now), each group's jobs by arrival."""
        lists = [jobs.ordered(limit) for jobs in self._ranked_groups()]
        out: list[QueuedJob] = []
        for round_ in itertools.zip_longest(*lists):
            out.extend(job for job in round_ if job is not None)
            if len(out) >= limit:
                break
        return out[:limit]

    def on_start(self, job: QueuedJob) -> None:
        self.held[job.group] = self.held.get(job.group, 0) + job.devices

    def on_finish(self, job: QueuedJob) -> None:
        self.held[job.group] = self.held.get(job.group, 0) - job.devices
        if self.held[job.group] < 0:
            raise ValueError(f"group {job.group!r} gave back more devices than it held")

    def __len__(self) -> int:
        return len(self._group_of)


class MultifactorQueue(WaitQueue):
    """Highest multi-factor priority first (`core.priority.multifactor_order`); ties by arrival, then job id.

    `weights` maps a group (tenant) to its fair-share weight (1 for a group not listed); `usage` is each
    group's decayed usage in device-seconds at `now_ms`. A finished job adds its device-seconds, decayed
    (`on_finish`); `advance` decays all usage to the new time. The order is sorted once and reused until a
    push, a finish or a new time changes it.
    """

    name = "multifactor"

    def __init__(self, *, weights: dict[str, int] | None = None, usage: dict[str, float] | None = None,
                 now_ms: int = 0, factors: Weights = DEFAULT_WEIGHTS, backfill: bool = True) -> None:
        super().__init__(backfill=backfill)
        self.weights = dict(weights or {})
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("fair-share weights must be positive")
        self.usage = dict(usage or {})
        self.now_ms = now_ms
        self.factors = factors
        self.live: dict[int, QueuedJob] = {}
        self._order: list[QueuedJob] | None = None
        self._pos = 0

    def push(self, job: QueuedJob) -> None:
        if job.job_id in self.live:
            raise ValueError(f"job {job.job_id} is already queued")
        self.live[job.job_id] = job
        self._order = None

    def remove(self, job_id: int) -> None:
        del self.live[job_id]  # a stale entry in the cached order is skipped when read

    def advance(self, now_ms: int) -> None:
        if now_ms == self.now_ms:
            return
        elapsed = now_ms - self.now_ms
        self.usage = {g: decay(u, elapsed, self.factors.half_life_ms) for g, u in self.usage.items()}
        self.now_ms = now_ms
        self._order = None

    def _sorted(self) -> list[QueuedJob]:
        if self._order is None:
            by_id = self.live
            inputs = [PriorityInputs(j.job_id, j.arrival_ms, j.priority_class, j.package_priority, j.group)
                      for j in by_id.values()]
            self._order = [by_id[p.job_id] for p in multifactor_order(inputs, self.now_ms, self.weights, self.usage,
                                                                      self.factors)]
            self._pos = 0
        order, live = self._order, self.live
        while self._pos < len(order) and live.get(order[self._pos].job_id) is not order[self._pos]:
            self._pos += 1
        return order

    def head(self) -> QueuedJob | None:
        order = self._sorted()
        return order[self._pos] if self._pos < len(order) else None

    def ordered(self, limit: int) -> list[QueuedJob]:
        order, live = self._sorted(), self.live
        out: list[QueuedJob] = []
        for job in itertools.islice(order, self._pos, None):
            if len(out) >= limit:
                break
            if live.get(job.job_id) is job:
                out.append(job)
        return out

    def on_finish(self, job: QueuedJob) -> None:
        """The finished job's devices x duration join its group's usage, decayed to now (device-seconds)."""
        used = job.devices * decayed_interval(self.now_ms - job.duration_ms, self.now_ms, self.now_ms,
                                              self.factors.half_life_ms)
        self.usage[job.group] = self.usage.get(job.group, 0.0) + used
        self._order = None

    def __len__(self) -> int:
        return len(self.live)


def make_queue(name: str, **options: Any) -> WaitQueue:
    """A new queue for a policy name in `QUEUE_POLICIES`; raises KeyError listing the known ones.

    `options` go to the queue's constructor (`weights=` for `fair` and `multifactor`; `usage=`, `now_ms=`
    and `factors=` for `multifactor`).
    """
    if name == "fifo":
        return FifoQueue(**options)
    if name == "sjf":
        return ShortestJobFirstQueue(**options)
    if name == "fair":
        return FairShareQueue(**options)
    if name == "multifactor":
        return MultifactorQueue(**options)
    raise KeyError(f"unknown queue policy {name!r}; known: {', '.join(QUEUE_POLICIES)}")


#: a running job's release: (end time in ms, [(node, whole devices it gives back there), ...])
Release = tuple[int, Sequence[tuple[int, int]]]


class Reservation:
    """The head job's EASY-backfill reservation: its shadow time and the free devices per node then.

    `start_ms` is the shadow time (ms); `free_at_start[node]` the whole devices free on that node at that
    moment; the head needs `per_node` devices on each of `nodes` distinct nodes.
    """

    def __init__(self, job_id: int, start_ms: int, free_at_start: list[int], per_node: int, nodes: int) -> None:
        self.job_id = job_id
        self.start_ms = start_ms
        self.free_at_start = free_at_start
        self.per_node = per_node
        self.nodes = nodes
        self.fitting = sum(1 for f in free_at_start if f >= per_node)

    @classmethod
    def plan(cls, job_id: int, now_ms: int, free_now: Sequence[int], releases: Iterable[Release],
             per_node: int, nodes: int) -> Reservation | None:
        """The reservation for a head needing `per_node` whole devices on each of `nodes` nodes.

        `free_now[node]`: whole devices free now; `releases`: the running jobs in order of end time (it is
        read only as far as needed, so it may be lazy). The shadow time is the first release time (ms)
        after which the head fits (now if it fits already); every release at that same time counts.
        None when it never fits. Raises ValueError when releases are out of order.
        """
        free = list(free_now)
        fitting = sum(1 for f in free if f >= per_node)
        if fitting >= nodes:
            return cls(job_id, now_ms, free, per_node, nodes)
        shadow: int | None = None
        last = -1
        for end, parts in releases:
            if end < last:
                raise ValueError(f"releases out of order: {end} ms after {last} ms")
            if shadow is not None and end > shadow:
                break
            last = end
            for node, devices in parts:
                before = free[node]
                free[node] = before + devices
                if before < per_node <= free[node]:
                    fitting += 1
            if shadow is None and fitting >= nodes:
                shadow = end
        if shadow is None:
            return None
        return cls(job_id, max(shadow, now_ms), free, per_node, nodes)

    def _lost(self, parts: Sequence[tuple[int, int]]) -> int:
        taken: dict[int, int] = {}
        for node, devices in parts:
            taken[node] = taken.get(node, 0) + devices
        d = self.per_node
        return sum(1 for node, devs in taken.items() if self.free_at_start[node] >= d > self.free_at_start[node] - devs)

    def admits(self, end_ms: int, parts: Sequence[tuple[int, int]]) -> bool:
        """Whether a job ending at `end_ms` (ms) and holding `parts` [(node, whole devices)] leaves the head's
        start at `start_ms`: it ends by then, or the head still fits with those devices taken."""
        if end_ms <= self.start_ms:
            return True
        return self.fitting - self._lost(parts) >= self.nodes

    def take(self, end_ms: int, parts: Sequence[tuple[int, int]]) -> None:
        """Record a backfilled job (one that `admits` allowed): its devices are gone at the shadow time."""
        if end_ms <= self.start_ms:
            return
        self.fitting -= self._lost(parts)
        for node, devices in parts:
            self.free_at_start[node] -= devices
