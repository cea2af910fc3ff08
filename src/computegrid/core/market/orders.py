"""Market orders: providers' offers and tenants' bids, and the checks that reject bad ones.

Prices are integer fen per du; capacity is whole devices; times are epoch milliseconds.
A dataclass rejects what it can see by itself (non-positive devices, negative prices, an empty
window) when it is built; `check_offer` / `check_bid` add what needs the catalog (unknown model,
no FP16 rating, more memory than the model has), and `check_spot_bid_floor` rejects a spot bid
that no class it accepts could ever clear. Every failure is an `OrderError` that says why.

A bid is all or nothing and is filled from ONE offer: its devices land at one site on one model,
which is what a job can use. A tenant who can use devices at several sites sends several bids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.jobs.spec import TIERS
from computegrid.core.market.classes import MarketClass, OrderError, du_per_device_hour

OfferKind = Literal["spot", "reserved", "resale"]
BidKind = Literal["spot", "reserved"]
OFFER_KINDS: tuple[OfferKind, ...] = ("spot", "reserved", "resale")
BID_KINDS: tuple[BidKind, ...] = ("spot", "reserved")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_window(what: str, kind: str, start: int | None, end: int | None, *, needs_window: bool) -> None:
    if (start is None) != (end is None):
        raise OrderError(f"{what}: give both window_start_ms and window_end_ms, or neither")
    if start is None or end is None:
        if needs_window:
            raise OrderError(f"{what}: a {kind} order needs a window (window_start_ms, window_end_ms)")
        return
    if not needs_window:
        raise OrderError(f"{what}: a {kind} order is for capacity now and takes no window")
    if not (_whole(start) and _whole(end)):
        raise OrderError(f"{what}: window times must be integer epoch milliseconds")
    if end <= start:
        raise OrderError(f"{what}: empty window: ends at {end} ms, not after its start {start} ms")


@dataclass(frozen=True)
class Offer:
    """A provider's capacity for sale: `devices` whole devices of `model` at `site`.

    `kind`: `spot` is open capacity now (no window), sold in the periodic auction and on demand at
    `on_demand_fen_per_du` when set; `reserved` is a future window sold as blocks; `resale` is an
    unused part of a tenant's reservation put back on the market (`reseller`, `reservation_id`).
    `floor_fen_per_du` is the lowest price the seller accepts. `interruptible` capacity may be
    reclaimed by the provider, so reserved bids never match it.
    """

    id: str
    provider: str
    site: str
    region: str
    tier: str
    model: str
    device_memory_gb: Fraction
    devices: int
    floor_fen_per_du: int
    kind: OfferKind = "spot"
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    interruptible: bool = False
    on_demand_fen_per_du: int | None = None
    reseller: str | None = None
    reservation_id: str | None = None

    def __post_init__(self) -> None:
        what = f"offer {self.id!r}"
        if not self.id:
            raise OrderError("offer: id must be a non-empty string")
        if self.kind not in OFFER_KINDS:
            raise OrderError(f"{what}: kind must be one of {', '.join(OFFER_KINDS)}, got {self.kind!r}")
        if self.tier not in TIERS:
            raise OrderError(f"{what}: tier must be one of {', '.join(TIERS)}, got {self.tier!r}")
        if not self.region:
            raise OrderError(f"{what}: region must be a non-empty string")
        if not _whole(self.devices) or self.devices <= 0:
            raise OrderError(f"{what}: devices must be a positive whole number, got {self.devices!r}")
        if not _whole(self.floor_fen_per_du) or self.floor_fen_per_du < 0:
            raise OrderError(f"{what}: floor must be a non-negative integer fen/du, got {self.floor_fen_per_du!r}")
        if self.on_demand_fen_per_du is not None and (
                not _whole(self.on_demand_fen_per_du) or self.on_demand_fen_per_du < 0):
            raise OrderError(f"{what}: on-demand price must be a non-negative integer fen/du, "
                             f"got {self.on_demand_fen_per_du!r}")
        if self.on_demand_fen_per_du is not None and self.kind != "spot":
            raise OrderError(f"{what}: only open (spot) capacity has an on-demand price")
        if not self.device_memory_gb > 0:
            raise OrderError(f"{what}: device memory must be positive, got {self.device_memory_gb} GB")
        _check_window(what, self.kind, self.window_start_ms, self.window_end_ms, needs_window=self.kind != "spot")
        if (self.kind == "resale") != (self.reseller is not None and self.reservation_id is not None):
            raise OrderError(f"{what}: a resale offer, and only a resale offer, names its reseller and reservation")

    @property
    def market_class(self) -> MarketClass:
        return MarketClass(self.model, self.region)

    def covers(self, start_ms: int, end_ms: int) -> bool:
        """Whether this offer's window holds [start_ms, end_ms)."""
        return (self.window_start_ms is not None and self.window_end_ms is not None
                and self.window_start_ms <= start_ms and end_ms <= self.window_end_ms)


