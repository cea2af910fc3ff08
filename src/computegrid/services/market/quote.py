"""Quotes before buying: on demand at providers' posted prices, spot at the index, reserved blocks.

Core `quote` runs twice: over the open offers (spot at the class's latest index price or the offer's
floor; reserved and resale blocks at their floor, with the devices still free over the asked window),
and over what providers sell on demand: every (site, model) registered at a provider that posts a
price schedule, at its price now. A job spec is quoted for its devices, constraints and time limit
(1 hour without one). Nothing is bought or stored.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computegrid.core.billing.invoice import format_du
from computegrid.core.catalog import Catalog
from computegrid.core.jobs import SpecError, parse_job_spec
from computegrid.core.market import Offer, OrderError, QuoteOption, QuoteRequest, free_devices, parse_models, quote
from computegrid.core.market.quote import QUOTE_KINDS
from computegrid.core.placement.base import RttTable
from computegrid.core.units import MS_PER_HOUR
from computegrid.services.errors import Invalid
from computegrid.services.market.common import PostedPriceBook, job_need, offer_records, order_error
from computegrid.services.market.index import latest_index
from computegrid.services.market.money import whole_fen
from computegrid.services.market.reserved import blocks_on
from computegrid.services.views import iso
from computegrid.store.models import Device, Node, Provider, Site
from computegrid.store.models_billing import PriceScheduleRow

PER_KIND = 3


def request_from_spec(data: Any, catalog: Catalog, rtt: RttTable, regions: set[str],
                      start_ms: int | None) -> QuoteRequest:
    """The quote request for a job spec: its devices, models, memory, routing and time limit."""
    try:
        spec = parse_job_spec(data, catalog)
    except SpecError as exc:
        raise Invalid(f"invalid job spec: {exc}", detail=[{"field": p.field, "message": p.message}
                                                           for p in exc.problems]) from exc
    need = job_need(spec)
    if need is None:
        raise Invalid("the job asks for no accelerators; the market sells devices (add resources.accelerators)")
    duration = (spec.time_limit_s or 3600) * 1000
    try:
        return QuoteRequest(devices=need.devices, models=need.models, min_device_memory_gb=need.min_device_memory_gb,
                            regions=need.regions(regions, rtt) or (frozenset({"(none in reach)"})
                                                                   if need.user_region and need.max_rtt_ms else
                                                                   frozenset()),
                            tier=need.tier, duration_ms=duration, start_ms=start_ms)
    except OrderError as exc:
        raise order_error(exc) from exc


def make_request(*, catalog: Catalog, devices: int, models: str | list[str] | None,
                 min_device_memory_gb: Fraction | None, regions: list[str] | None, tier: str | None,
                 duration_ms: int, start_ms: int | None) -> QuoteRequest:
    expression = "|".join(models) if isinstance(models, list) else (models or "")
    try:
        return QuoteRequest(devices=devices, models=parse_models(expression, catalog),
                            min_device_memory_gb=min_device_memory_gb or Fraction(0), regions=frozenset(regions or ()),
                            tier=tier, duration_ms=duration_ms, start_ms=start_ms)
    except OrderError as exc:
        raise order_error(exc) from exc


def _posted_capacity(session: Session, prices: PostedPriceBook, now_ms: int) -> list[Offer]:
    """What each provider with posted prices sells on demand: per site and model, its devices now."""
    rows = session.execute(
        select(Site, Provider.name, Device.model, func.count(Device.id), func.min(Device.memory_gb))
        .join(Node, Node.site_id == Site.id).join(Device, Device.node_id == Node.id)
        .join(Provider, Provider.id == Site.provider_id)
        .join(PriceScheduleRow, PriceScheduleRow.provider_id == Site.provider_id)
        .where(Device.health != "removed")
        .group_by(Site.id, Provider.name, Device.model).order_by(Site.id, Device.model)).all()
    out = []
    for site, provider, model, count, memory in rows:
        price = prices.price(site.provider_id, model, site.tier, now_ms)
        if price is None or not memory:
            continue
        out.append(Offer(id=f"posted:{site.name}:{model}", provider=provider, site=site.name, region=site.region,
                         tier=site.tier, model=model, device_memory_gb=Fraction(str(memory)), devices=int(count),
                         floor_fen_per_du=price, on_demand_fen_per_du=price))
    return out


def _option_view(o: QuoteOption) -> dict[str, Any]:
    posted = o.offer_id.startswith("posted:")
    return {"kind": o.kind, "offer_id": None if posted else int(o.offer_id), "site": o.site, "tier": o.tier,
            "model": o.market_class.model, "region": o.market_class.region, "price_fen_per_du": o.price_fen_per_du,
            "du_per_hour": format_du(o.du_per_hour), "estimated_total_fen": whole_fen(o.estimated_total_fen),
            "estimated_total_exact": str(o.estimated_total_fen), "note": o.note}


def quote_now(*, session: Session, catalog: Catalog, rtt: RttTable, now_ms: int, job: Any = None,
              request: QuoteRequest | None = None, start_ms: int | None = None) -> dict[str, Any]:
    """Options to buy what a job spec (or a quote request) asks for, cheapest first per way to buy."""
    recs = offer_records(session, kinds=("spot", "reserved", "resale"), now_ms=now_ms)
    prices = PostedPriceBook(session)
    posted = _posted_capacity(session, prices, now_ms)
    if request is None:
        regions = {rec.site.region for rec in recs} | {o.region for o in posted}
        request = request_from_spec(job, catalog, rtt, regions, start_ms)
    start = now_ms if request.start_ms is None else request.start_ms
    end = start + request.duration_ms
    offers = []
    for rec in recs:
        if rec.row.kind == "spot":
            offers.append(rec.core())
            continue
        if not rec.core().covers(start, end):
            offers.append(rec.core())  # the quote says the window excluded it
            continue
        free = free_devices(rec.core(), blocks_on(session, rec, catalog), start, end)
        if free > 0:
            offers.append(rec.core(devices=free))
    try:
        market = quote(request, offers, latest_index(session), catalog, at_ms=now_ms, per_kind=PER_KIND)
        on_demand = quote(request, posted, latest_index(session), catalog, at_ms=now_ms, per_kind=1000)
    except OrderError as exc:
        raise order_error(exc) from exc
    options = [o for o in on_demand.options if o.kind == "on-demand"][:PER_KIND] + list(market.options)
    options.sort(key=lambda o: QUOTE_KINDS.index(o.kind))
    missing = [k for k in QUOTE_KINDS if not any(o.kind == k for o in options)]
    explanation: str | None
    if not options:
        explanation = market.explanation or "no capacity matches"
        explanation += "; no provider that posts prices has matching devices" if posted else \
            "; no provider has posted on-demand prices"
    else:
        explanation = f"no {' or '.join(missing)} capacity matches" if missing else None
    return {"at_ms": now_ms, "at": iso(now_ms), "request": {
        "devices": request.devices, "models": sorted(request.models),
        "min_device_memory_gb": str(request.min_device_memory_gb), "regions": sorted(request.regions),
        "tier": request.tier, "duration_ms": request.duration_ms, "start_ms": start,
        "hours": str(Fraction(request.duration_ms, MS_PER_HOUR))},
        "options": [_option_view(o) for o in options], "explanation": explanation,
        "cheapest": {k: next((_option_view(o) for o in options if o.kind == k), None) for k in QUOTE_KINDS}}


def parse_quote_body(data: Any) -> dict[str, Any]:
    """A quote body must be a JSON object (CLI files are YAML objects)."""
    if not isinstance(data, dict):
        raise Invalid(f"a quote asks with a mapping (a job spec, or devices/models/...), got {json.dumps(data)[:60]}")
    return data
