"""An order book indexed for clearing: classes, offer pools and each bid's eligible pools.

Offers that share everything a bid can constrain (class, tier, memory, kind, window,
interruptible) form one *pool*, kept sorted by floor then id. A bid's static constraints are
resolved once per distinct constraint signature into the array of pools it may use, with numpy,
so a clearing round touches pools rather than offers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from computegrid.core.catalog import Catalog
from computegrid.core.market.classes import MarketClass, hours
from computegrid.core.market.orders import Bid, Offer, check_bid, check_offer, check_unique_ids

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_PoolKey = tuple[int, str, Fraction, str, int | None, int | None, bool]
_Signature = tuple[frozenset[str], frozenset[str], str | None, tuple[int, int], str, int | None, int | None]


@dataclass
class OrderBook:
    """Validated orders, sorted by id, with the index the clearing algorithms share."""

    bids: list[Bid]
    offers: list[Offer]
    classes: list[MarketClass]  # one entry per priced segment: a class may appear for spot and for reserved
    segments: list[str]  # "spot" (open capacity now) or "reserved" (windowed: reserved and resale offers)
    class_rate: list[Fraction]  # du per device-hour
    offer_class: IntArray
    offer_floor: IntArray
    offer_devices: IntArray
    pools: list[IntArray]  # offer indices per pool, by floor then id
    pool_class: IntArray
    bid_pools: list[IntArray]  # eligible pools per bid, ascending
    bid_hours: list[Fraction]  # hours each matched device is held (1 for a spot bid: surplus per hour)

    @property
    def class_rate_f(self) -> FloatArray:
        return np.array([float(r) for r in self.class_rate], dtype=np.float64)


def build_book(bids: Sequence[Bid], offers: Sequence[Offer], catalog: Catalog, *, at_ms: int) -> OrderBook:
    """Validate and index orders. Offers whose window ended by `at_ms` are left out.

    A reserved bid whose window has started by `at_ms` accepts no pool (it stays unmatched).
    Raises OrderError for duplicate ids and unknown models.
    """
    check_unique_ids(bids, offers)
    rate_by_model: dict[str, Fraction] = {}
    memory_by_model: dict[str, Fraction | None] = {}
    live_offers = []
    for offer in sorted(offers, key=lambda o: o.id):
        if offer.model not in rate_by_model:
            rate_by_model[offer.model] = check_offer(offer, catalog)
            memory_by_model[offer.model] = catalog.get(offer.model).memory_gb
        elif (known := memory_by_model[offer.model]) is not None and offer.device_memory_gb > known:
            check_offer(offer, catalog)
        if offer.window_end_ms is None or offer.window_end_ms > at_ms:
            live_offers.append(offer)
    checked_models: set[frozenset[str]] = set()
    sorted_bids = sorted(bids, key=lambda b: b.id)
    for bid in sorted_bids:
        if bid.models not in checked_models:
            check_bid(bid, catalog)
            checked_models.add(bid.models)

    # Spot capacity and windowed blocks are different products: each (class, segment) has its own price.
    raw = [(o.model, o.region, segment_of(o)) for o in live_offers]
    keys = sorted(set(raw))
    class_index = {k: i for i, k in enumerate(keys)}
    classes = [MarketClass(model, region) for model, region, _ in keys]
    offer_class_list = [class_index[k] for k in raw]
    offer_class = np.array(offer_class_list, dtype=np.int64)

    pool_members: dict[_PoolKey, list[int]] = {}
    for i, offer in enumerate(live_offers):
        key: _PoolKey = (offer_class_list[i], offer.tier, offer.device_memory_gb, offer.kind,
                         offer.window_start_ms, offer.window_end_ms, offer.interruptible)
        pool_members.setdefault(key, []).append(i)
    pool_keys = sorted(pool_members, key=lambda k: (k[0], k[1], k[2], k[3], k[4] or 0, k[5] or 0, k[6]))
    floors = [o.floor_fen_per_du for o in live_offers]
    pools = [np.array(sorted(pool_members[k], key=lambda i: (floors[i], i)), dtype=np.int64) for k in pool_keys]
    pool_class = np.array([k[0] for k in pool_keys], dtype=np.int64)

    eligible = _EligibilityIndex(classes, pool_keys)
    nothing = np.zeros(0, dtype=np.int64)
    bid_pools = [nothing if b.window_start_ms is not None and b.window_start_ms < at_ms else eligible.pools_for(b)
                 for b in sorted_bids]
    one = Fraction(1)
    bid_hours = [one if b.duration_ms is None else hours(b.duration_ms) for b in sorted_bids]
    return OrderBook(
        bids=sorted_bids, offers=live_offers, classes=classes, segments=[k[2] for k in keys],
        class_rate=[rate_by_model[c.model] for c in classes],
        offer_class=offer_class, offer_floor=np.array(floors, dtype=np.int64),
        offer_devices=np.array([o.devices for o in live_offers], dtype=np.int64),
        pools=pools, pool_class=pool_class, bid_pools=bid_pools, bid_hours=bid_hours,
    )


def segment_of(offer: Offer) -> str:
    """The priced segment of an offer: `spot` for open capacity, `reserved` for windowed blocks."""
    return "spot" if offer.kind == "spot" else "reserved"


class _EligibilityIndex:
    """Pools a bid may use, computed with numpy once per distinct constraint signature."""

    def __init__(self, classes: list[MarketClass], keys: list[_PoolKey]):
        models = sorted({c.model for c in classes})
        regions = sorted({c.region for c in classes})
        self._model_pos = {m: i for i, m in enumerate(models)}
        self._region_pos = {r: i for i, r in enumerate(regions)}
        self._pool_model = np.array([self._model_pos[classes[k[0]].model] for k in keys], dtype=np.int64)
        self._pool_region = np.array([self._region_pos[classes[k[0]].region] for k in keys], dtype=np.int64)
        self._pool_tier = np.array([k[1] for k in keys], dtype=object)
        self._memories = sorted({k[2] for k in keys})
        memory_pos = {m: i for i, m in enumerate(self._memories)}
        self._pool_memory = np.array([memory_pos[k[2]] for k in keys], dtype=np.int64)
        self._pool_spot = np.array([k[3] == "spot" for k in keys], dtype=np.bool_)
        self._pool_firm = np.array([not k[6] for k in keys], dtype=np.bool_)
        self._pool_start = np.array([-1 if k[4] is None else k[4] for k in keys], dtype=np.int64)
        self._pool_end = np.array([-1 if k[5] is None else k[5] for k in keys], dtype=np.int64)
        self._n_models = len(models)
        self._n_regions = len(regions)
        self._cache: dict[_Signature, IntArray] = {}
        self._parts: dict[tuple[object, ...], BoolArray] = {}

    def pools_for(self, bid: Bid) -> IntArray:
        memory = Fraction(bid.min_device_memory_gb)
        sig: _Signature = (bid.models, bid.regions, bid.tier, (memory.numerator, memory.denominator), bid.kind,
                           bid.window_start_ms, bid.window_end_ms)
        found = self._cache.get(sig)
        if found is None:
            mask = self._part(("kind", bid.kind, bid.window_start_ms, bid.window_end_ms), lambda: self._kind_mask(bid))
            if bid.models:
                mask = mask & self._part(("models", bid.models), lambda: self._models_mask(bid.models))
            if bid.regions:
                mask = mask & self._part(("regions", bid.regions), lambda: self._regions_mask(bid.regions))
            if bid.tier is not None:
                mask = mask & self._part(("tier", bid.tier), lambda: self._pool_tier == bid.tier)
            if memory > 0:
                mask = mask & self._part(("memory", memory), lambda: self._memory_mask(memory))
            found = np.flatnonzero(mask).astype(np.int64)
            self._cache[sig] = found
        return found

    def _part(self, key: tuple[object, ...], compute: Callable[[], BoolArray]) -> BoolArray:
        found = self._parts.get(key)
        if found is None:
            found = compute()
            self._parts[key] = found
        return found

    def _kind_mask(self, bid: Bid) -> BoolArray:
        if bid.kind == "spot":
            return self._pool_spot
        assert bid.window_start_ms is not None and bid.window_end_ms is not None
        return (~self._pool_spot & self._pool_firm & (self._pool_start <= bid.window_start_ms)
                & (self._pool_end >= bid.window_end_ms))

    def _models_mask(self, models: frozenset[str]) -> BoolArray:
        ok = np.zeros(self._n_models, dtype=np.bool_)
        ok[[self._model_pos[m] for m in models if m in self._model_pos]] = True
        return ok[self._pool_model]

    def _regions_mask(self, regions: frozenset[str]) -> BoolArray:
        ok = np.zeros(self._n_regions, dtype=np.bool_)
        ok[[self._region_pos[r] for r in regions if r in self._region_pos]] = True
        return ok[self._pool_region]

    def _memory_mask(self, memory: Fraction) -> BoolArray:
        ok = np.array([m >= memory for m in self._memories], dtype=np.bool_)
        return ok[self._pool_memory]
