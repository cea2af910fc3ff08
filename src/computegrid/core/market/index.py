"""The spot price index: per class (model, region), the clearing price of each round that traded.

Pure data the service stores and passes back in. A price holds from its round until the next
point of the same class; before a class's first point it has no price.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from computegrid.core.market.classes import MarketClass, OrderError, cost_fen
from computegrid.core.market.result import ClassPrice


@dataclass(frozen=True)
class PricePoint:
    """The spot price of a class from `at_ms` (epoch ms) on, in fen per du."""

    at_ms: int
    price_fen_per_du: int


@dataclass(frozen=True)
class SpotIndex:
    """Price history per class; points strictly increase in time. Treat as immutable: `record` returns a new index."""

    series: Mapping[MarketClass, tuple[PricePoint, ...]] = field(default_factory=dict)

    def record(self, at_ms: int, prices: Iterable[ClassPrice]) -> SpotIndex:
        """A new index with one point per class priced in the spot segment of the round at `at_ms`.

        Prices of reserved blocks are not spot prices and are left out. Raises OrderError when a
        class already has a point at or after `at_ms`.
        """
        series = dict(self.series)
        for entry in prices:
            if entry.segment != "spot":
                continue
            points = series.get(entry.market_class, ())
            if points and points[-1].at_ms >= at_ms:
                raise OrderError(f"spot index for {entry.market_class} already has a point at "
                                 f"{points[-1].at_ms} ms, not before {at_ms} ms")
            series[entry.market_class] = (*points, PricePoint(at_ms, entry.price_fen_per_du))
        return SpotIndex(series)

    def classes(self) -> tuple[MarketClass, ...]:
        return tuple(sorted(self.series))

    def latest(self, market_class: MarketClass) -> PricePoint | None:
        """The class's most recent point, or None when it never traded."""
        points = self.series.get(market_class, ())
        return points[-1] if points else None

    def price_at(self, market_class: MarketClass, at_ms: int) -> int | None:
        """The price in force at `at_ms` (fen per du), or None before the first point."""
        points = self.series.get(market_class, ())
        i = bisect.bisect_right([p.at_ms for p in points], at_ms)
        return points[i - 1].price_fen_per_du if i else None

    def between(self, market_class: MarketClass, start_ms: int, end_ms: int) -> tuple[PricePoint, ...]:
        """Points with start_ms <= at_ms < end_ms."""
        return tuple(p for p in self.series.get(market_class, ()) if start_ms <= p.at_ms < end_ms)

    def segments(self, market_class: MarketClass, start_ms: int, end_ms: int) -> tuple[tuple[int, int, int], ...]:
        """(from_ms, to_ms, price) pieces covering the priced part of [start_ms, end_ms)."""
        if end_ms <= start_ms:
            return ()
        points = self.series.get(market_class, ())
        cuts = [p for p in points if p.at_ms < end_ms]
        pieces = []
        for i, point in enumerate(cuts):
            begin = max(point.at_ms, start_ms)
            finish = min(cuts[i + 1].at_ms if i + 1 < len(cuts) else end_ms, end_ms)
            if finish > begin:
                pieces.append((begin, finish, point.price_fen_per_du))
        return tuple(pieces)

    def time_weighted_average(self, market_class: MarketClass, start_ms: int, end_ms: int) -> Fraction | None:
        """The average price over the priced part of [start_ms, end_ms), weighted by time; exact fen per du."""
        pieces = self.segments(market_class, start_ms, end_ms)
        span = sum(finish - begin for begin, finish, _ in pieces)
        if not span:
            return None
        return Fraction(sum((finish - begin) * price for begin, finish, price in pieces), span)

    def charge_fen(self, market_class: MarketClass, *, devices: int, du_per_device_hour: Fraction,
                   start_ms: int, end_ms: int) -> Fraction:
        """Exact fen for `devices` devices held from start_ms to end_ms at the spot price in force.

        A preempted lease is charged only for the time it ran: pass the time it stopped as `end_ms`.
        Raises OrderError when part of the interval has no price (before the class's first point).
        """
        pieces = self.segments(market_class, start_ms, end_ms)
        if sum(finish - begin for begin, finish, _ in pieces) != max(0, end_ms - start_ms):
            raise OrderError(f"the spot index has no price for {market_class} over all of "
                             f"[{start_ms}, {end_ms}) ms")
        return sum((cost_fen(devices, du_per_device_hour, finish - begin, price) for begin, finish, price in pieces),
                   Fraction(0))
