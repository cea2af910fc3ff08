"""Score-based policies: filter with the shared filters, score the feasible nodes, take the best.

A policy that subclasses `ScoredPolicy` supplies `node_scores` (an integer score per node,
higher is better, that depends only on that node's state and the request's shape) and may
override `order_devices` (which fitting devices a fractional member takes). Scores are cached
per request shape and per node, keyed by the node's `version`, so a placement recomputes only
the nodes that changed since the same shape was last scored. Ties go to the node first in pool
order, and a gang takes the best `nodes` distinct nodes, all or nothing.

Fast path (pools whose nodes each hold one kind of device, the usual case): the feasible set
splits into a part that moves with the pool (node up excepted: CPU, memory and device fit
for the request's milli, CPU and memory) and a static part (tier, latency, accepted kinds).
`RankCache` keeps, per request shape, every node's score where the moving part fits (else
`_UNFIT`) and brings it up to date from the pool's change log, so a decision revisits only
the nodes that changed since that shape was last placed; the static part and `up` are one
mask applied on top. The result is exactly the slow path's (`feasible_mask` + `ScoreCache`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementRequest,
    RttTable,
    device_eligibility,
    eligible_devices,
    failure,
    feasible_mask,
    place_preferring,
    static_mask,
)
from computegrid.core.placement.gang import gang_failure, gang_spread, group_codes, place_whole_gang
from computegrid.core.pool import BoolArray, IntArray, NodeAllocation, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE

_UNFIT = np.iinfo(np.int64).min
#: up to this many changed nodes a `RankCache` entry is updated node by node rather than vectorised
SMALL_CHANGE = 16
ShapeKey = tuple[int, int, int, frozenset[str], float]


def shape_key(pool: PoolSnapshot, req: PlacementRequest) -> ShapeKey:
    """What a node score may depend on: milli per node, CPU (milli), memory (MiB), accepted kinds.

    When every node's devices are of one kind, a feasible node's devices are all eligible whatever
    the request accepts, so the kinds drop out of the key and more requests share cached scores.
    """
    uniform = pool.static_cache.get("uniform-nodes")
    if uniform is None:
        same_model = np.ones(pool.node_count, dtype=np.bool_)
        if len(pool.dev_node):
            first = pool.dev_start[pool.dev_node]
            same = (pool.dev_model_code == pool.dev_model_code[first]) & (pool.dev_mem_gb == pool.dev_mem_gb[first])
            same_model = np.bincount(pool.dev_node[~same], minlength=pool.node_count) == 0
        uniform = pool.static_cache["uniform-nodes"] = bool(same_model.all())
    if uniform:
        return (req.milli_per_node, req.cpu_milli, req.memory_mb, frozenset(), 0.0)
    return (req.milli_per_node, req.cpu_milli, req.memory_mb, req.models, req.min_device_memory_gb)


class ScoreCache:
    """Per-node integer scores per request shape, valid while the node's version is unchanged."""

    def __init__(self) -> None:
        self._pool: PoolSnapshot | None = None
        self._entries: dict[Any, tuple[IntArray, IntArray]] = {}

    def scores(self, pool: PoolSnapshot, key: Any, mask: BoolArray,
               compute: Callable[[IntArray], IntArray]) -> IntArray:
        """Scores of every node for `key`, valid where `mask` is set; `compute(stale_rows)` fills the missing."""
        if self._pool is not pool:
            self._pool = pool
            self._entries = {}
        entry = self._entries.get(key)
        if entry is None:
            entry = (np.zeros(pool.node_count, dtype=np.int64), np.full(pool.node_count, -1, dtype=np.int64))
            self._entries[key] = entry
        values, seen = entry
        stale = np.flatnonzero(mask & (seen != pool.version))
        if len(stale):
            values[stale] = compute(stale)
            seen[stale] = pool.version[stale]
        return values


def uniform_nodes(pool: PoolSnapshot) -> bool:
    """Whether every node's devices are of one kind (one model and one memory size), cached on the pool."""
    shape_key(pool, PlacementRequest())
    return bool(pool.static_cache["uniform-nodes"])


