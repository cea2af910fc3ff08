"""Fast market clearing: match bids to offers for surplus at one uniform price per class.

See docs/market.md. A bid is filled whole from one offer; the surplus of a match is
devices x du per device-hour x hours x (limit - floor). The algorithm:
1. Auction (`auction.auction_assign`): bids compete for offers with internal bid prices, so a bid
   with a good alternative yields to one without.
2. Price repair: in a class whose highest matched floor exceeds its lowest matched limit, keep the
   pairs of the threshold that keeps most surplus (`repair_prices`).
3. Fill: the bids still unmatched, highest limit first, each take the offer with room that adds
   most surplus and keeps its class priceable. Within a pool of alike offers only the cheapest
   with room can be best, found by a per-size pointer that only moves forward.
Ties go to the lower floor, then the pool order (class, tier, memory, window), then the offer id.
The result is a deterministic function of the set of orders, whatever their input order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from computegrid.core.catalog import Catalog
from computegrid.core.market.auction import AuctionSettings, auction_assign
from computegrid.core.market.book import FloatArray, IntArray, OrderBook, build_book
from computegrid.core.market.orders import Bid, Offer
from computegrid.core.market.result import Clearing, build_clearing

Bounds = Mapping[int, tuple[int, int]]  # class index -> (highest floor, lowest limit) already committed


class _State:
    """Residual capacity, per-class price bounds and the cheapest-with-room pointers (the fill pass)."""

    def __init__(self, book: OrderBook, capacity: IntArray, bounds: Bounds):
        self.book = book
        self.residual: list[int] = capacity.tolist()
        self.sizes = sorted({b.devices for b in book.bids})
        self.size_pos = {s: i for i, s in enumerate(self.sizes)}
        n_pools = len(book.pools)
        self.pool_offers = [p.tolist() for p in book.pools]
        self.pool_floor = [book.offer_floor[p].tolist() for p in book.pools]
        self.ptr = [[0] * len(self.sizes) for _ in range(n_pools)]
        self.best: FloatArray = np.full((n_pools, max(1, len(self.sizes))), np.inf)
        for p in range(n_pools):
            self._advance(p)
        self.lo: FloatArray = np.full(len(book.classes), -np.inf)  # highest matched floor
        self.hi: FloatArray = np.full(len(book.classes), np.inf)  # lowest matched limit
        for c, (lo, hi) in bounds.items():
            self.lo[c], self.hi[c] = lo, hi
        self.pool_rate = book.class_rate_f[book.pool_class]
        self.pool_class = book.pool_class
        self.assigned: dict[int, int] = {}  # bid -> offer
        self.offer_pool = np.zeros(len(book.offers), dtype=np.int64)
        for p, members in enumerate(book.pools):
            self.offer_pool[members] = p

    def _advance(self, pool: int) -> None:
        offers = self.pool_offers[pool]
        floors = self.pool_floor[pool]
        ptrs = self.ptr[pool]
        row = self.best[pool]
        for s, size in enumerate(self.sizes):
            i = ptrs[s]
            while i < len(offers) and self.residual[offers[i]] < size:
                i += 1
            ptrs[s] = i
            row[s] = floors[i] if i < len(offers) else np.inf

    def best_offer(self, bid: int) -> int:
        """The offer adding most surplus for `bid` that has room and keeps the class priceable, or -1."""
        b = self.book.bids[bid]
        pools = self.book.bid_pools[bid]
        if len(pools) == 0:
            return -1
        limit = float(b.limit_fen_per_du)
        s = self.size_pos[b.devices]
        floor = self.best[pools, s]
        cls = self.pool_class[pools]
        ok = (floor <= limit) & (self.lo[cls] <= limit) & (floor <= self.hi[cls])
        if not ok.any():
            return -1
        value = np.where(ok, self.pool_rate[pools] * (limit - np.where(ok, floor, 0.0)), -1.0)
        pool = int(pools[int(np.argmax(value))])
        offer: int = self.pool_offers[pool][self.ptr[pool][s]]
        return offer

    def assign(self, bid: int, offer: int) -> None:
        b = self.book.bids[bid]
        c = int(self.book.offer_class[offer])
        self.residual[offer] -= b.devices
        self.assigned[bid] = offer
        self.lo[c] = max(self.lo[c], float(self.book.offer_floor[offer]))
        self.hi[c] = min(self.hi[c], float(b.limit_fen_per_du))
        self._advance(int(self.offer_pool[offer]))


def merit_order(book: OrderBook) -> list[int]:
    """Bid indices by limit (highest first), then devices (most first), then id (the book is id-sorted)."""
    limits = np.array([b.limit_fen_per_du for b in book.bids], dtype=np.int64)
    devices = np.array([b.devices for b in book.bids], dtype=np.int64)
    return [int(i) for i in np.lexsort((np.arange(len(book.bids)), -devices, -limits))]


def greedy_pairs(book: OrderBook, *, capacity: IntArray | None = None,
                 bounds: Bounds | None = None) -> list[tuple[int, int]]:
    """Merit order alone (the baseline): each bid, highest limit first, takes its best priceable offer."""
    state = _State(book, book.offer_devices if capacity is None else capacity, bounds or {})
    _fill(state, merit_order(book))
    return sorted(state.assigned.items())


def fast_pairs(book: OrderBook, settings: AuctionSettings = AuctionSettings(), *,
               capacity: IntArray | None = None, bounds: Bounds | None = None) -> list[tuple[int, int]]:
    """(bid index, offer index) pairs: auction, per-class price repair, then a merit-order fill.

    `capacity`: devices available per offer (default: all). `bounds`: per class, the (highest floor,
    lowest limit) of trades already committed (running spot leases), which every new pair must respect.
    """
    capacity = book.offer_devices if capacity is None else capacity
    bounds = bounds or {}
    order = merit_order(book)
    auctioned, hopeless = auction_assign(book, order, settings, capacity)
    assigned = repair_prices(book, auctioned, bounds)
    state = _State(book, capacity, bounds)
    for bid, offer in sorted(assigned.items()):
        state.assign(bid, offer)
    _fill(state, [b for b in order if b not in hopeless])
    return sorted(state.assigned.items())


def _fill(state: _State, order: list[int]) -> None:
    for bid in order:
        if bid not in state.assigned:
            offer = state.best_offer(bid)
            if offer >= 0:
                state.assign(bid, offer)


def repair_prices(book: OrderBook, assigned: dict[int, int], bounds: Bounds | None = None) -> dict[int, int]:
    """Drop the least surplus so every class has a price within all its pairs' [floor, limit].

    For each class, keep the pairs with floor <= t <= limit for the threshold t that keeps most
    surplus; t is one of the matched floors (or the committed floor) and lies in the committed bounds.
    """
    bounds = bounds or {}
    by_class: dict[int, list[int]] = {}
    for bid, offer in assigned.items():
        by_class.setdefault(int(book.offer_class[offer]), []).append(bid)
    kept = dict(assigned)
    for c, bids in by_class.items():
        floors = np.array([book.offer_floor[assigned[b]] for b in bids], dtype=np.int64)
        limits = np.array([book.bids[b].limit_fen_per_du for b in bids], dtype=np.int64)
        lo, hi = bounds.get(c, (-1, np.iinfo(np.int64).max))
        if max(int(floors.max()), lo) <= min(int(limits.min()), hi):
            continue
        weight = np.array([float(book.bid_hours[b]) * book.bids[b].devices for b in bids]) * (limits - floors)
        thresholds = np.unique(np.concatenate([floors, [lo]] if lo >= 0 else [floors]))
        thresholds = thresholds[(thresholds >= lo) & (thresholds <= hi)]
        if len(thresholds) == 0:
            for b in bids:
                del kept[b]
            continue
        keep = (floors[None, :] <= thresholds[:, None]) & (limits[None, :] >= thresholds[:, None])
        best = int(np.argmax(keep @ weight))
        for b, ok in zip(bids, keep[best].tolist(), strict=True):
            if not ok:
                del kept[b]
    return kept


def clear(bids: Sequence[Bid], offers: Sequence[Offer], catalog: Catalog, *, at_ms: int) -> Clearing:
    """One clearing round at `at_ms` (epoch ms): matches and a uniform price per class (fen per du).

    Every bid's constraints hold, no offer is filled beyond its devices, and each class price lies in
    [floor, limit] of every matched pair in the class. Offers whose window ended by `at_ms` are
    ignored; reserved bids whose window has started stay unmatched. Raises OrderError on bad orders
    (duplicate ids, unknown models, a model the catalog cannot price per du).
    """
    book = build_book(bids, offers, catalog, at_ms=at_ms)
    return build_clearing(book, fast_pairs(book), at_ms=at_ms)
