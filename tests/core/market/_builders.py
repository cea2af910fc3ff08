"""Small builders for market tests: offers, bids and seeded random instances."""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

from computegrid.core.catalog import Catalog, default_catalog
from computegrid.core.market import Bid, Clearing, Offer
from computegrid.core.market.book import segment_of

CATALOG: Catalog = default_catalog()
T0 = 1_800_000_000_000
HOUR = 3_600_000


def offer(id: str = "o1", *, model: str = "A100-80G", region: str = "wulanchabu", tier: str = "hub",
          devices: int = 8, floor: int = 100, **kw: Any) -> Offer:
    memory = kw.pop("device_memory_gb") if "device_memory_gb" in kw else CATALOG.get(model).memory_gb
    return Offer(id=id, provider=kw.pop("provider", "p1"), site=kw.pop("site", "s1"), region=region, tier=tier,
                 model=model, device_memory_gb=memory, devices=devices, floor_fen_per_du=floor, **kw)


def bid(id: str = "b1", *, devices: int = 1, limit: int = 200, models: set[str] | None = None,
        regions: set[str] | None = None, **kw: Any) -> Bid:
    return Bid(id=id, tenant=kw.pop("tenant", "t1"), devices=devices, limit_fen_per_du=limit,
               models=frozenset(models or ()), regions=frozenset(regions or ()), **kw)


MODELS = ["T4", "A100-40G", "A100-80G", "H100-80G", "MI300X", "L40S"]
REGIONS = ["jingjinji", "guizhou", "wulanchabu"]
TIERS = ["core", "hub", "edge"]


def random_instance(seed: int, n_bids: int, n_offers: int) -> tuple[list[Bid], list[Offer]]:
    """A seeded instance with mixed constraints (model, memory, region, tier) over 6 models x 3 regions."""
    rng = random.Random(seed)
    reference = {m: rng.randint(80, 160) for m in MODELS}
    offers = [offer(f"o{i:03d}", model=(m := rng.choice(MODELS)), region=rng.choice(REGIONS),
                    tier=rng.choice(TIERS), devices=rng.choice([1, 2, 4, 8]),
                    floor=int(reference[m] * rng.uniform(0.8, 1.2)))
              for i in range(n_offers)]
    bids = []
    for i in range(n_bids):
        kind = rng.random()
        models = {rng.choice(MODELS)} if kind < 0.5 else set(rng.sample(MODELS, 3)) if kind < 0.8 else set()
        ref = sum(reference[m] for m in (models or MODELS)) / len(models or MODELS)
        bids.append(bid(f"b{i:03d}", devices=rng.choice([1, 1, 2, 4, 8]), limit=int(ref * rng.uniform(0.8, 1.4)),
                        models=models, regions=set(rng.sample(REGIONS, rng.randint(1, 3))) if rng.random() < 0.6
                        else None, tier=rng.choice(TIERS) if rng.random() < 0.3 else None,
                        min_device_memory_gb=Fraction(rng.choice([32, 48, 80])) if rng.random() < 0.2
                        else Fraction(0)))
    return bids, offers


def check_feasible(result: Clearing, bids: list[Bid], offers: list[Offer]) -> None:
    """Assert every invariant a clearing promises: constraints, capacity, one fill per bid, uniform prices."""
    by_bid = {b.id: b for b in bids}
    by_offer = {o.id: o for o in offers}
    used: dict[str, int] = {}
    seen: set[str] = set()
    prices = {(p.market_class, p.segment): p for p in result.prices}
    for m in result.matches:
        b, o = by_bid[m.bid_id], by_offer[m.offer_id]
        assert m.bid_id not in seen, f"bid {m.bid_id} matched twice"
        seen.add(m.bid_id)
        assert b.accepts_offer_statically(o), f"{m.bid_id} -> {m.offer_id} breaks a constraint"
        assert m.devices == b.devices and m.market_class == o.market_class
        used[o.id] = used.get(o.id, 0) + m.devices
        price = prices[(m.market_class, segment_of(o))].price_fen_per_du
        assert m.price_fen_per_du == price
        assert o.floor_fen_per_du <= price <= b.limit_fen_per_du, (m, o.floor_fen_per_du, b.limit_fen_per_du)
    for offer_id, count in used.items():
        assert count <= by_offer[offer_id].devices, f"offer {offer_id} over-filled"
    assert set(result.unmatched_bids) == set(by_bid) - seen
