"""Score-based policies: filter with the shared filters, score the feasible nodes, take the best.

A policy that subclasses `ScoredPolicy` supplies `node_scores` (an integer score per node,
higher is better, that depends only on that node's state and the request's shape) and may
override `order_devices` (which fitting devices a fractional member takes). Scores are cached
per request shape and per node, keyed by the node's `version`, so a placement recomputes only
the nodes that changed since the same shape was last scored. Ties go to the node first in pool
order, and a gang takes the best `nodes` distinct nodes, all or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
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
)
from computegrid.core.pool import BoolArray, IntArray, NodeAllocation, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE

_UNFIT = np.iinfo(np.int64).min
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


class ScoredPolicy:
    """Base of the score-based policies (see the module docstring)."""

    name = "scored"

    def __init__(self) -> None:
        self.cache = ScoreCache()

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
        """The best-scoring feasible nodes for the request (all or nothing); never changes the pool."""
        mask = feasible_mask(pool, req, rtt)
        found = int(np.count_nonzero(mask))
        if found < req.nodes:
            return failure(pool, req, rtt, found)
        chosen = self.choose(pool, req, mask)
        return Placement(tuple(self.allocation(pool, r, req) for r in chosen), self.name)

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
            devices = tuple(int(pool.dev_index[r]) for r in candidates[: req.devices_per_node])
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
