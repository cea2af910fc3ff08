"""Offers: a provider posts (and withdraws) its own capacity for sale; anyone may list what is open.

Every offer is checked by core (`Offer`, `check_offer`) and against the store: the site must be the
provider's, the model canonical and registered there in at least the devices offered, and a spot
floor not below the interruptible floor of the provider's posted price schedule.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.market import Offer, OrderError, check_offer
from computegrid.services.errors import Conflict, Forbidden, Invalid, NotFound
from computegrid.services.market.common import (
    MAX_DEVICES,
    OfferRecord,
    PostedPriceBook,
    canonical_model,
    offer_records,
    order_error,
)
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Device, Node, Provider, Site
from computegrid.store.models_market import MarketLease, MarketOffer

KINDS = ("spot", "reserved")  # resale offers are made from reservations (services/market/reserved.py)
STATES = ("open", "cancelled")
MAX_LIST = 1000


def held_devices(session: Session, offer: MarketOffer, at_ms: int) -> int:
    """Devices of the offer held now: spot and on-demand leases, or reserved blocks in force."""
    query = select(func.coalesce(func.sum(MarketLease.devices), 0)).where(MarketLease.offer_id == offer.id)
    if offer.kind == "spot":
        query = query.where(MarketLease.state.in_(("allocated", "active", "preempting")))
    else:
        query = query.where(MarketLease.state == "held", MarketLease.start_ms <= at_ms, MarketLease.end_ms > at_ms)
    return int(session.scalar(query) or 0)


def offer_view(session: Session, rec: OfferRecord, prices: PostedPriceBook, now_ms: int) -> dict[str, Any]:
    r = rec.row
    return {"id": r.id, "kind": r.kind, "state": r.state, "provider": rec.provider, "site": rec.site.name,
            "region": rec.site.region, "tier": rec.site.tier, "model": r.model,
            "device_memory_gb": str(Fraction(r.device_memory_gb)), "devices": r.devices,
            "floor_fen_per_du": r.floor_fen_per_du,
            "on_demand_fen_per_du": prices.price(r.provider_id, r.model, rec.site.tier, now_ms)
            if r.kind == "spot" else None,
            "window_start_ms": r.window_start_ms, "window_end_ms": r.window_end_ms,
            "window_start": iso(r.window_start_ms), "window_end": iso(r.window_end_ms),
            "interruptible": r.interruptible, "reseller": rec.reseller, "reservation_id": r.reservation_id,
            "held_devices": held_devices(session, r, now_ms), "created_at": iso(r.created_ms)}


def _site_for(session: Session, principal: Principal, name: str) -> Site:
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        raise NotFound(f"no site {name!r}")
    if not principal.can_manage_provider(site.provider_id):
        raise Forbidden(f"site {name!r} is not your provider's; a provider offers only its own sites' capacity")
    return site


def registered_devices(session: Session, site_id: int, model: str) -> int:
    return int(session.scalar(select(func.count(Device.id)).join(Node, Node.id == Device.node_id)
                              .where(Node.site_id == site_id, Device.model == model,
                                     Device.health != "removed")) or 0)


def create_offer(*, session: Session, principal: Principal, catalog: Catalog, site: str, model: str, devices: int,
                 floor_fen_per_du: int, kind: str = "spot", window_start_ms: int | None = None,
                 window_end_ms: int | None = None, interruptible: bool = False,
                 device_memory_gb: Fraction | None = None, now_ms: int) -> dict[str, Any]:
    """A provider's user (or an operator) offers devices of one model at one of the provider's sites."""
    principal.require_role("provider")
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}, got {kind!r} "
                      "(resale offers are made with POST /v1/reservations/{id}/resell)")
    row_site = _site_for(session, principal, site)
    canonical = canonical_model(model, catalog)
    memory = catalog.get(canonical).memory_gb if device_memory_gb is None else device_memory_gb
    if memory is None:
        raise Invalid(f"the catalog does not know how much memory a {canonical} has; give device_memory_gb")
    if not isinstance(devices, int) or isinstance(devices, bool) or not 0 < devices <= MAX_DEVICES:
        raise Invalid(f"devices must be a whole number from 1 to {MAX_DEVICES}, got {devices!r}")
    if kind == "reserved" and window_start_ms is not None and window_end_ms is not None \
            and window_end_ms <= now_ms:
        raise Invalid(f"the window ends at {window_end_ms} ms, which is not in the future (now {now_ms} ms)")
    provider = session.get(Provider, row_site.provider_id)
    assert provider is not None
    try:
        offer = Offer(id="new", provider=provider.name, site=row_site.name, region=row_site.region,
                      tier=row_site.tier, model=canonical, device_memory_gb=memory, devices=devices,
                      floor_fen_per_du=floor_fen_per_du, kind=kind,  # type: ignore[arg-type]
                      window_start_ms=window_start_ms, window_end_ms=window_end_ms, interruptible=interruptible)
        check_offer(offer, catalog)
    except OrderError as exc:
        raise order_error(exc) from exc
    have = registered_devices(session, row_site.id, canonical)
    if devices > have:
        raise Invalid(f"site {row_site.name!r} has {have} {canonical} device{'s' if have != 1 else ''} registered; "
                      f"an offer cannot sell {devices}")
    floor = PostedPriceBook(session).interruptible_floor(row_site.provider_id)
    if kind == "spot" and floor_fen_per_du < floor:
        raise Invalid(f"floor {floor_fen_per_du} fen/du is below {provider.name}'s posted interruptible floor "
                      f"of {floor} fen/du")
    row = MarketOffer(provider_id=row_site.provider_id, site_id=row_site.id, model=canonical,
                      device_memory_gb=str(memory), devices=devices, floor_fen_per_du=floor_fen_per_du, kind=kind,
                      window_start_ms=window_start_ms, window_end_ms=window_end_ms, interruptible=interruptible,
                      state="open", created_by=principal.user_id, created_ms=now_ms, updated_ms=now_ms)
    session.add(row)
    session.flush()
    (rec,) = offer_records(session, kinds=(kind,), ids=[row.id])
    return offer_view(session, rec, PostedPriceBook(session), now_ms)


def cancel_offer(*, session: Session, principal: Principal, offer_id: int, now_ms: int) -> dict[str, Any]:
    """Withdraw an open offer: its provider (or an operator), or the reseller of a resale offer.

    Spot leases on a withdrawn spot offer are preempted at the next round (with notice); reserved
    blocks already bought stay valid, as do resold devices already sold.
    """
    row = session.get(MarketOffer, offer_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no offer {offer_id}")
    owner = (principal.tenant_id == row.reseller_tenant_id and principal.role == "tenant") if row.kind == "resale" \
        else principal.can_manage_provider(row.provider_id)
    if not (owner or principal.is_operator):
        raise Forbidden(f"offer {offer_id} is not yours to withdraw")
    if row.state != "open":
        raise Conflict(f"offer {offer_id} is already {row.state}")
    row.state = "cancelled"
    row.updated_ms = now_ms
    (rec,) = offer_records(session, kinds=(row.kind,), ids=[row.id], open_only=False)
    return offer_view(session, rec, PostedPriceBook(session), now_ms)


def list_offers(*, session: Session, now_ms: int, kind: str | None = None, state: str | None = "open",
                site: str | None = None, model: str | None = None, region: str | None = None,
                provider: str | None = None, catalog: Catalog, limit: int = 100) -> list[dict[str, Any]]:
    """Offers anyone may see; by default those open now (a reserved offer whose window ended is not)."""
    if kind is not None and kind not in (*KINDS, "resale"):
        raise Invalid(f"kind must be one of spot, reserved, resale, got {kind!r}")
    if state is not None and state not in STATES:
        raise Invalid(f"state must be one of {', '.join(STATES)}, got {state!r}")
    canonical = canonical_model(model, catalog) if model is not None else None
    records = offer_records(session, kinds=(kind,) if kind else ("spot", "reserved", "resale"),
                            now_ms=now_ms if state == "open" else None, open_only=state == "open")
    prices = PostedPriceBook(session)
    out = []
    for rec in records:
        if ((state is not None and rec.row.state != state) or (site is not None and rec.site.name != site)
                or (canonical is not None and rec.row.model != canonical)
                or (region is not None and rec.site.region != region)
                or (provider is not None and rec.provider != provider)):
            continue
        out.append(offer_view(session, rec, prices, now_ms))
        if len(out) >= max(1, min(limit, MAX_LIST)):
            break
    return out


def get_offer(*, session: Session, offer_id: int, now_ms: int) -> dict[str, Any]:
    found = offer_records(session, kinds=("spot", "reserved", "resale"), ids=[offer_id], open_only=False)
    if not found:
        raise NotFound(f"no offer {offer_id}")
    return offer_view(session, found[0], PostedPriceBook(session), now_ms)
