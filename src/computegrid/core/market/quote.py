"""Quotes: what capacity matching a request would cost now, before anyone buys.

Three ways to buy, each quoted from the offers the caller passes (with their sellable devices):
- on-demand: open (spot) offers that post an on-demand price; firm, never preempted by spot.
- spot: open offers at the class's latest spot index price, or the offer's floor when that is
  higher or the class never traded; interruptible, the price moves each round.
- reserved: reserved and resale offers whose window holds [start, start + duration), at their floor.
Each option shows du per hour and the estimated total for the duration. When nothing matches, the
quote says which constraint excluded how many offers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from computegrid.core.catalog import Catalog
from computegrid.core.jobs.spec import TIERS
from computegrid.core.market.classes import MarketClass, OrderError, du_per_device_hour, hours
from computegrid.core.market.index import SpotIndex
from computegrid.core.market.orders import Offer
from computegrid.core.units import MS_PER_HOUR

QuoteKind = Literal["on-demand", "spot", "reserved"]
QUOTE_KINDS: tuple[QuoteKind, ...] = ("on-demand", "spot", "reserved")


@dataclass(frozen=True)
class QuoteRequest:
    """What a buyer asks about: `devices` devices from one offer for `duration_ms`.

    Constraints as on a bid (empty set = any). `start_ms` is the reserved window's start
    (None: quote reserved capacity from the quote time).
    """

    devices: int
    models: frozenset[str] = frozenset()
    min_device_memory_gb: Fraction = Fraction(0)
    regions: frozenset[str] = frozenset()
    tier: str | None = None
    duration_ms: int = MS_PER_HOUR
    start_ms: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.devices, int) or isinstance(self.devices, bool) or self.devices <= 0:
            raise OrderError(f"quote: devices must be a positive whole number, got {self.devices!r}")
        if not isinstance(self.duration_ms, int) or self.duration_ms <= 0:
            raise OrderError(f"quote: duration must be a positive number of milliseconds, got {self.duration_ms!r}")
        if self.tier is not None and self.tier not in TIERS:
            raise OrderError(f"quote: tier must be one of {', '.join(TIERS)} or unset, got {self.tier!r}")
        if self.min_device_memory_gb < 0:
            raise OrderError(f"quote: minimum device memory must not be negative, got {self.min_device_memory_gb}")


@dataclass(frozen=True)
class QuoteOption:
    """One way to buy: price in fen per du, du per hour for the request, estimated fen for its duration."""

    kind: QuoteKind
    offer_id: str
    site: str
    tier: str
    market_class: MarketClass
    price_fen_per_du: int
    du_per_hour: Fraction
    estimated_total_fen: Fraction
    note: str


@dataclass(frozen=True)
class Quote:
    """Options, cheapest first within each kind; `explanation` says why a kind (or all) found nothing."""

    at_ms: int
    options: tuple[QuoteOption, ...]
    explanation: str | None

    def cheapest(self, kind: QuoteKind) -> QuoteOption | None:
        return next((o for o in self.options if o.kind == kind), None)


def _exclusions(request: QuoteRequest, offers: Sequence[Offer], start_ms: int, end_ms: int
                ) -> tuple[list[Offer], list[tuple[str, int]]]:
    """Offers passing every constraint, and (constraint, offers it excluded) in filter order."""
    checks: list[tuple[str, Callable[[Offer], bool], str]] = [
        ("model", lambda o: not request.models or o.model in request.models,
         f"accepts {', '.join(sorted(request.models))}"),
        ("device memory", lambda o: o.device_memory_gb >= request.min_device_memory_gb,
         f"needs at least {request.min_device_memory_gb} GB"),
        ("region", lambda o: not request.regions or o.region in request.regions,
         f"accepts {', '.join(sorted(request.regions))}"),
        ("tier", lambda o: request.tier is None or o.tier == request.tier, f"needs {request.tier}"),
        ("window", lambda o: o.kind == "spot" or (not o.interruptible and o.covers(start_ms, end_ms)),
         f"reserved offers must hold [{start_ms}, {end_ms}) ms"),
        ("devices", lambda o: o.devices >= request.devices, f"needs {request.devices} on one offer"),
    ]
    remaining = list(offers)
    excluded: list[tuple[str, int]] = []
    for name, keep, detail in checks:
        passed = [o for o in remaining if keep(o)]
        if len(passed) < len(remaining):
            excluded.append((f"{name} ({detail})", len(remaining) - len(passed)))
        remaining = passed
    return remaining, excluded


def quote(request: QuoteRequest, offers: Sequence[Offer], index: SpotIndex, catalog: Catalog, *, at_ms: int,
          per_kind: int = 3) -> Quote:
    """The `per_kind` cheapest options of each kind for `request` at `at_ms` (epoch ms).

    Offers with a model the catalog cannot price per du are skipped. Raises OrderError on a bad request.
    """
    start_ms = at_ms if request.start_ms is None else request.start_ms
    if start_ms < at_ms:
        raise OrderError(f"quote: the window starts at {start_ms} ms, before now ({at_ms} ms)")
    end_ms = start_ms + request.duration_ms
    live = [o for o in offers if o.window_end_ms is None or o.window_end_ms > at_ms]
    matching, excluded = _exclusions(request, live, start_ms, end_ms)
    options: list[QuoteOption] = []
    duration_h = hours(request.duration_ms)
    for offer in matching:
        try:
            rate = du_per_device_hour(offer.model, catalog)
        except OrderError:
            continue
        du_per_hour = request.devices * rate
        for kind, price, note in _prices(offer, index):
            options.append(QuoteOption(kind, offer.id, offer.site, offer.tier, offer.market_class, price, du_per_hour,
                                       du_per_hour * duration_h * price, note))
    options.sort(key=lambda q: (QUOTE_KINDS.index(q.kind), q.estimated_total_fen, q.offer_id))
    chosen: list[QuoteOption] = []
    for kind in QUOTE_KINDS:
        chosen.extend([o for o in options if o.kind == kind][:per_kind])
    explanation = None
    if not chosen:
        parts = [f"{what} excluded {count} offer{'s' if count != 1 else ''}" for what, count in excluded]
        explanation = "no capacity matches: " + ("; ".join(parts) if parts else "no offers are open")
    else:
        missing = [k for k in QUOTE_KINDS if not any(o.kind == k for o in chosen)]
        if missing:
            explanation = f"no {' or '.join(missing)} capacity matches"
    return Quote(at_ms=at_ms, options=tuple(chosen), explanation=explanation)


def _prices(offer: Offer, index: SpotIndex) -> list[tuple[QuoteKind, int, str]]:
    if offer.kind != "spot":
        return [("reserved", offer.floor_fen_per_du,
                 f"{offer.kind} block [{offer.window_start_ms}, {offer.window_end_ms}) ms at its posted price")]
    out: list[tuple[QuoteKind, int, str]] = []
    if offer.on_demand_fen_per_du is not None:
        out.append(("on-demand", offer.on_demand_fen_per_du, "posted on-demand price"))
    latest = index.latest(offer.market_class)
    if latest is None:
        out.append(("spot", offer.floor_fen_per_du, f"floor {offer.floor_fen_per_du} fen/du; the class has no spot "
                                                    f"price yet"))
    else:
        price = max(latest.price_fen_per_du, offer.floor_fen_per_du)
        out.append(("spot", price, f"spot index {latest.price_fen_per_du} fen/du at {latest.at_ms} ms, floor "
                                   f"{offer.floor_fen_per_du} fen/du; interruptible, the price moves each round"))
    return out