@dataclass(frozen=True)
class Bid:
    """A tenant's order for `devices` whole devices, all from one offer, at up to `limit_fen_per_du`.

    Constraints: `models` (canonical catalog names, empty = any; see `parse_models`),
    `min_device_memory_gb`, `regions` (empty = any), `tier` (None = any). A `spot` bid is for
    interruptible capacity now, held until preempted or released; a `reserved` bid is for the
    window [window_start_ms, window_end_ms) on capacity that is not interruptible.
    """

    id: str
    tenant: str
    devices: int
    limit_fen_per_du: int
    models: frozenset[str] = frozenset()
    min_device_memory_gb: Fraction = Fraction(0)
    regions: frozenset[str] = frozenset()
    tier: str | None = None
    kind: BidKind = "spot"
    window_start_ms: int | None = None
    window_end_ms: int | None = None

    def __post_init__(self) -> None:
        what = f"bid {self.id!r}"
        if not self.id:
            raise OrderError("bid: id must be a non-empty string")
        if self.kind not in BID_KINDS:
            raise OrderError(f"{what}: kind must be one of {', '.join(BID_KINDS)}, got {self.kind!r}")
        if not _whole(self.devices) or self.devices <= 0:
            raise OrderError(f"{what}: devices must be a positive whole number, got {self.devices!r}")
        if not _whole(self.limit_fen_per_du) or self.limit_fen_per_du < 0:
            raise OrderError(f"{what}: limit must be a non-negative integer fen/du, got {self.limit_fen_per_du!r}")
        if self.min_device_memory_gb < 0:
            raise OrderError(f"{what}: minimum device memory must not be negative, got {self.min_device_memory_gb}")
        if self.tier is not None and self.tier not in TIERS:
            raise OrderError(f"{what}: tier must be one of {', '.join(TIERS)} or unset, got {self.tier!r}")
        _check_window(what, self.kind, self.window_start_ms, self.window_end_ms, needs_window=self.kind == "reserved")

    @property
    def duration_ms(self) -> int | None:
        """The window's length, or None for a spot bid (priced per hour held)."""
        if self.window_start_ms is None or self.window_end_ms is None:
            return None
        return self.window_end_ms - self.window_start_ms

    def accepts_offer_statically(self, offer: Offer, offer_memory_gb: Fraction | None = None) -> bool:
        """Whether `offer` meets this bid's model, memory, region, tier, kind and window constraints.

        Capacity and price are not checked here.
        """
        memory = offer.device_memory_gb if offer_memory_gb is None else offer_memory_gb
        if self.models and offer.model not in self.models:
            return False
        if self.regions and offer.region not in self.regions:
            return False
        if self.tier is not None and offer.tier != self.tier:
            return False
        if memory < self.min_device_memory_gb:
            return False
        if self.kind == "spot":
            return offer.kind == "spot"
        assert self.window_start_ms is not None and self.window_end_ms is not None
        return (offer.kind != "spot" and not offer.interruptible
                and offer.covers(self.window_start_ms, self.window_end_ms))


