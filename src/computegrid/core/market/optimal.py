"""Exact clearing for small instances: a mixed-integer program solved by scipy's HiGHS.

Variables: x[e] in {0, 1} for each pair e = (bid b, offer o) the bid accepts, with room for its
devices and floor <= limit; p[c] >= 0 the price of each class. Maximise sum of w[e] x[e] with
w[e] = devices x du rate x hours x (limit - floor), subject to
- each bid filled at most once:                sum over o of x[b, o] <= 1
- offer capacity:                               sum over b of devices[b] x[b, o] <= devices[o]
- the class price at or above matched floors:  p[c] >= floor[o] x[b, o]
- the class price at or below matched limits:  p[c] <= limit[b] + M (1 - sum over o in c of x[b, o])
The reference for tests and the benchmark; too slow for a live round of thousands of orders.
Needs scipy (imported when called).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from computegrid.core.catalog import Catalog
from computegrid.core.market.book import OrderBook, build_book
from computegrid.core.market.orders import Bid, Offer
from computegrid.core.market.result import Clearing, build_clearing


class SolverFailed(RuntimeError):
    """The MILP solver stopped without a proven optimum (time limit or numerical trouble)."""


def candidate_pairs(book: OrderBook) -> list[tuple[int, int]]:
    """Every (bid, offer) pair that could trade: constraints met, room for the bid, floor <= limit."""
    pairs = []
    for b, bid in enumerate(book.bids):
        for pool in book.bid_pools[b].tolist():
            for o in book.pools[pool].tolist():
                if int(book.offer_floor[o]) > bid.limit_fen_per_du:
                    break  # a pool is sorted by floor
                if int(book.offer_devices[o]) >= bid.devices:
                    pairs.append((b, o))
    return pairs


def optimal_pairs(book: OrderBook, *, time_limit_s: float = 60.0) -> list[tuple[int, int]]:
    """The surplus-maximising priceable set of (bid index, offer index) pairs."""
    # scipy is needed only here (tests, benchmarks), so the market imports without it
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    pairs = candidate_pairs(book)
    if not pairs:
        return []
    n_pairs = len(pairs)
    n_classes = len(book.classes)
    n_vars = n_pairs + n_classes
    bid_idx = np.array([b for b, _ in pairs], dtype=np.int64)
    offer_idx = np.array([o for _, o in pairs], dtype=np.int64)
    pair_class = book.offer_class[offer_idx]
    devices = np.array([book.bids[b].devices for b in bid_idx.tolist()], dtype=np.float64)
    limits = np.array([book.bids[b].limit_fen_per_du for b in bid_idx.tolist()], dtype=np.float64)
    floors = book.offer_floor[offer_idx].astype(np.float64)
    weight = np.array([float(book.class_rate[int(c)] * book.bid_hours[b]) for b, c in
                       zip(bid_idx.tolist(), pair_class.tolist(), strict=True)]) * devices * (limits - floors)
    big_m = float(max(b.limit_fen_per_du for b in book.bids)) + 1.0

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    lower: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    row = 0
    pair_ids = np.arange(n_pairs)

    def add(r: np.ndarray, c: np.ndarray, v: np.ndarray, lb: np.ndarray, ub: np.ndarray, count: int) -> None:
        nonlocal row
        rows.append(r + row)
        cols.append(c)
        vals.append(v)
        lower.append(lb)
        upper.append(ub)
        row += count

    # each bid at most once
    bids_used, bid_row = np.unique(bid_idx, return_inverse=True)
    add(bid_row, pair_ids, np.ones(n_pairs), np.full(len(bids_used), -np.inf), np.ones(len(bids_used)),
        len(bids_used))
    # offer capacity
    offers_used, offer_row = np.unique(offer_idx, return_inverse=True)
    add(offer_row, pair_ids, devices, np.full(len(offers_used), -np.inf),
        book.offer_devices[offers_used].astype(np.float64), len(offers_used))
    # p[c] - floor x >= 0, one row per pair
    add(np.concatenate([pair_ids, pair_ids]), np.concatenate([n_pairs + pair_class, pair_ids]),
        np.concatenate([np.ones(n_pairs), -floors]), np.zeros(n_pairs), np.full(n_pairs, np.inf), n_pairs)
    # p[c] + M sum_{o in c} x[b, o] <= limit + M, one row per (bid, class)
    bc_keys, bc_row = np.unique(bid_idx * max(1, n_classes) + pair_class, return_inverse=True)
    bc_class = bc_keys % max(1, n_classes)
    bc_limit = np.array([book.bids[int(k // max(1, n_classes))].limit_fen_per_du for k in bc_keys], dtype=float)
    n_bc = len(bc_keys)
    add(np.concatenate([np.arange(n_bc), bc_row]), np.concatenate([n_pairs + bc_class, pair_ids]),
        np.concatenate([np.ones(n_bc), np.full(n_pairs, big_m)]), np.full(n_bc, -np.inf), bc_limit + big_m, n_bc)

    matrix = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(row, n_vars)).tocsr()
    cost = np.concatenate([-weight, np.zeros(n_classes)])
    integrality = np.concatenate([np.ones(n_pairs), np.zeros(n_classes)])
    bounds = Bounds(np.zeros(n_vars), np.concatenate([np.ones(n_pairs), np.full(n_classes, big_m)]))
    result = milp(cost, constraints=LinearConstraint(matrix, np.concatenate(lower), np.concatenate(upper)),
                  integrality=integrality, bounds=bounds,
                  options={"time_limit": time_limit_s, "mip_rel_gap": 1e-9})
    if result.status != 0 or result.x is None:
        raise SolverFailed(f"MILP solver stopped without an optimum: {result.message}")
    chosen = np.flatnonzero(result.x[:n_pairs] > 0.5)
    return [pairs[int(i)] for i in chosen]


def clear_optimal(bids: Sequence[Bid], offers: Sequence[Offer], catalog: Catalog, *, at_ms: int,
                  time_limit_s: float = 60.0) -> Clearing:
    """Exact clearing (same model and pricing rule as `clear`) for small instances.

    Raises SolverFailed if HiGHS does not prove optimality within `time_limit_s` seconds.
    """
    book = build_book(bids, offers, catalog, at_ms=at_ms)
    return build_clearing(book, optimal_pairs(book, time_limit_s=time_limit_s), at_ms=at_ms)
