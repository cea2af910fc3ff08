"""Energy and prices of the simulated federation: device power, electricity, and providers' posted prices.

Energy. A busy device draws its rated board power (TDP) for the time it is held; idle devices are not
counted. Energy cost (fen) = TDP (kW) x busy hours x the site's electricity price (fen/kWh, from
data/regions.csv). TDP comes from the catalog (`tdp_w`) where it has one. Where it does not:
- `H800-80G`: 700 W, the H100 SXM's rating in the catalog. The H800 is the H100 SXM with its NVLink cut
  to 400 GB/s (the catalog row's sources); no datasheet giving its own TDP was found.
- opaque models (unknown to the catalog, such as alibaba-spot's GPU-series-1/2): `OPAQUE_TDP_W` = 300 W,
  an assumption in the middle of the catalog's data-centre GPUs (A10 150 W, V100 300 W, A100 400 W).

Prices (a documented rule, not market data). Every site is one provider. For each rated model at a site,
the energy cost of one du there is e = TDP (kW) x electricity (fen/kWh) / du per device-hour (rated FP16
PFLOP/s). The provider posts, in integer fen per du, rounded up:
- peak (08:00-22:00 local): `PEAK_MARKUP` x e;
- off-peak (22:00-08:00 local, band `off-peak`): `OFF_PEAK_MARKUP` x e, so off-peak is cheaper;
- interruptible (spot) floor: `FLOOR_MARKUP` x e, the least it sells spot capacity for.
The markups are assumptions that make the posted price energy cost plus a margin. Because price follows
energy, a cheap-power hub posts less per du than a city, and a model that gives more FLOPs per watt
posts less per du. Opaque models have no du, so they are not priced (`core.billing` refuses them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.billing.prices import PriceRule, PriceSchedule, TimeBand, next_band_change_ms, price_fen_per_du
from computegrid.core.catalog import Catalog, UnknownAccelerator, default_catalog
from computegrid.core.market.classes import du_per_device_hour
from computegrid.sim.pools import SimPool, Site

#: board power assumed where the catalog has none (see the module docstring)
ASSUMED_TDP_W: dict[str, int] = {"H800-80G": 700}
OPAQUE_TDP_W = 300
PEAK_MARKUP = Fraction(3)
OFF_PEAK_MARKUP = Fraction(2)
FLOOR_MARKUP = Fraction(5, 4)
OFF_PEAK = TimeBand.of("off-peak", "22:00", "08:00")


def tdp_w(model: str, catalog: Catalog) -> int | Fraction:
    """Board power (W) of one device of `model`: the catalog's, else `ASSUMED_TDP_W`, else `OPAQUE_TDP_W`."""
    try:
        entry = catalog.get(model)
    except UnknownAccelerator:
        return OPAQUE_TDP_W
    if entry.tdp_w is not None:
        return entry.tdp_w
    return ASSUMED_TDP_W.get(entry.model, OPAQUE_TDP_W)


def rated_du_per_hour(model: str, catalog: Catalog) -> Fraction | None:
    """du per device-hour of `model` (rated FP16 PFLOP/s), or None when it has no rating (opaque)."""
    try:
        entry = catalog.get(model)
    except UnknownAccelerator:
        return None
    if entry.fp16_tflops is None:
        return None
    return du_per_device_hour(entry.model, catalog)


def utc_offset_min(text: str) -> int:
    """'+08:00' -> 480 minutes east of UTC."""
    sign = -1 if text.strip().startswith("-") else 1
    hours, _, minutes = text.strip().lstrip("+-").partition(":")
    return sign * (int(hours) * 60 + int(minutes or 0))


@dataclass(frozen=True)
class SitePrices:
    """One site's posted prices: its schedule (fen/du), spot floors per model, energy fen per device-hour."""

    site: Site
    schedule: PriceSchedule
    floors: dict[str, int]
    peak: dict[str, int]
    energy_fen_per_device_hour: dict[str, Fraction]


