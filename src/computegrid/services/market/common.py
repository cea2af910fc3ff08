"""Shared pieces of the market services: stored rows as core orders, posted on-demand prices, what a
job asks of the market, and the lock that keeps two rounds (or a round and a purchase) apart."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from computegrid.core import billing as core_billing
from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.jobs import JobSpec
from computegrid.core.market import MarketClass, Offer, OrderError
from computegrid.core.placement.base import RttTable, rtt_between
from computegrid.services.billing.prices import PostedPrices, load_prices
from computegrid.services.errors import Invalid
from computegrid.store.models import Provider, Site, Tenant
from computegrid.store.models_market import MarketOffer

MARKET_LOCK_KEY = 0x6367_6D6B  # "cgmk"
DEFAULT_NOTICE_MS = 60_000  # a preempted spot job gets SIGTERM now and is stopped this much later
MAX_DEVICES = 100_000


def lock_market(session: Session) -> None:
    """Serialise market writes (rounds, purchases, resales) on PostgreSQL for the transaction; SQLite
    writers are serial already (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MARKET_LOCK_KEY})


def order_error(exc: OrderError) -> Invalid:
    """A core refusal as a 422 with the core's own message (it names the order and the problem)."""
    return Invalid(str(exc))


def canonical_model(name: str, catalog: Catalog) -> str:
    """The catalog's canonical name for one model (any case, an alias, or a name that stands for only one
    model); Invalid otherwise."""
    try:
        return catalog.get(name).model
    except UnknownAccelerator:
        pass
    try:
        found = catalog.resolve(name)
    except UnknownAccelerator:
        raise Invalid(f"unknown accelerator model {name!r}; known models: {', '.join(catalog.names)}") from None
    if len(found) > 1:
        raise Invalid(f"{name!r} stands for several models ({', '.join(sorted(found))}); name one")
    return next(iter(found))


@dataclass(frozen=True)
class OfferRecord:
    """A stored offer with what a core Offer needs from other tables."""

    row: MarketOffer
    site: Site
    provider: str
    reseller: str | None

    def core(self, *, devices: int | None = None, on_demand: int | None = None) -> Offer:
        """The core Offer; `devices` overrides what is sellable now, `on_demand` is the posted price."""
        r = self.row
        return Offer(id=str(r.id), provider=self.provider, site=self.site.name, region=self.site.region,
                     tier=self.site.tier, model=r.model, device_memory_gb=Fraction(r.device_memory_gb),
                     devices=r.devices if devices is None else devices, floor_fen_per_du=r.floor_fen_per_du,
                     kind=r.kind,  # type: ignore[arg-type]  # stored values are checked on the way in
                     window_start_ms=r.window_start_ms, window_end_ms=r.window_end_ms,
                     interruptible=r.interruptible, on_demand_fen_per_du=on_demand if r.kind == "spot" else None,
                     reseller=self.reseller if r.kind == "resale" else None,
                     reservation_id=str(r.reservation_id) if r.kind == "resale" else None)

    @property
    def market_class(self) -> MarketClass:
        return MarketClass(self.row.model, self.site.region)


def offer_records(session: Session, *, kinds: Iterable[str], now_ms: int | None = None,
                  ids: Iterable[int] | None = None, open_only: bool = True) -> list[OfferRecord]:
    """Offers of the given kinds (open ones whose window has not ended by `now_ms`), by id."""
    query = (select(MarketOffer, Site, Provider.name, Tenant.name)
             .join(Site, Site.id == MarketOffer.site_id).join(Provider, Provider.id == MarketOffer.provider_id)
             .outerjoin(Tenant, Tenant.id == MarketOffer.reseller_tenant_id)
             .where(MarketOffer.kind.in_(list(kinds))).order_by(MarketOffer.id))
    if open_only:
        query = query.where(MarketOffer.state == "open")
    if now_ms is not None:
        query = query.where((MarketOffer.window_end_ms.is_(None)) | (MarketOffer.window_end_ms > now_ms))
    if ids is not None:
        query = query.where(MarketOffer.id.in_(list(ids)))
    return [OfferRecord(row, site, provider, reseller) for row, site, provider, reseller in session.execute(query)]


