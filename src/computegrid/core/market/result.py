"""What a clearing round decides: matches, one uniform price per class, and the surplus.

Pricing rule, shared by every clearing algorithm: in each class with matches, let `lo` be the
highest floor and `hi` the lowest limit among its matched pairs (the algorithms guarantee lo <= hi).
The class price is the midpoint rounded down to whole fen, lo + (hi - lo) // 2, so it lies in
[floor, limit] of every matched pair: no buyer pays above its limit, no seller gets below its floor,
and the marginal pair's surplus is split evenly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.market.book import OrderBook
from computegrid.core.market.classes import MarketClass


@dataclass(frozen=True)
class Match:
    """`devices` devices of offer `offer_id` go to bid `bid_id` at the class price (fen per du)."""

    bid_id: str
    offer_id: str
    tenant: str
    devices: int
    market_class: MarketClass
    price_fen_per_du: int


@dataclass(frozen=True)
class ClassPrice:
    """A class's uniform price and the bounds it was chosen in (all fen per du); `devices` matched.

    `segment`: `spot` (open capacity) or `reserved` (windowed blocks), priced separately.
    """

    market_class: MarketClass
    price_fen_per_du: int
    highest_floor: int
    lowest_limit: int
    devices: int
    segment: str = "spot"


@dataclass(frozen=True)
class Clearing:
    """The outcome of one clearing round at `at_ms`.

    `surplus_fen` = sum over matches of devices x du per device-hour x hours x (limit - floor), exact:
    hours is 1 for a spot bid (surplus per hour held) and the window length for a reserved bid.
    """

    at_ms: int
    matches: tuple[Match, ...]
    prices: tuple[ClassPrice, ...]
    unmatched_bids: tuple[str, ...]
    surplus_fen: Fraction

    def price_of(self, market_class: MarketClass, segment: str = "spot") -> int | None:
        """The class's clearing price in fen per du in a segment, or None when nothing cleared there."""
        for entry in self.prices:
            if entry.market_class == market_class and entry.segment == segment:
                return entry.price_fen_per_du
        return None


def pair_surplus(book: OrderBook, bid: int, offer: int) -> Fraction:
    """Exact surplus in fen of filling bid `bid` from offer `offer` (book indices)."""
    b = book.bids[bid]
    rate = book.class_rate[int(book.offer_class[offer])]
    return b.devices * rate * book.bid_hours[bid] * (b.limit_fen_per_du - int(book.offer_floor[offer]))


def uniform_price(highest_floor: int, lowest_limit: int) -> int:
    """The class price for bounds lo <= hi (fen per du): the midpoint, rounded down to whole fen."""
    if highest_floor > lowest_limit:
        raise ValueError(f"no uniform price: highest floor {highest_floor} > lowest limit {lowest_limit}")
    return highest_floor + (lowest_limit - highest_floor) // 2


def build_clearing(book: OrderBook, pairs: Iterable[tuple[int, int]], *, at_ms: int,
                   capacity: Sequence[int] | None = None,
                   bounds: Mapping[int, tuple[int, int]] | None = None) -> Clearing:
    """Price and package (bid index, offer index) pairs; checks capacity and that each class is priceable.

    `capacity` (devices per offer, default all) and `bounds` (per class, committed highest floor and
    lowest limit) are those the pairs were chosen under; the class price respects both.
    """
    chosen = sorted(pairs)
    lo: dict[int, int] = {}
    hi: dict[int, int] = {}
    devices: dict[int, int] = {}
    used: dict[int, int] = {}
    by_class_hours: dict[tuple[int, Fraction], int] = {}
    for c, (floor, limit) in (bounds or {}).items():
        lo[c], hi[c], devices[c] = floor, limit, 0
    for b, o in chosen:
        c = int(book.offer_class[o])
        floor = int(book.offer_floor[o])
        bid = book.bids[b]
        lo[c] = max(lo.get(c, floor), floor)
        hi[c] = min(hi.get(c, bid.limit_fen_per_du), bid.limit_fen_per_du)
        devices[c] = devices.get(c, 0) + bid.devices
        used[o] = used.get(o, 0) + bid.devices
        key = (c, book.bid_hours[b])
        by_class_hours[key] = by_class_hours.get(key, 0) + bid.devices * (bid.limit_fen_per_du - floor)
    limit_of = book.offer_devices.tolist() if capacity is None else list(capacity)
    for o, count in used.items():
        if count > limit_of[o]:
            raise AssertionError(f"offer {book.offers[o].id!r} filled with {count} devices, more than {limit_of[o]}")
    price = {c: uniform_price(lo[c], hi[c]) for c in lo}
    surplus = sum((book.class_rate[c] * h * amount for (c, h), amount in by_class_hours.items()), Fraction(0))
    matched = {b for b, _ in chosen}
    matches = tuple(
        Match(bid_id=book.bids[b].id, offer_id=book.offers[o].id, tenant=book.bids[b].tenant,
              devices=book.bids[b].devices, market_class=book.classes[int(book.offer_class[o])],
              price_fen_per_du=price[int(book.offer_class[o])])
        for b, o in chosen
    )
    prices = tuple(ClassPrice(book.classes[c], price[c], lo[c], hi[c], devices[c], book.segments[c])
                   for c in sorted(lo))
    unmatched = tuple(book.bids[b].id for b in range(len(book.bids)) if b not in matched)
    return Clearing(at_ms=at_ms, matches=matches, prices=prices, unmatched_bids=unmatched, surplus_fen=surplus)