@dataclass(frozen=True)
class Pricing:
    """Prices and energy of every site of a pool (see the module docstring)."""

    sites: dict[str, SitePrices]
    catalog: Catalog

    def energy_fen(self, site: str, model: str, device_ms: int) -> Fraction:
        """Exact energy cost (fen) of holding `device_ms` device-milliseconds of `model` at `site`."""
        return self.sites[site].energy_fen_per_device_hour[model] * Fraction(device_ms, 3_600_000)

    def priced_models(self) -> tuple[str, ...]:
        """Models with a posted price at some site (those with a rated FP16), sorted."""
        return tuple(sorted({m for p in self.sites.values() for m in p.peak}))

    def median_peak(self) -> int:
        """The median posted peak price over every (site, model) offer, fen per du (lower median)."""
        values = sorted(v for p in self.sites.values() for v in p.peak.values())
        return values[(len(values) - 1) // 2] if values else 0

    def min_floor(self) -> int:
        """The lowest spot floor over every (site, model), fen per du."""
        return min((v for p in self.sites.values() for v in p.floors.values()), default=0)

    def cheapest_posted(self, at_ms: int, utc_offset_min: dict[str, int]) -> tuple[dict[str, int], int | None]:
        """Each rated model's lowest posted price (fen per du) over the sites at `at_ms` (epoch ms), and the
        first band edge after `at_ms` at any site (None without bands), until which the prices hold.

        What the live scheduler reads per pass (`core.placement.preference.cheapest_model_prices` over
        nodes priced by their site's schedule, as `sim.live_queue.posted_node_prices` prices them): every
        node of one (site, model) carries the same price, so the lowest over sites is the lowest over nodes.
        `utc_offset_min`: minutes east of UTC by region name.
        """
        lowest: dict[str, int] = {}
        until: int | None = None
        for p in self.sites.values():
            offset = utc_offset_min[p.site.region]
            for model in p.peak:
                price = price_fen_per_du(p.schedule, self.catalog.get(model).model, p.site.tier, at_ms, offset)
                lowest[model] = min(price, lowest.get(model, price))
            edge = next_band_change_ms(p.schedule, at_ms, offset)
            if edge is not None and (until is None or edge < until):
                until = edge
        return lowest, until


def _ceil(x: Fraction) -> int:
    return max(1, math.ceil(x))


def site_prices(pool: SimPool, catalog: Catalog | None = None) -> Pricing:
    """Each site's posted prices and energy costs by the module docstring's rule."""
    catalog = catalog or default_catalog()
    models_at: dict[str, set[str]] = {}
    for node, site in zip(pool.nodes, pool.node_site, strict=True):
        if node.devices:
            models_at.setdefault(site.name, set()).add(node.model)
    out: dict[str, SitePrices] = {}
    for site in pool.sites:
        kwh_fen = Fraction(str(site.electricity_fen_per_kwh))
        energy: dict[str, Fraction] = {}
        floors: dict[str, int] = {}
        peak: dict[str, int] = {}
        rules: list[PriceRule] = []
        for model in sorted(models_at.get(site.name, ())):
            energy[model] = Fraction(tdp_w(model, catalog)) / 1000 * kwh_fen
            rate = rated_du_per_hour(model, catalog)
            if rate is None:
                continue
            canonical = catalog.get(model).model
            per_du = energy[model] / rate
            peak[model] = _ceil(per_du * PEAK_MARKUP)
            floors[model] = _ceil(per_du * FLOOR_MARKUP)
            rules += [PriceRule(peak[model], model=canonical),
                      PriceRule(_ceil(per_du * OFF_PEAK_MARKUP), model=canonical, band=OFF_PEAK.name)]
        schedule = PriceSchedule(provider=site.name, base_fen_per_du=max(peak.values(), default=1), rules=tuple(rules),
                                 bands=(OFF_PEAK,), interruptible_floor_fen_per_du=min(floors.values(), default=0))
        out[site.name] = SitePrices(site, schedule, floors, peak, energy)
    return Pricing(out, catalog)