@dataclass
class PostedPriceBook:
    """Providers' posted on-demand prices (the money side's schedules), loaded once per use case."""

    session: Session
    _loaded: dict[int, PostedPrices | None] = field(default_factory=dict)

    def posted(self, provider_id: int) -> PostedPrices | None:
        """The provider's schedule, None when it posts none."""
        if provider_id not in self._loaded:
            try:
                self._loaded[provider_id] = load_prices(self.session, provider_id)
            except core_billing.BillingError:  # validated when posted; never fail a round on it
                self._loaded[provider_id] = None
        return self._loaded[provider_id]

    def price(self, provider_id: int, model: str, tier: str, at_ms: int) -> int | None:
        """fen per du for `model` at `tier` at `at_ms` by the provider's schedule, None when it posts none."""
        posted = self.posted(provider_id)
        if posted is None:
            return None
        try:
            return core_billing.price_fen_per_du(posted.schedule, model, tier, at_ms, posted.utc_offset_min)
        except core_billing.BillingError:
            return None

    def interruptible_floor(self, provider_id: int) -> int:
        """The lowest fen/du the provider's schedule lets interruptible capacity go for (0 without one)."""
        posted = self.posted(provider_id)
        return posted.schedule.interruptible_floor_fen_per_du if posted is not None else 0


@dataclass(frozen=True)
class JobNeed:
    """What a job asks of the market: `devices` whole devices on one site (nodes x devices per node; a
    share of a device counts as one), the models and memory it accepts, and where it may run."""

    devices: int
    models: frozenset[str]
    min_device_memory_gb: Fraction
    tier: str | None
    user_region: str | None
    max_rtt_ms: int | None
    interruptible: bool
    limit_fen_per_du: int | None
    reservation: int | None

    def accepts(self, offer: Offer, rtt: RttTable) -> bool:
        """Whether the offer's model, memory, region (through the latency table) and tier suit the job."""
        if self.models and offer.model not in self.models:
            return False
        if offer.device_memory_gb < self.min_device_memory_gb:
            return False
        if self.tier is not None and offer.tier != self.tier:
            return False
        return self.accepts_region(offer.region, rtt)

    def accepts_region(self, region: str, rtt: RttTable) -> bool:
        if self.user_region is None or self.max_rtt_ms is None:
            return True
        found = rtt_between(rtt, self.user_region, region)
        return found is not None and found <= self.max_rtt_ms

    def regions(self, candidates: Iterable[str], rtt: RttTable) -> frozenset[str]:
        """The regions a bid for this job accepts among `candidates` (empty = any)."""
        if self.user_region is None or self.max_rtt_ms is None:
            return frozenset()
        return frozenset(r for r in candidates if self.accepts_region(r, rtt))


def job_need(spec: JobSpec) -> JobNeed | None:
    """The job's market need, or None when it asks for no accelerators (CPU work is not sold per du)."""
    res = spec.resources
    if not res.milli_per_node:
        return None
    per_node = max(1, res.milli_per_node // 1000)
    return JobNeed(devices=per_node * spec.nodes, models=res.models,
                   min_device_memory_gb=res.min_device_memory_gb or Fraction(0), tier=spec.routing.tier,
                   user_region=spec.routing.user_region, max_rtt_ms=spec.routing.max_rtt_ms,
                   interruptible=spec.interruptible, limit_fen_per_du=spec.max_price_fen_per_du,
                   reservation=spec.reservation)


def dumps_list(values: Iterable[str]) -> str:
    return json.dumps(sorted(values))


def loads_set(text_value: str) -> frozenset[str]:
    return frozenset(json.loads(text_value or "[]"))
