"""The assignment phase of fast clearing: an ascending auction over offers (after Bertsekas).

Holders of an offer carry internal bid prices q (fen per du). A bid of s devices can get in at
an offer at its floor when the offer has room; otherwise it displaces holders, lowest q first,
and must raise the offer's bid revenue, counting devices it leaves free at the floor: per du it
pays more than (sum of q x devices displaced - floor x (devices freed - s)) / s. So a small bid
cannot push out a large one and leave most of its devices idle, and each displacement raises an
offer's revenue, which bounds the number of rounds.

Each unplaced bid takes the offer worth most to it, devices x du rate x (limit - entry price), and
bids there what makes it indifferent to its second choice plus an increment `eps` (never above its
limit). Displaced bids bid again. A bid with a good alternative bids low and yields the offer to
one without, which is what a greedy pass in merit order gets wrong. The internal prices only rank
holders; the class price is set afterwards by the common pricing rule (see `result`).

Candidates per bid: in each pool it accepts, the `per_pool` cheapest offers with room for its
size; of those, the `total` best by value at floor. Bid events are capped at `events_per_bid` x
bids (a count, so the result stays deterministic); bids still unplaced go to the fill pass.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from computegrid.core.market.book import IntArray, OrderBook


@dataclass(frozen=True)
class AuctionSettings:
    """Tuning of the auction phase. `eps_per_mille`: the bid increment as a share of the limit (per mille)."""

    eps_per_mille: int = 10
    per_pool: int = 3
    total: int = 16
    events_per_bid: int = 8


def _heads(book: OrderBook, devices: list[int], sizes: list[int], per_pool: int) -> npt.NDArray[np.int64]:
    """[pool, size, k]: the cheapest `per_pool` offers with room for each size (by floor, then id); -1 pads."""
    heads = np.full((len(book.pools), len(sizes), per_pool), -1, dtype=np.int64)
    for p, members in enumerate(book.pools):
        filled = [0] * len(sizes)
        for o in members.tolist():
            for s, size in enumerate(sizes):
                if devices[o] >= size and filled[s] < per_pool:
                    heads[p, s, filled[s]] = o
                    filled[s] += 1
            if filled[-1] >= per_pool:
                break  # sizes ascend: the largest size's list fills last
    return heads


_SMALL = 64  # up to this many heads are ranked in plain Python, more with numpy first

Candidate = tuple[float, int, int, float]  # (value at floor per device, price slot, offer, du rate)


class _Candidates:
    """Each bid's candidate offers: the best `total` by value at floor among its pools' heads."""

    def __init__(self, book: OrderBook, heads: npt.NDArray[np.int64], total: int, n_sizes: int):
        self._book = book
        self._total = total
        self._n_sizes = n_sizes
        floor = book.offer_floor.astype(np.float64)
        # per size, contiguous [pool, k] tables of head offers and their floors (inf where no head)
        self._heads = [np.ascontiguousarray(heads[:, s, :]) for s in range(heads.shape[1])]
        self._head_floor = [np.where(h >= 0, floor[np.maximum(h, 0)], np.inf) for h in self._heads]
        self._pool_rate = book.class_rate_f[book.pool_class]
        self._floor: list[float] = floor.tolist()
        self._rate: list[float] = book.class_rate_f[book.offer_class].tolist()

    def of(self, bid: int, size_pos: int) -> list[Candidate]:
        """Best value first; ties by lower floor, then lower offer index."""
        limit = self._book.bids[bid].limit_fen_per_du
        pools = self._book.bid_pools[bid]
        floor, rate, n_sizes = self._floor, self._rate, self._n_sizes
        heads = self._heads[size_pos]
        if len(pools) * heads.shape[1] <= _SMALL:
            offers = heads[pools].ravel().tolist()
        else:
            value = (self._pool_rate[pools][:, None] * (limit - self._head_floor[size_pos][pools])).ravel()
            top = np.argpartition(value, len(value) - self._total)[-self._total:] if len(value) > self._total \
                else np.arange(len(value))
            offers = heads[pools].ravel()[top].tolist()
        ranked = [(-rate[o] * (limit - floor[o]), floor[o], o) for o in offers if o >= 0 and floor[o] <= limit]
        ranked.sort()
        return [(-v, o * n_sizes + size_pos, o, rate[o]) for v, _, o in ranked[:self._total]]


def auction_assign(book: OrderBook, order: list[int], settings: AuctionSettings,
                   capacity: IntArray | None = None) -> tuple[dict[int, int], set[int]]:
    """Bid index -> offer index after the auction (bids first taken in `order`), and the bids that
    cannot match at all: no offer they accept has room for them at a floor within their limit.

    `capacity`: devices available per offer (default: each offer's devices).
    """
    if not book.bids or not book.offers:
        return {}, set(range(len(book.bids)))
    devices_available = book.offer_devices if capacity is None else capacity
    sizes = sorted({b.devices for b in book.bids})
    size_pos = {s: i for i, s in enumerate(sizes)}
    cap = devices_available.tolist()
    finder = _Candidates(book, _heads(book, cap, sizes, settings.per_pool), settings.total, len(sizes))
    rate = book.class_rate_f[book.offer_class].tolist()
    floor = book.offer_floor.tolist()
    devices = [b.devices for b in book.bids]
    limit = [b.limit_fen_per_du for b in book.bids]
    n_sizes = len(sizes)
    free = list(cap)
    holders: list[list[tuple[int, int, int]]] = [[] for _ in floor]  # (bid price, -devices, bid), ascending
    # price[o * n_sizes + s]: fen per du for a bid of sizes[s] devices to get in at offer o, or None
    # when not computed since the offer last changed
    price: list[float | None] = [None] * (len(floor) * n_sizes)

    def displace(o: int, size: int) -> tuple[float, int]:
        """Entry price at a full offer o, and how many holders (lowest bid first) it displaces."""
        if cap[o] < size:
            return math.inf, 0
        room, freed, paid, k = free[o], 0, 0, 0
        for q, neg_n, _ in holders[o]:
            k += 1
            freed -= neg_n
            paid -= q * neg_n
            if room + freed >= size:
                break
        # the newcomer must raise the offer's bid revenue, counting devices left free at the floor
        return max(floor[o], (paid - floor[o] * (freed - size)) // size + 1), k

    none_row: list[float | None] = [None] * n_sizes
    candidates: list[list[Candidate] | None] = [None] * len(book.bids)
    hopeless: set[int] = set()
    increment = [max(1, lim * settings.eps_per_mille // 1000) for lim in limit]
    assigned: dict[int, int] = {}
    queue = deque(order)  # displaced bids join the back
    budget = settings.events_per_bid * len(book.bids)
    while queue and budget > 0:
        budget -= 1
        b = queue.popleft()
        size = devices[b]
        s = size_pos[size]
        cands = candidates[b]
        if cands is None:
            cands = finder.of(b, s)
            candidates[b] = cands
            if not cands:
                hopeless.add(b)
        lim = limit[b]
        best_o = slot = -1
        v1, v2 = -1.0, 0.0
        for at_floor, at, o, r in cands:
            if at_floor <= v2:
                break  # prices never fall below floors: no later candidate can beat v1 or v2
            p = price[at]
            if p is None:
                p = floor[o] if free[o] >= size else displace(o, size)[0]
                price[at] = p
            if p <= lim:
                v = r * (lim - p)
                if v > v1:
                    if v1 > v2:
                        v2 = v1
                    v1, best_o, slot = v, o, at
                elif v > v2:
                    v2 = v
        if best_o < 0:
            continue
        entry_price = price[slot] or 0
        bid_price = min(lim, int(entry_price) + int((v1 - v2) / rate[best_o]) + increment[b])
        held = holders[best_o]
        if free[best_o] < size:
            k = displace(best_o, size)[1]
            for _, neg_n, h in held[:k]:
                free[best_o] += -neg_n
                del assigned[h]
                queue.append(h)
            del held[:k]
        bisect.insort(held, (bid_price, -size, b))
        free[best_o] -= size
        assigned[b] = best_o
        base = best_o * n_sizes
        price[base:base + n_sizes] = none_row
    return assigned, hopeless