def parse_models(expression: str, catalog: Catalog) -> frozenset[str]:
    """Canonical models for a `gpu_spec`-style expression: `A100|H100-80G`, `ampere`, `nvidia`.

    An empty expression or `*` means any model (the empty set). Raises OrderError naming an
    alternative that matches nothing in the catalog.
    """
    text = expression.strip()
    if text in ("", "*"):
        return frozenset()
    models: set[str] = set()
    for alternative in text.split("|"):
        try:
            models |= catalog.resolve(alternative)
        except UnknownAccelerator:
            raise OrderError(f"unknown accelerator {alternative.strip()!r}; known models: "
                             f"{', '.join(catalog.names)}") from None
    return frozenset(models)


def check_offer(offer: Offer, catalog: Catalog) -> Fraction:
    """Check an offer against the catalog; return its du per device-hour.

    Rejects an unknown model, a model without an FP16 rating, and more device memory than the model has.
    """
    try:
        entry = catalog.get(offer.model)
    except UnknownAccelerator:
        raise OrderError(f"offer {offer.id!r}: unknown accelerator model {offer.model!r}; known models: "
                         f"{', '.join(catalog.names)}") from None
    if entry.model != offer.model:
        raise OrderError(f"offer {offer.id!r}: give the canonical model name {entry.model!r}, not {offer.model!r}")
    if entry.memory_gb is not None and offer.device_memory_gb > entry.memory_gb:  # unknown: nothing to bound
        raise OrderError(f"offer {offer.id!r}: {offer.device_memory_gb} GB per device is more than "
                         f"{entry.model} has ({entry.memory_gb} GB)")
    try:
        return du_per_device_hour(entry.model, catalog)
    except OrderError as exc:
        raise OrderError(f"offer {offer.id!r}: {exc}") from None


def check_bid(bid: Bid, catalog: Catalog) -> None:
    """Check a bid's models against the catalog (canonical names only; see `parse_models`)."""
    known = set(catalog.names)
    unknown = sorted(bid.models - known)
    if unknown:
        raise OrderError(f"bid {bid.id!r}: unknown accelerator model {unknown[0]!r}; known models: "
                         f"{', '.join(catalog.names)}")


def check_unique_ids(bids: Iterable[Bid], offers: Iterable[Offer]) -> None:
    """Reject two bids or two offers that share an id."""
    for what, ids in (("bid", [b.id for b in bids]), ("offer", [o.id for o in offers])):
        seen: set[str] = set()
        for order_id in ids:
            if order_id in seen:
                raise OrderError(f"two {what}s share the id {order_id!r}")
            seen.add(order_id)


def class_floors(offers: Iterable[Offer]) -> dict[MarketClass, int]:
    """The floor of each class: the lowest `floor_fen_per_du` among its open (spot) offers."""
    floors: dict[MarketClass, int] = {}
    for offer in offers:
        if offer.kind == "spot":
            key = offer.market_class
            floors[key] = min(floors.get(key, offer.floor_fen_per_du), offer.floor_fen_per_du)
    return floors


def check_spot_bid_floor(bid: Bid, floors: Mapping[MarketClass, int]) -> None:
    """Reject a spot bid whose limit is below the floor of every class it accepts.

    Classes with no published floor (no open capacity) are ignored, so a bid for capacity that does
    not exist yet is accepted and waits. Units: fen per du.
    """
    if bid.kind != "spot":
        return
    relevant = sorted(
        (floor, cls) for cls, floor in floors.items()
        if (not bid.models or cls.model in bid.models) and (not bid.regions or cls.region in bid.regions)
    )
    if not relevant or relevant[0][0] <= bid.limit_fen_per_du:
        return
    floor, cls = relevant[0]
    if len(relevant) == 1:
        raise OrderError(f"bid {bid.limit_fen_per_du} fen/du is below the floor {floor} fen/du for {cls}")
    raise OrderError(f"bid {bid.limit_fen_per_du} fen/du is below the floor of every class it accepts "
                     f"(lowest: {floor} fen/du for {cls})")