def moving_fit(pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> BoolArray:
    """Per node of `rows`: free CPU, memory and devices fit one member (node up and kinds not checked).

    On a pool of uniform nodes, `feasible_mask` = `pool.up` & `static_mask` & this.
    """
    ok = (pool.cpu_free[rows] >= req.cpu_milli) & (pool.mem_free[rows] >= req.memory_mb)
    if req.milli_per_node >= MILLI_PER_DEVICE:
        ok &= pool.free_whole[rows] >= req.devices_per_node
    elif req.milli_per_node:
        ok &= pool.max_free[rows] >= req.milli_per_device
    return ok


def moving_fit_row(pool: PoolSnapshot, req: PlacementRequest, row: int) -> bool:
    """`moving_fit` of one node, without numpy calls."""
    if pool.cpu_free[row] < req.cpu_milli or pool.mem_free[row] < req.memory_mb:
        return False
    if req.milli_per_node >= MILLI_PER_DEVICE:
        return bool(pool.free_whole[row] >= req.devices_per_node)
    if req.milli_per_node:
        return bool(pool.max_free[row] >= req.milli_per_device)
    return True


@dataclass
class _RankEntry:
    scores: IntArray  # last computed score per node
    seen: IntArray  # node version the score was computed at (-1: never)
    ranked: IntArray  # score where the moving part fits, else _UNFIT
    position: int  # pool change-log position the entry is up to date with


class RankCache:
    """Per request shape: every node's score where the shape's moving filters fit, else `_UNFIT`.

    Entries are brought up to date from the pool's change log (see the module docstring); scores are
    recomputed only for fitting nodes whose version changed, as in `ScoreCache`.
    """

    def __init__(self) -> None:
        self._pool: PoolSnapshot | None = None
        self._entries: dict[Any, _RankEntry] = {}

    def ranked(self, pool: PoolSnapshot, key: Any, fits: Callable[[IntArray], BoolArray],
               fits_one: Callable[[int], bool], compute: Callable[[IntArray], IntArray]) -> IntArray:
        """The shape's ranked array (read-only for the caller).

        `fits(rows)` / `fits_one(row)`: whether the moving filters pass; `compute(rows)`: scores of fitting rows.
        """
        if self._pool is not pool:
            self._pool = pool
            self._entries = {}
        n = pool.node_count
        entry = self._entries.get(key)
        changed = None if entry is None else pool.changes_since(entry.position)
        position = pool.change_count
        if entry is None:
            entry = _RankEntry(np.zeros(n, dtype=np.int64), np.full(n, -1, dtype=np.int64),
                               np.full(n, _UNFIT, dtype=np.int64), position)
            self._entries[key] = entry
        elif changed is not None and not changed:
            return entry.ranked
        if changed is not None and len(changed) <= SMALL_CHANGE:
            self._update_few(pool, entry, set(changed), fits_one, compute)
            entry.position = position
            return entry.ranked
        if changed is None or len(changed) > n // 16:
            rows = np.arange(n, dtype=np.int64)
        else:
            rows = np.fromiter(set(changed), dtype=np.int64)
        ok = fits(rows)
        fit_rows = rows[ok]
        stale = fit_rows[entry.seen[fit_rows] != pool.version[fit_rows]]
        if len(stale):
            entry.scores[stale] = compute(stale)
            entry.seen[stale] = pool.version[stale]
        entry.ranked[rows] = np.where(ok, entry.scores[rows], _UNFIT)
        entry.position = position
        return entry.ranked


    @staticmethod
    def _update_few(pool: PoolSnapshot, entry: _RankEntry, changed: set[int],
                    fits_one: Callable[[int], bool], compute: Callable[[IntArray], IntArray]) -> None:
        """The update of `ranked` for a few changed rows, element by element (numpy's per-call cost dominates)."""
        rows = sorted(changed)
        ok = [fits_one(r) for r in rows]
        seen, version, scores, ranked = entry.seen, pool.version, entry.scores, entry.ranked
        stale = [r for r, fit in zip(rows, ok, strict=True) if fit and seen[r] != version[r]]
        if stale:
            fresh = compute(np.array(stale, dtype=np.int64)).tolist()
            for r, value in zip(stale, fresh, strict=True):
                scores[r] = value
                seen[r] = version[r]
        for r, fit in zip(rows, ok, strict=True):
            ranked[r] = scores[r] if fit else _UNFIT


class ScoredPolicy:
    """Base of the score-based policies (see the module docstring)."""

    name = "scored"

    def __init__(self) -> None:
        self.cache = ScoreCache()
        self.ranks = RankCache()
        self._canonical: dict[ShapeKey, PlacementRequest] = {}

    # ------------------------------------------------------------------ hooks

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """Integer score of each of `rows` (feasible nodes) for the request; higher is better."""
        raise NotImplementedError

    def order_devices(self, pool: PoolSnapshot, row: int, req: PlacementRequest, candidates: IntArray) -> IntArray:
        """Fitting device rows of node `row` in the order the member takes them.

        Whole devices: lowest index first. A fractional share: the fitting device with the
        least free capacity (best fit), lowest index on ties.
        """
        if req.milli_per_node >= MILLI_PER_DEVICE or len(candidates) <= 1:
            return candidates
        return candidates[np.argsort(pool.dev_free[candidates], kind="stable")]

    # ------------------------------------------------------------------ the contract

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        """The best-scoring feasible nodes for the request (all or nothing); never changes the pool.

        With a `model_preference`, the first preferred model with room wins (see `base.place_preferring`).
        """
        return place_preferring(self._place_one, pool, req, rtt, self.group_score, self._place_gang)

    def group_score(self, pool: PoolSnapshot, req: PlacementRequest, placement: Placement) -> int:
        """How much the policy likes a gang's placement on one site (or region) against another: the sum of
        its members' node scores; higher is better (see `gang.place_whole_gang`)."""
        rows = np.array([pool.node_row[a.node_id] for a in placement.allocations], dtype=np.int64)
        return int(self.node_scores(pool, replace(req, within=None), rows).sum())

    def _place_one(self, pool: PoolSnapshot, req: PlacementRequest,
                   rtt: RttTable | None) -> Placement | PlacementFailure:
        """`place` without a model preference."""
        uniform = pool.static_cache.get("uniform-nodes")
        if uniform is None:
            uniform = uniform_nodes(pool)
        if uniform and type(self).choose is ScoredPolicy.choose:
            return self._place_fast(pool, req, rtt)
        mask = feasible_mask(pool, req, rtt)
        found = int(np.count_nonzero(mask))
        if found < req.nodes:
            return failure(pool, req, rtt, found)
        chosen = self.choose(pool, req, mask)
        return Placement(tuple(self.allocation(pool, r, req) for r in chosen), self.name)

    def _place_fast(self, pool: PoolSnapshot, req: PlacementRequest,
                    rtt: RttTable | None) -> Placement | PlacementFailure:
        """`place` on a pool of uniform nodes, through `RankCache` (same result as the slow path)."""
        ranked = self._ranked(pool, req, rtt)
        if req.nodes == 1:
            best = int(np.argmax(ranked))
            if ranked[best] == _UNFIT:
                return failure(pool, req, rtt, 0)
            return Placement((self.allocation(pool, best, req),), self.name)
        rows = np.flatnonzero(ranked != _UNFIT)
        if len(rows) < req.nodes:
            return failure(pool, req, rtt, len(rows))
        order = np.lexsort((rows, -ranked[rows]))[: req.nodes]
        return Placement(tuple(self.allocation(pool, int(r), req) for r in rows[order]), self.name)

    def _place_gang(self, pool: PoolSnapshot, req: PlacementRequest,
                    rtt: RttTable | None) -> Placement | PlacementFailure:
        """`gang.place_whole_gang` with this policy, in one pass over the ranked nodes on uniform pools: per
        site (or region) the best `nodes` members, and the group whose members' scores sum highest (the
        first in pool order on ties), as trying each group in turn would choose."""
        uniform = pool.static_cache.get("uniform-nodes")
        if uniform is None:
            uniform = uniform_nodes(pool)
        if not uniform or type(self).choose is not ScoredPolicy.choose:
            return place_whole_gang(self._place_one, pool, req, rtt, self.group_score)
        spread = gang_spread(req)
        ranked = self._ranked(pool, req, rtt)
        rows = np.flatnonzero(ranked != _UNFIT)
        codes, names = group_codes(pool, spread)
        group = codes[rows]
        counts = np.bincount(group, minlength=len(names))
        fitting = np.flatnonzero(counts >= req.nodes)
        if not len(fitting):
            return gang_failure(pool, req, rtt, counts, len(rows), spread)
        if len(fitting) < len(names):
            inside = (counts >= req.nodes)[group]
            rows, group = rows[inside], group[inside]
        order = np.lexsort((rows, -ranked[rows], group))  # by group, best first, then pool order
        rows, group = rows[order], group[order]
        taken = (np.arange(len(rows)) - np.searchsorted(group, group, side="left")) < req.nodes
        sums = np.zeros(len(names), dtype=np.int64)
        np.add.at(sums, group[taken], ranked[rows[taken]])
        best = int(fitting[int(np.argmax(sums[fitting]))])
        chosen = rows[taken & (group == best)]
        return Placement(tuple(self.allocation(pool, int(r), req) for r in chosen), self.name)

    def _ranked(self, pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None) -> IntArray:
        """Per node, its score where it could take one member now (uniform pools), else `_UNFIT`."""
        key = shape_key(pool, req)
        # Scores on uniform nodes do not depend on the accepted kinds (a node that passes the static
        # filters has every device eligible), so they are computed for a request that accepts any kind.
        canonical = self._canonical.get(key)
        if canonical is None:
            canonical = self._canonical[key] = replace(req, models=frozenset(), min_device_memory_gb=0.0, tier=None,
                                                       max_price_fen_per_du=None, image=False, within=None,
                                                       user_region=None, max_rtt_ms=None, nodes=1)
        ranked = self.ranks.ranked(pool, key, lambda rows: moving_fit(pool, req, rows),
                                   lambda row: moving_fit_row(pool, req, row),
                                   lambda stale: self.node_scores(pool, canonical, stale))
        keep = static_mask(pool, req, rtt)
        if keep is not None:
            ranked = np.where(pool.up & keep, ranked, _UNFIT)
        elif not pool.up.all():
            ranked = np.where(pool.up, ranked, _UNFIT)
        return ranked

    def choose(self, pool: PoolSnapshot, req: PlacementRequest, mask: BoolArray) -> list[int]:
        """The `req.nodes` feasible rows with the highest scores, ties to the row first in pool order."""
        scores = self.cache.scores(pool, shape_key(pool, req), mask, lambda stale: self.node_scores(pool, req, stale))
        ranked = np.where(mask, scores, _UNFIT)
        if req.nodes == 1:
            return [int(np.argmax(ranked))]
        rows = np.flatnonzero(mask)
        order = np.lexsort((rows, -ranked[rows]))[: req.nodes]
        return [int(r) for r in rows[order]]

    def allocation(self, pool: PoolSnapshot, row: int, req: PlacementRequest) -> NodeAllocation:
        """The member's allocation on node `row`."""
        devices: tuple[int, ...] = ()
        if req.milli_per_node:
            candidates = self.order_devices(pool, row, req, eligible_devices(pool, row, req))
            devices = tuple(pool.dev_index[candidates[: req.devices_per_node]].tolist())
        return NodeAllocation(int(pool.node_ids[row]), devices,
                              req.milli_per_device if req.milli_per_node else 0, req.cpu_milli, req.memory_mb)


def eligible_matrix(pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> BoolArray:
    """Per node of `rows` and device slot: the device exists and is of a kind the request accepts."""
    idx = pool.node_dev_rows[rows]
    if not req.milli_per_node:
        return idx >= 0
    dev_ok = device_eligibility(pool, req)[0]
    return (idx >= 0) & dev_ok[np.maximum(idx, 0)] if len(dev_ok) else idx >= 0


def request_milli(req: PlacementRequest) -> int:
    """Milli-devices one member takes in total (devices x share)."""
    return req.devices_per_node * req.milli_per_device if req.milli_per_node else 0
