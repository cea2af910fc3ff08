"""First-fit: the lowest-numbered feasible nodes, and the lowest-indexed free devices on each.

Successive placements of one request would rescan the same full nodes from row 0; `FitCursors` keeps,
per request, the row before which no node fitted, and brings it up to date from the pool's change log
(a node whose capacity changed below it is checked again), so a placement looks only at the nodes from
there on, a growing chunk at a time. The result is the same as scanning every node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementRequest,
    RttTable,
    allocation_for,
    failure,
    feasible_mask,
    place_preferring,
    register_policy,
    static_mask,
)
from computegrid.core.placement.scored import moving_fit_row
from computegrid.core.pool import BoolArray, IntArray, PoolSnapshot

#: rows the first chunk of a scan covers (each next chunk is twice as wide)
FIRST_CHUNK = 64
#: changed rows up to this many are checked again one by one (in a Python set) rather than vectorised
SMALL_CHANGE = 32
#: requests remembered per pool before the cursors are forgotten (a simulator may see many shapes; each
#: cursor holds one boolean per node)
MAX_CURSORS = 1024


@dataclass
class _Cursor:
    up: BoolArray  # the pool's `up` array when made (placing at one site swaps in another: a fresh scan)
    rtt: object  # the latency table it was made with (by identity), when the request has a latency limit
    sure: BoolArray  # up & `static_mask`: where the moving filters alone then decide (see `_surely_fits`)
    position: int  # the pool change-log position it is up to date with
    row: int  # no node before this row fitted the request at `position`


class FitCursors:
    """Per request, the first node row that may fit it (see the module docstring)."""

    def __init__(self) -> None:
        self._pool: PoolSnapshot | None = None
        self._cursors: dict[PlacementRequest, _Cursor] = {}

    def first_rows(self, pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None, count: int) -> IntArray:
        """The first `count` rows in pool order where `feasible_mask` holds; fewer when fewer fit (then all
        of them). Requests with a price limit are not cursored by the caller (prices move outside the log)."""
        if self._pool is not pool or len(self._cursors) >= MAX_CURSORS:
            self._pool, self._cursors = pool, {}
        cursor = self._up_to_date(pool, req, rtt)
        n = pool.node_count
        start = cursor.row
        if count == 1 and start < n and _surely_fits(pool, req, cursor, start):
            return np.array([start], dtype=np.int64)
        found: list[IntArray] = []
        total, lo, width = 0, start, FIRST_CHUNK
        while lo < n and total < count:
            hi = min(n, lo + width)
            hits = np.flatnonzero(feasible_mask(pool, req, rtt, slice(lo, hi)))
            if len(hits):
                found.append(hits + lo)
                total += len(hits)
            lo, width = hi, 2 * width
        rows = np.concatenate(found)[:count] if found else np.zeros(0, dtype=np.int64)
        cursor.row = int(rows[0]) if len(rows) else n
        return rows

    def _up_to_date(self, pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None) -> _Cursor:
        """The request's cursor brought to the pool's present: moved back to the first node before it whose
        capacity changed and that now fits; a new one (row 0) when there is none or it cannot be brought."""
        table = rtt if req.user_region is not None and req.max_rtt_ms is not None else None  # else unused
        cursor = self._cursors.get(req)
        changed = None if cursor is None else pool.changes_since(cursor.position)
        if cursor is None or changed is None or cursor.up is not pool.up or cursor.rtt is not table:
            keep = static_mask(pool, req, rtt)
            cursor = self._cursors[req] = _Cursor(pool.up, table, pool.up if keep is None else pool.up & keep,
                                                  pool.change_count, 0)
            return cursor
        cursor.position = pool.change_count
        start = cursor.row
        if not changed:
            return cursor
        if len(changed) <= SMALL_CHANGE:
            below = sorted({r for r in changed if r < start})
            if not below:
                return cursor
            if _surely_fits(pool, req, cursor, below[0]):
                cursor.row = below[0]
                return cursor
            rows = np.array(below, dtype=np.int64)
        else:
            rows = np.unique(np.array(changed, dtype=np.int64))
            rows = rows[rows < start]
        if len(rows):
            fits = np.flatnonzero(feasible_mask(pool, req, rtt, rows))
            if len(fits):
                cursor.row = int(rows[fits[0]])
        return cursor


def _surely_fits(pool: PoolSnapshot, req: PlacementRequest, cursor: _Cursor, row: int) -> bool:
    """True only if `feasible_mask` holds at `row` (False: it may or may not). A node that is up and passes
    `static_mask` fits when its free CPU, memory and devices do (`moving_fit_row`); a node of several device
    kinds that the static mask leaves out may still fit, so False is not an answer there."""
    return bool(cursor.sure[row]) and moving_fit_row(pool, req, row)


class FirstFit:
    name = "first-fit"

    def __init__(self) -> None:
        self.cursors = FitCursors()

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        """The first `req.nodes` feasible nodes in pool order (all or nothing); a `model_preference` is
        honoured as in `base.place_preferring`."""
        return place_preferring(self._place_one, pool, req, rtt)

    def _place_one(self, pool: PoolSnapshot, req: PlacementRequest,
                   rtt: RttTable | None) -> Placement | PlacementFailure:
        if req.max_price_fen_per_du is None:
            rows = self.cursors.first_rows(pool, req, rtt, req.nodes)
        else:
            rows = np.flatnonzero(feasible_mask(pool, req, rtt))
        if len(rows) < req.nodes:  # every feasible row was found
            return failure(pool, req, rtt, len(rows))
        return Placement(tuple(allocation_for(pool, int(r), req) for r in rows[: req.nodes]), self.name)


register_policy(FirstFit.name, FirstFit)
