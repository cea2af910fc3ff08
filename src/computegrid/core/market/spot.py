"""The periodic spot auction: new interruptible work, on-demand buyers, and who gets preempted.

One round at `at_ms`, in this order:
1. Leases that can no longer hold: their offer is gone (`capacity`), the provider cut the offer's
   devices (`capacity`, lowest limit first), the offer's floor rose above their limit, or their
   class can no longer be priced (`priced-out`, lowest limit first).
2. On-demand requests, by id, at the offer's posted on-demand price. An on-demand buyer outranks
   every spot lease: leases on that offer are preempted, lowest limit first (then the most recently
   started, then id), until the request fits. A request larger than the offer's devices left for
   on-demand is not served.
3. New spot bids clear against the free capacity (`clearing.fast_pairs`), respecting the price
   bounds of the leases that keep running, so one uniform price per class covers old and new.
4. A bid still unmatched may outbid running leases whose limit is strictly below its own, lowest
   limit first (`outbid`), when that frees room for all its devices and keeps the class priceable.
Every preemption takes effect at `preempt_at_ms = at_ms + notice_ms`: the service sends the job
SIGTERM (its checkpoint signal) now, stops it then, and requeues it; the lease is charged only up
to the time it stopped (`SpotIndex.charge_fen`). Work that needs preempted devices starts at that
time too. The round's class prices cover every spot lease running after it (midpoint rule, see
`result`); `SpotIndex.record` appends them to the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from computegrid.core.catalog import Catalog
from computegrid.core.market.book import OrderBook, build_book
from computegrid.core.market.classes import MarketClass, OrderError
from computegrid.core.market.clearing import fast_pairs, merit_order
from computegrid.core.market.orders import Bid, Offer, check_unique_ids
from computegrid.core.market.result import ClassPrice, uniform_price

PreemptReason = Literal["on-demand", "outbid", "capacity", "priced-out"]


@dataclass(frozen=True)
class SpotLease:
    """Interruptible work running on `devices` devices of offer `offer_id` since `started_ms`."""

    id: str
    bid_id: str
    tenant: str
    offer_id: str
    devices: int
    limit_fen_per_du: int
    started_ms: int


@dataclass(frozen=True)
class OnDemandRequest:
    """A buyer who wants `devices` devices of offer `offer_id` now, at its posted on-demand price."""

    id: str
    tenant: str
    offer_id: str
    devices: int


@dataclass(frozen=True)
class Preemption:
    """Lease `lease_id` must stop at `preempt_at_ms` (epoch ms); `by` names the request or bid that took it."""

    lease_id: str
    tenant: str
    offer_id: str
    devices: int
    reason: PreemptReason
    by: str | None
    preempt_at_ms: int


@dataclass(frozen=True)
class SpotAllocation:
    """A new spot lease for bid `bid_id` from `start_ms` (after the notice when it waits on a preemption)."""

    bid_id: str
    tenant: str
    offer_id: str
    devices: int
    market_class: MarketClass
    limit_fen_per_du: int
    start_ms: int


@dataclass(frozen=True)
class OnDemandGrant:
    request_id: str
    tenant: str
    offer_id: str
    devices: int
    price_fen_per_du: int
    start_ms: int


@dataclass(frozen=True)
class SpotRound:
    """The decisions of one spot round. `prices` covers every spot lease running after the round."""

    at_ms: int
    allocations: tuple[SpotAllocation, ...]
    preemptions: tuple[Preemption, ...]
    on_demand: tuple[OnDemandGrant, ...]
    unserved_on_demand: tuple[tuple[str, str], ...]  # (request id, reason)
    unmatched_bids: tuple[str, ...]
    prices: tuple[ClassPrice, ...]


@dataclass
class _Holding:
    """A lease or a new allocation, as the round sees it."""

    key: str  # lease id or bid id
    tenant: str
    offer: int
    devices: int
    limit: int
    started_ms: int
    is_lease: bool


def _preempt_order(h: _Holding) -> tuple[int, int, str]:
    return (h.limit, -h.started_ms, h.key)  # lowest limit, then most recently started, then id


def _validate(offers: Sequence[Offer], leases: Sequence[SpotLease], bids: Sequence[Bid],
              on_demand: Sequence[OnDemandRequest], notice_ms: int) -> None:
    if not isinstance(notice_ms, int) or isinstance(notice_ms, bool) or notice_ms < 0:
        raise OrderError(f"notice period must be a non-negative integer of milliseconds, got {notice_ms!r}")
    for offer in offers:
        if offer.kind != "spot":
            raise OrderError(f"offer {offer.id!r}: the spot round takes open (spot) offers only, not {offer.kind}")
    for bid in bids:
        if bid.kind != "spot":
            raise OrderError(f"bid {bid.id!r}: the spot round takes spot bids only, not {bid.kind}")
    for what, ids in (("lease", [x.id for x in leases]), ("on-demand request", [x.id for x in on_demand])):
        if len(set(ids)) != len(ids):
            raise OrderError(f"two {what}s share an id")
    for lease in leases:
        if lease.devices <= 0:
            raise OrderError(f"lease {lease.id!r}: devices must be positive, got {lease.devices}")
    for request in on_demand:
        if not isinstance(request.devices, int) or request.devices <= 0:
            raise OrderError(f"on-demand request {request.id!r}: devices must be a positive whole number, "
                             f"got {request.devices!r}")


class _Round:
    def __init__(self, book: OrderBook, at_ms: int, notice_ms: int):
        self.book = book
        self.at_ms = at_ms
        self.preempt_at = at_ms + notice_ms
        self.offer_index = {o.id: i for i, o in enumerate(book.offers)}
        self.cap = book.offer_devices.copy()
        self.on_demand_used = np.zeros(len(book.offers), dtype=np.int64)
        self.holdings: dict[int, list[_Holding]] = {}  # offer -> holdings
        self.by_class: dict[int, list[_Holding]] = {}  # class -> holdings
        self.offer_class: list[int] = book.offer_class.tolist()
        self.preemptions: list[Preemption] = []

    def hold(self, h: _Holding) -> None:
        self.holdings.setdefault(h.offer, []).append(h)
        self.by_class.setdefault(self.offer_class[h.offer], []).append(h)

    def used(self, o: int) -> int:
        return int(self.on_demand_used[o]) + sum(h.devices for h in self.holdings.get(o, ()))

    def preempt(self, h: _Holding, reason: PreemptReason, by: str | None) -> None:
        self.holdings[h.offer].remove(h)
        self.by_class[self.offer_class[h.offer]].remove(h)
        self.preemptions.append(Preemption(h.key, h.tenant, self.book.offers[h.offer].id, h.devices, reason, by,
                                           self.preempt_at))

    def class_bounds(self) -> dict[int, tuple[int, int]]:
        bounds: dict[int, tuple[int, int]] = {}
        for o, held in self.holdings.items():
            if not held:
                continue
            c = int(self.book.offer_class[o])
            floor = int(self.book.offer_floor[o])
            limit = min(h.limit for h in held)
            lo, hi = bounds.get(c, (floor, limit))
            bounds[c] = (max(lo, floor), min(hi, limit))
        return bounds

    def class_members(self, c: int) -> list[_Holding]:
        return list(self.by_class.get(c, ()))


def run_spot_round(*, offers: Sequence[Offer], leases: Sequence[SpotLease], bids: Sequence[Bid],
                   on_demand: Sequence[OnDemandRequest], catalog: Catalog, at_ms: int,
                   notice_ms: int) -> SpotRound:
    """One spot round at `at_ms` (epoch ms) with a preemption notice of `notice_ms` milliseconds.

    `offers` is the open capacity (kind `spot`) with its current devices and floor; `leases` the
    spot work running on it; `bids` the new spot bids; `on_demand` the buyers at posted prices.
    Prices are fen per du. Raises OrderError on bad input.
    """
    _validate(offers, leases, bids, on_demand, notice_ms)
    check_unique_ids(bids, offers)
    book = build_book(bids, offers, catalog, at_ms=at_ms)
    state = _Round(book, at_ms, notice_ms)

    orphans = []
    for lease in sorted(leases, key=lambda x: x.id):
        o = state.offer_index.get(lease.offer_id)
        if o is None:
            orphans.append(Preemption(lease.id, lease.tenant, lease.offer_id, lease.devices, "capacity", None,
                                      state.preempt_at))
            continue
        state.hold(_Holding(lease.id, lease.tenant, o, lease.devices, lease.limit_fen_per_du, lease.started_ms, True))
    state.preemptions.extend(orphans)
    _settle_leases(state)
    grants, unserved = _serve_on_demand(state, on_demand)
    new_holdings = _clear_new_bids(state)
    _outbid(state, new_holdings)

    allocations = tuple(
        SpotAllocation(h.key, h.tenant, book.offers[h.offer].id, h.devices,
                       book.classes[int(book.offer_class[h.offer])], h.limit, h.started_ms)
        for h in sorted(new_holdings.values(), key=lambda h: h.key)
    )
    matched = set(new_holdings)
    prices = []
    for c, (lo, hi) in sorted(state.class_bounds().items()):
        devices = sum(h.devices for h in state.class_members(c))
        prices.append(ClassPrice(book.classes[c], uniform_price(lo, hi), lo, hi, devices))
    return SpotRound(
        at_ms=at_ms, allocations=allocations, preemptions=tuple(state.preemptions), on_demand=tuple(grants),
        unserved_on_demand=tuple(unserved), unmatched_bids=tuple(b.id for b in book.bids if b.id not in matched),
        prices=tuple(prices),
    )


def _settle_leases(state: _Round) -> None:
    """Preempt leases over their offer's devices, below their offer's floor, or in an unpriceable class."""
    book = state.book
    for o in sorted(state.holdings):
        held = state.holdings[o]
        for h in sorted(held, key=_preempt_order):
            if h.limit < int(book.offer_floor[o]):
                state.preempt(h, "priced-out", None)
        for h in sorted(held, key=_preempt_order):
            if state.used(o) <= int(state.cap[o]):
                break
            state.preempt(h, "capacity", None)
    for c in sorted({int(book.offer_class[o]) for o in state.holdings}):
        while True:
            members = state.class_members(c)
            if not members:
                break
            lo = max(int(book.offer_floor[h.offer]) for h in members)
            if lo <= min(h.limit for h in members):
                break
            state.preempt(min(members, key=_preempt_order), "priced-out", None)


def _serve_on_demand(state: _Round, requests: Sequence[OnDemandRequest]
                     ) -> tuple[list[OnDemandGrant], list[tuple[str, str]]]:
    grants: list[OnDemandGrant] = []
    unserved: list[tuple[str, str]] = []
    book = state.book
    for request in sorted(requests, key=lambda r: r.id):
        o = state.offer_index.get(request.offer_id)
        if o is None:
            unserved.append((request.id, f"offer {request.offer_id!r} is not open capacity now"))
            continue
        offer = book.offers[o]
        if offer.on_demand_fen_per_du is None:
            unserved.append((request.id, f"offer {offer.id!r} posts no on-demand price"))
            continue
        room = int(state.cap[o]) - int(state.on_demand_used[o])
        if request.devices > room:
            unserved.append((request.id, f"offer {offer.id!r} has {room} devices left for on-demand, "
                                         f"{request.devices} asked"))
            continue
        state.on_demand_used[o] += request.devices
        waited = False
        for h in sorted(state.holdings.get(o, ()), key=_preempt_order):
            if state.used(o) <= int(state.cap[o]):
                break
            state.preempt(h, "on-demand", request.id)
            waited = True
        grants.append(OnDemandGrant(request.id, request.tenant, offer.id, request.devices, offer.on_demand_fen_per_du,
                                    state.preempt_at if waited else state.at_ms))
    return grants, unserved


def _clear_new_bids(state: _Round) -> dict[str, _Holding]:
    book = state.book
    free = np.array([int(state.cap[o]) - state.used(o) for o in range(len(book.offers))], dtype=np.int64)
    pairs = fast_pairs(book, capacity=free, bounds=state.class_bounds())
    new: dict[str, _Holding] = {}
    for b, o in pairs:
        bid = book.bids[b]
        h = _Holding(bid.id, bid.tenant, o, bid.devices, bid.limit_fen_per_du, state.at_ms, False)
        state.hold(h)
        new[bid.id] = h
    return new


def _outbid(state: _Round, new: dict[str, _Holding]) -> None:
    """Unmatched bids, highest limit first, displace running leases with strictly lower limits."""
    book = state.book
    rate = book.class_rate_f
    # per pool, the lowest limit of a lease running on it: a bid at or below it cannot outbid anyone there
    lowest = [min((h.limit for o in members.tolist() for h in state.holdings.get(o, ()) if h.is_lease),
                  default=None) for members in book.pools]
    bounds = state.class_bounds()
    for b in merit_order(book):
        bid = book.bids[b]
        if bid.id in new:
            continue
        best: tuple[float, int, int, list[_Holding]] | None = None
        for pool in book.bid_pools[b].tolist():
            if lowest[pool] is None or lowest[pool] >= bid.limit_fen_per_du:
                continue
            for o in book.pools[pool].tolist():
                floor = int(book.offer_floor[o])
                if floor > bid.limit_fen_per_du:
                    break
                if int(state.cap[o]) - int(state.on_demand_used[o]) < bid.devices:
                    continue
                victims = _victims(state, o, bid, bounds)
                if victims is None:
                    continue
                value = float(rate[int(book.offer_class[o])]) * (bid.limit_fen_per_du - floor)
                displaced = sum(h.devices for h in victims)
                if best is None or (value, -displaced, -o) > (best[0], -best[1], -best[2]):
                    best = (value, displaced, o, victims)
        if best is None:
            continue
        _, _, o, victims = best
        for h in victims:
            state.preempt(h, "outbid", bid.id)
        h = _Holding(bid.id, bid.tenant, o, bid.devices, bid.limit_fen_per_du,
                     state.preempt_at if victims else state.at_ms, False)
        state.hold(h)
        new[bid.id] = h
        c = int(book.offer_class[o])
        members = state.class_members(c)
        bounds[c] = (max(int(book.offer_floor[m.offer]) for m in members), min(m.limit for m in members))


def _victims(state: _Round, o: int, bid: Bid, bounds: dict[int, tuple[int, int]]) -> list[_Holding] | None:
    """The leases `bid` would preempt at offer o (lowest limit first), or None if it cannot get in there."""
    book = state.book
    need = bid.devices - (int(state.cap[o]) - state.used(o))
    victims: list[_Holding] = []
    if need > 0:
        for h in sorted((h for h in state.holdings.get(o, ()) if h.is_lease and h.limit < bid.limit_fen_per_du),
                        key=_preempt_order):
            if need <= 0:
                break
            victims.append(h)
            need -= h.devices
        if need > 0:
            return None
    c = int(book.offer_class[o])
    floor = int(book.offer_floor[o])
    lo, hi = bounds.get(c, (floor, bid.limit_fen_per_du))
    if max(lo, floor) <= min(hi, bid.limit_fen_per_du):
        return victims  # priceable even before the victims leave
    gone = {id(h) for h in victims}
    staying = [h for h in state.class_members(c) if id(h) not in gone]
    lo = max([int(book.offer_floor[h.offer]) for h in staying] + [floor])
    hi = min([h.limit for h in staying] + [bid.limit_fen_per_du])
    return victims if lo <= hi else None
