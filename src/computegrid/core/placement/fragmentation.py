"""The FGD paper's fragmentation measure over a typical-pod mix (Weng et al., USENIX ATC '23).

A *typical-pod mix* is the most frequent request shapes (CPU, share per device, device count,
accepted kinds) covering 95% of the workload. A node's *fragmentation* is the free GPU
capacity (milli-devices) that the mix could not use there, weighted by frequency: for each
typical shape, if the node can host it (enough fitting devices, enough CPU, an accepted kind)
the free share on devices too small for it is fragment, otherwise all the node's free GPU is.

Everything here is exact: fragmentation is count-weighted integer milli-devices (divide by
`FragModel.total_weight` for the paper's frequency-weighted value). States are memoised by
what the measure depends on (access class, CPU level against the mix's CPU sizes, sorted free
shares), so a state seen before on any node costs one dictionary look-up. Small batches take a
pure-Python path, large ones a vectorised one; both give the same integers.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from computegrid.core.placement.base import PlacementRequest, device_eligibility
from computegrid.core.placement.scored import eligible_matrix
from computegrid.core.pool import BoolArray, IntArray, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE

StateKey = tuple[int, ...]
#: below this many nodes a batch is scored in pure Python (numpy's per-call cost dominates)
SCALAR_BATCH = 8


@dataclass(frozen=True)
class TypicalPod:
    """One shape of the typical-pod mix and how many requests had it (`count`)."""

    cpu_milli: int
    milli_per_device: int  # 0 for a job without devices
    devices: int
    models: frozenset[str]
    count: int
    memory_mb: int = 0  # mean memory (MiB) of the shape's requests; FGD's measure ignores it


def typical_key(req: PlacementRequest) -> tuple[int, int, int, frozenset[str]]:
    """The shape FGD groups requests by: (CPU milli, share per device in milli, devices, kinds)."""
    if not req.milli_per_node:
        return (req.cpu_milli, 0, 0, req.models)
    return (req.cpu_milli, req.milli_per_device, req.devices_per_node, req.models)


def typical_pods(requests: Iterable[PlacementRequest], coverage_pct: int = 95) -> tuple[TypicalPod, ...]:
    """The most frequent shapes, most frequent first, until they cover `coverage_pct`% of requests."""
    counts: Counter[tuple[int, int, int, frozenset[str]]] = Counter()
    memory: Counter[tuple[int, int, int, frozenset[str]]] = Counter()
    for r in requests:
        key = typical_key(r)
        counts[key] += 1
        memory[key] += r.memory_mb
    return typical_pods_from([TypicalPod(*key, count, memory[key] // count) for key, count in counts.items()],
                             coverage_pct)


def typical_pods_from(shapes: Iterable[TypicalPod], coverage_pct: int = 95) -> tuple[TypicalPod, ...]:
    """Keep the most frequent of `shapes` (ties: larger shape first) until they cover `coverage_pct`%."""
    ranked = sorted(shapes, key=lambda t: (t.count, t.cpu_milli, t.milli_per_device, t.devices,
                                           "|".join(sorted(t.models))), reverse=True)
    total = sum(t.count for t in ranked)
    chosen: list[TypicalPod] = []
    covered = 0
    for pod in ranked:
        if covered * 100 >= coverage_pct * total:
            break
        chosen.append(pod)
        covered += pod.count
    return tuple(chosen)


#: Used when a policy is built without a mix and has seen no requests yet: one whole device.
FALLBACK_MIX = (TypicalPod(cpu_milli=0, milli_per_device=MILLI_PER_DEVICE, devices=1, models=frozenset(), count=1),)

#: _EARLIER[d][j, k]: slot k comes before slot j (for d slots)
_EARLIER = [np.tril(np.ones((d, d), dtype=np.bool_), k=-1) for d in range(65)]


class FragModel:
    """The typical-pod mix as arrays, and fragmentation of node states (memoised, exact)."""

    def __init__(self, mix: tuple[TypicalPod, ...]):
        self.mix = mix or FALLBACK_MIX
        self.cpu: IntArray = np.array([t.cpu_milli for t in self.mix], dtype=np.int64)
        self.milli: IntArray = np.array([t.milli_per_device for t in self.mix], dtype=np.int64)
        self.devices: IntArray = np.array([t.devices for t in self.mix], dtype=np.int64)
        self.weight: IntArray = np.array([t.count for t in self.mix], dtype=np.int64)
        self.total_weight = int(self.weight.sum())
        self.cpu_levels: IntArray = np.unique(self.cpu)
        #: a state's CPU level (mix CPU sizes <= its free CPU) must reach this for the shape to fit
        self.cpu_need: IntArray = np.searchsorted(self.cpu_levels, self.cpu, side="right").astype(np.int64)
        self._levels = self.cpu_levels.tolist()
        self._shapes = list(zip(self.milli.tolist(), self.devices.tolist(), self.cpu_need.tolist(),
                                self.weight.tolist(), strict=True))
        self._pool: PoolSnapshot | None = None
        self._access_pool: PoolSnapshot | None = None
        self._access: tuple[IntArray, BoolArray, list[list[bool]]] = (np.zeros(0, dtype=np.int64),
                                                                      np.zeros((0, 0), dtype=np.bool_), [])
        self._memo: dict[StateKey, int] = {}
        self._before: IntArray = np.zeros(0, dtype=np.int64)
        self._before_seen: IntArray = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ per pool

    def _bind(self, pool: PoolSnapshot) -> None:
        if self._pool is not pool or len(self._memo) > 2_000_000:
            self._pool, self._memo = pool, {}
            self._before = np.zeros(pool.node_count, dtype=np.int64)
            self._before_seen = np.full(pool.node_count, -1, dtype=np.int64)

    def access(self, pool: PoolSnapshot) -> tuple[IntArray, BoolArray]:
        """Per node its access class, and per class and typical shape: the node has an accepted kind.

        Cached on the pool; most pools have one class (every shape may use every node).
        """
        if self._access_pool is pool:
            return self._access[0], self._access[1]
        key = ("fgd-access", id(self), self.mix)
        hit = pool.static_cache.get(key)
        if hit is None:
            ok = np.ones((pool.node_count, len(self.mix)), dtype=np.bool_)
            for t, pod in enumerate(self.mix):
                if pod.models:
                    codes = np.array([pool.model_code[m] for m in pod.models if m in pool.model_code],
                                     dtype=np.int64)
                    dev_ok = np.isin(pool.dev_model_code, codes)
                    ok[:, t] = np.bincount(pool.dev_node[dev_ok], minlength=pool.node_count) > 0
            # The distinct rows in lexicographic order (as np.unique(ok, axis=0) numbers them; False < True),
            # without numpy's slow sort of structured rows.
            rows = [tuple(r) for r in ok.tolist()]
            distinct = sorted(set(rows))
            number = {r: i for i, r in enumerate(distinct)}
            classes = np.array(distinct, dtype=np.bool_).reshape(len(distinct), len(self.mix))
            node_class = np.array([number[r] for r in rows], dtype=np.int64)
            hit = (node_class, classes, [list(r) for r in distinct])
            pool.static_cache[key] = hit
        self._access_pool, self._access = pool, hit
        return hit[0], hit[1]

    # ------------------------------------------------------------------ the measure

    def _compute(self, pool: PoolSnapshot, sig: IntArray) -> IntArray:
        """Fragmentation of signature rows (class, CPU level, sorted free...), vectorised."""
        _, classes = self.access(pool)
        free = sig[:, 2:]
        total = free.sum(axis=1)
        fits_device = free[:, None, :] >= self.milli[None, :, None]
        fitting = fits_device.sum(axis=2)
        too_small = np.where(fits_device, 0, free[:, None, :]).sum(axis=2)
        hosted = ((self.milli > 0)[None, :] & (fitting >= self.devices[None, :])
                  & (sig[:, 1:2] >= self.cpu_need[None, :]) & classes[sig[:, 0]])
        amount: IntArray = np.where(hosted, too_small, total[:, None])
        frag: IntArray = (amount @ self.weight).astype(np.int64)
        return frag

    def _compute_one(self, pool: PoolSnapshot, key: StateKey) -> int:
        """Fragmentation of one signature, in pure Python (same integers as `_compute`)."""
        access = self._access[2][key[0]]
        level, free = key[1], key[2:]  # free is sorted ascending
        total = sum(free)
        frag = 0
        for t, (milli, devices, need, weight) in enumerate(self._shapes):
            if milli == 0 or level < need or not access[t]:
                frag += weight * total
                continue
            small = bisect_left(free, milli)
            frag += weight * (sum(free[:small]) if len(free) - small >= devices else total)
        return frag

    def fragmentation(self, pool: PoolSnapshot, cpu_free: IntArray, dev_free: IntArray, rows: IntArray) -> IntArray:
        """Weighted fragmentation of each state (count x milli-devices).

        cpu_free: (S,) milli-CPU; dev_free: (S, D) free milli-devices, 0 for absent slots;
        rows: (S,) the node each state belongs to.
        """
        self._bind(pool)
        node_class, _ = self.access(pool)
        sig = np.empty((len(cpu_free), 2 + dev_free.shape[1]), dtype=np.int64)
        sig[:, 0] = node_class[rows]
        sig[:, 1] = np.searchsorted(self.cpu_levels, cpu_free, side="right")
        sig[:, 2:] = np.sort(dev_free, axis=1)
        keys: list[StateKey] = list(zip(*sig.T.tolist(), strict=True))
        memo = self._memo
        values = [memo.get(k) for k in keys]
        missing = {k: i for i, (k, v) in enumerate(zip(keys, values, strict=True)) if v is None}
        if missing:
            computed = self._compute(pool, sig[list(missing.values())]).tolist()
            for k, v in zip(missing, computed, strict=True):
                memo[k] = v
            return np.array([memo[k] for k in keys], dtype=np.int64)
        return np.array(values, dtype=np.int64)

    def state_fragmentation(self, pool: PoolSnapshot, row: int, cpu_free: int, free: list[int]) -> int:
        """Fragmentation of one state of node `row` (free: its devices' free milli, any order)."""
        width = pool.node_dev_rows.shape[1]
        key = (int(self._access[0][row]), bisect_right(self._levels, cpu_free),
               *sorted(free + [0] * (width - len(free))))
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = self._compute_one(pool, key)
        return value

    # ------------------------------------------------------------------ placing one member

    def before(self, pool: PoolSnapshot, rows: IntArray) -> IntArray:
        """Fragmentation of the nodes `rows` as they are now, cached per node version."""
        self._bind(pool)
        self.access(pool)
        stale = rows[self._before_seen[rows] != pool.version[rows]]
        if len(stale) > SCALAR_BATCH:
            self._before[stale] = self.fragmentation(pool, pool.cpu_free[stale], pool.device_free_matrix(stale),
                                                     stale)
        else:
            for row in stale.tolist():
                start, stop = pool.node_devices(row)
                self._before[row] = self.state_fragmentation(pool, row, int(pool.cpu_free[row]),
                                                             pool.dev_free[start:stop].tolist())
        self._before_seen[stale] = pool.version[stale]
        return self._before[rows]

    def before_row(self, pool: PoolSnapshot, row: int) -> int:
        """Fragmentation of node `row` as it is now (pure Python; same cache and integers as `before`)."""
        self._bind(pool)
        self.access(pool)
        version = int(pool.version[row])
        if int(self._before_seen[row]) != version:
            start, stop = pool.node_devices(row)
            self._before[row] = self.state_fragmentation(pool, row, int(pool.cpu_free[row]),
                                                         pool.dev_free[start:stop].tolist())
            self._before_seen[row] = version
        return int(self._before[row])

    def choices_row(self, pool: PoolSnapshot, req: PlacementRequest, row: int) -> tuple[int, list[int | None]]:
        """`choices` for one node, in pure Python: (before, after per device slot, None where not a choice)."""
        before = self.before_row(pool, row)
        width = pool.node_dev_rows.shape[1]
        after: list[int | None] = [None] * width
        start, stop = pool.node_devices(row)
        free = pool.dev_free[start:stop].tolist()
        cpu_after = int(pool.cpu_free[row]) - req.cpu_milli
        if not req.milli_per_node:
            after[0] = self.state_fragmentation(pool, row, cpu_after, free)
            return before, after
        ok = device_eligibility(pool, req)[0][start:stop].tolist()
        if req.milli_per_node >= MILLI_PER_DEVICE:
            left = req.devices_per_node
            taken = list(free)
            for j, f in enumerate(free):
                if left and ok[j] and f == MILLI_PER_DEVICE:
                    taken[j] = 0
                    left -= 1
            after[0] = self.state_fragmentation(pool, row, cpu_after, taken)
            return before, after
        share = req.milli_per_device
        seen: set[int] = set()
        for j, f in enumerate(free):
            if ok[j] and f >= share and f not in seen:
                seen.add(f)
                state = list(free)
                state[j] -= share
                after[j] = self.state_fragmentation(pool, row, cpu_after, state)
        return before, after

    def choices(self, pool: PoolSnapshot, req: PlacementRequest,
                rows: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
        """Fragmentation before, and after placing one member, per node and choice of device slot.

        Returns (before (B,), after (B, D), valid (B, D)). A fractional member has one choice per
        fitting slot (a slot whose free share repeats an earlier fitting slot's is not valid: it
        would leave the same state); any other request has one choice, in slot 0.
        """
        if len(rows) <= SCALAR_BATCH:
            return self._choices_scalar(pool, req, rows)
        cpu = pool.cpu_free[rows]
        free = pool.device_free_matrix(rows)
        before = self.before(pool, rows)
        cpu_after = cpu - req.cpu_milli
        after = np.zeros(free.shape, dtype=np.int64)
        valid = np.zeros(free.shape, dtype=np.bool_)
        if not req.milli_per_node or req.milli_per_node >= MILLI_PER_DEVICE:
            after_free = free
            if req.milli_per_node:
                whole = eligible_matrix(pool, req, rows) & (free == MILLI_PER_DEVICE)
                take = whole & (np.cumsum(whole, axis=1) <= req.devices_per_node)
                after_free = np.where(take, 0, free)
            after[:, 0] = self.fragmentation(pool, cpu_after, after_free, rows)
            valid[:, 0] = True
            return before, after, valid
        share = req.milli_per_device
        slots = free.shape[1]
        fits = eligible_matrix(pool, req, rows) & (free >= share)
        same_earlier = (free[:, :, None] == free[:, None, :]) & fits[:, None, :] & _EARLIER[slots][None, :, :]
        valid = fits & ~same_earlier.any(axis=2)
        node_of, slot_of = np.nonzero(valid)
        states = free[node_of].copy()
        states[np.arange(len(node_of)), slot_of] -= share
        after[node_of, slot_of] = self.fragmentation(pool, cpu_after[node_of], states, rows[node_of])
        return before, after, valid

    def _choices_scalar(self, pool: PoolSnapshot, req: PlacementRequest,
                        rows: IntArray) -> tuple[IntArray, IntArray, BoolArray]:
        """`choices` for a few nodes, one `choices_row` each (same integers as the vectorised path)."""
        width = pool.node_dev_rows.shape[1]
        before = np.zeros(len(rows), dtype=np.int64)
        after = np.zeros((len(rows), width), dtype=np.int64)
        valid = np.zeros((len(rows), width), dtype=np.bool_)
        for i, row in enumerate(rows.tolist()):
            before[i], row_after = self.choices_row(pool, req, row)
            for j, value in enumerate(row_after):
                if value is not None:
                    after[i, j] = value
                    valid[i, j] = True
        return before, after, valid


def sigmoid_thresholds(total_weight: int) -> list[int]:
    """Integer decreases d at which the paper's int(100 x sigmoid(d / weight / 1000)) reaches 1..99.

    With these the FGD score is `bisect_right(thresholds, d)`, exact on integers.
    """
    scale = total_weight * 1000.0

    def score(d: int) -> int:
        return int((1.0 / (1.0 + math.exp(-d / scale))) * 100.0)

    out = []
    for k in range(1, 100):
        d = math.floor(scale * math.log(k / (100 - k))) - 2
        while score(d) < k:
            d += 1
        while score(d - 1) >= k:
            d -= 1
        out.append(d)
    return out
