"""Reserved blocks: buy devices x a future window from a reserved (or resale) offer, list them, and
resell unused future time.

A purchase is core `reserve` (capacity counted over time, priced at the offer's floor) and one
posting (`money.pay_for_block`), in one transaction under the market lock; an Idempotency-Key makes a
retry return the same block without paying twice. A job runs on a block by naming it in its spec
(`reservation: <id>`): the scheduler places it on the block's site and model inside the window, at
0 fen/du (services/market/placement.py). `resell` lists the unused future part as a resale offer; when
someone buys it the proceeds (less the platform fee) go to the reseller's wallet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core import billing as core_billing
from computegrid.core.catalog import Catalog
from computegrid.core.market import MarketClass, Offer, OrderError, Reservation, du_per_device_hour, resell, reserve
from computegrid.core.market.reserved import peak_devices
from computegrid.services.billing.idempotency import Replay, once
from computegrid.services.billing.parties import tenant_for
from computegrid.services.billing.wallets import wallet_view
from computegrid.services.errors import Conflict, Forbidden, Invalid, NotFound
from computegrid.services.market.capacity import reservation_jobs
from computegrid.services.market.common import (
    MAX_DEVICES,
    OfferRecord,
    PostedPriceBook,
    lock_market,
    offer_records,
    order_error,
)
from computegrid.services.market.money import pay_for_block, whole_fen
from computegrid.services.market.offers import offer_view
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Site, Tenant
from computegrid.store.models_market import MarketLease, MarketOffer

MAX_LIST = 1000


def core_reservation(lease: MarketLease, tenant: str, region: str, catalog: Catalog) -> Reservation:
    assert lease.end_ms is not None
    return Reservation(id=str(lease.id), tenant=tenant, offer_id=str(lease.offer_id),
                       market_class=MarketClass(lease.model, region), devices=lease.devices, start_ms=lease.start_ms,
                       end_ms=lease.end_ms, price_fen_per_du=lease.price_fen_per_du,
                       du_per_device_hour=du_per_device_hour(lease.model, catalog))


def blocks_on(session: Session, offer: OfferRecord, catalog: Catalog) -> list[Reservation]:
    """Blocks already bought from an offer (every state but released), as core reservations."""
    rows = session.execute(select(MarketLease, Tenant.name).join(Tenant, Tenant.id == MarketLease.tenant_id)
                           .where(MarketLease.offer_id == offer.row.id, MarketLease.kind == "reserved")).all()
    return [core_reservation(lease, name, offer.site.region, catalog) for lease, name in rows]


def reservation_view(session: Session, lease: MarketLease, now_ms: int) -> dict[str, Any]:
    tenant = session.get(Tenant, lease.tenant_id)
    site = session.get(Site, lease.site_id)
    offer = session.get(MarketOffer, lease.offer_id)
    assert tenant is not None and site is not None and offer is not None
    assert lease.end_ms is not None
    listed = session.scalars(select(MarketOffer.id).where(MarketOffer.kind == "resale",
                                                          MarketOffer.reservation_id == lease.id)).all()
    phase = "upcoming" if now_ms < lease.start_ms else "in force" if now_ms < lease.end_ms else "ended"
    return {"id": lease.id, "tenant": tenant.name, "offer_id": lease.offer_id, "offer_kind": offer.kind,
            "site": site.name, "region": site.region, "tier": site.tier, "model": lease.model,
            "devices": lease.devices, "start_ms": lease.start_ms, "end_ms": lease.end_ms,
            "start": iso(lease.start_ms), "end": iso(lease.end_ms), "price_fen_per_du": lease.price_fen_per_du,
            "cost_fen": lease.cost_fen, "posting_key": lease.posting_key, "resold_devices": lease.resold_devices,
            "resale_offers": list(listed), "devices_in_use": reservation_jobs(session).get(lease.id, 0),
            "phase": phase, "created_at": iso(lease.created_ms)}


def _offer_for_sale(session: Session, offer_id: int, now_ms: int) -> OfferRecord:
    found = offer_records(session, kinds=("spot", "reserved", "resale"), ids=[offer_id], open_only=False)
    if not found:
        raise NotFound(f"no offer {offer_id}")
    rec = found[0]
    if rec.row.kind == "spot":
        raise Invalid(f"offer {offer_id} is open spot capacity, sold in the spot auction and on demand; "
                      "reserve from a reserved or resale offer")
    if rec.row.state != "open":
        raise Conflict(f"offer {offer_id} is {rec.row.state}")
    return rec


def record_block(session: Session, *, rec: OfferRecord, buyer: Tenant, block: Reservation, price_fen_per_du: int,
                 bid_id: int | None, now_ms: int) -> MarketLease:
    """Store a bought block and pay for it (402, nothing stored, when the buyer's wallet cannot)."""
    cost = whole_fen(replace(block, price_fen_per_du=price_fen_per_du).cost_fen)
    lease = MarketLease(kind="reserved", tenant_id=buyer.id, offer_id=rec.row.id, bid_id=bid_id, job_id=None,
                        attempt=None, site_id=rec.site.id, model=rec.row.model, devices=block.devices,
                        start_ms=block.start_ms, end_ms=block.end_ms, limit_fen_per_du=None,
                        price_fen_per_du=price_fen_per_du, cost_fen=cost, resold_devices=0, state="held",
                        reason="", created_ms=now_ms, updated_ms=now_ms)
    session.add(lease)
    session.flush()
    seller = (core_billing.wallet(rec.reseller) if rec.row.kind == "resale" and rec.reseller is not None
              else core_billing.receivable(rec.provider))
    posting = pay_for_block(session=session, buyer_id=buyer.id, seller=seller, amount_fen=cost,
                            key=f"reservation:{lease.id}", now_ms=now_ms,
                            memo=f"reserved block {lease.id}: {block.devices} x {rec.row.model} at {rec.site.name} "
                                 f"[{block.start_ms}, {block.end_ms}) ms at {price_fen_per_du} fen/du")
    lease.posting_key = posting.key if posting is not None else None
    if rec.row.kind == "resale" and rec.row.reservation_id is not None:
        _count_resold(session, rec.row.reservation_id)
    return lease


def _count_resold(session: Session, reservation_id: int) -> None:
    """Keep a block's `resold_devices` at the most of its devices sold on at any one time."""
    source = session.get(MarketLease, reservation_id)
    if source is None or source.end_ms is None:
        return
    sold = session.execute(select(MarketLease.devices, MarketLease.start_ms, MarketLease.end_ms)
                           .join(MarketOffer, MarketOffer.id == MarketLease.offer_id)
                           .where(MarketOffer.kind == "resale", MarketOffer.reservation_id == reservation_id,
                                  MarketLease.kind == "reserved")).all()
    source.resold_devices = peak_devices(((d, s, e or s) for d, s, e in sold), source.start_ms, source.end_ms)


def buy(*, session: Session, principal: Principal, catalog: Catalog, offer_id: int, devices: int, start_ms: int,
        end_ms: int, key: str | None, now_ms: int) -> Replay:
    """A tenant buys `devices` devices of a reserved or resale offer over [start_ms, end_ms) (epoch ms)."""
    if principal.role == "provider":
        raise Forbidden("providers do not buy reserved blocks; a tenant's user does")
    lock_market(session)
    buyer = tenant_for(session, principal, None, lock=True)
    body = {"tenant": buyer.name, "offer_id": offer_id, "devices": devices, "start_ms": start_ms, "end_ms": end_ms}

    def run() -> dict[str, Any]:
        if isinstance(devices, bool) or not isinstance(devices, int) or not 0 < devices <= MAX_DEVICES:
            raise Invalid(f"devices must be a whole number from 1 to {MAX_DEVICES}, got {devices!r}")
        rec = _offer_for_sale(session, offer_id, now_ms)
        if rec.row.kind == "resale" and rec.row.reseller_tenant_id == buyer.id:
            raise Invalid(f"offer {offer_id} is your own resale; withdraw it instead (DELETE /v1/market/offers/"
                          f"{offer_id})")
        try:
            block = reserve(rec.core(), blocks_on(session, rec, catalog), reservation_id="new", tenant=buyer.name,
                            devices=devices, start_ms=start_ms, end_ms=end_ms, at_ms=now_ms, catalog=catalog)
        except OrderError as exc:
            raise order_error(exc) from exc
        lease = record_block(session, rec=rec, buyer=buyer, block=block, price_fen_per_du=block.price_fen_per_du,
                             bid_id=None, now_ms=now_ms)
        return {**reservation_view(session, lease, now_ms), "wallet": wallet_view(session, buyer)}

    return once(session=session, user_id=principal.user_id, action="reservation", key=key, body=body, now_ms=now_ms,
                run=run)


def list_reservations(*, session: Session, principal: Principal, now_ms: int, tenant: str | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
    """A tenant's blocks; a provider's users see the blocks bought from its offers; operators all."""
    query = select(MarketLease).where(MarketLease.kind == "reserved").order_by(MarketLease.id.desc())
    if principal.role == "provider":
        query = query.join(MarketOffer, MarketOffer.id == MarketLease.offer_id).where(
            MarketOffer.provider_id == principal.provider_id, MarketOffer.kind == "reserved")
    elif tenant is not None or not principal.is_operator:
        query = query.where(MarketLease.tenant_id == tenant_for(session, principal, tenant).id)
    rows = session.scalars(query.limit(max(1, min(limit, MAX_LIST)))).all()
    return [reservation_view(session, lease, now_ms) for lease in rows]


def get_reservation(*, session: Session, principal: Principal, reservation_id: int) -> MarketLease:
    lease = session.get(MarketLease, reservation_id)
    if lease is None or lease.kind != "reserved" or not principal.can_see_tenant(lease.tenant_id):
        raise NotFound(f"no reservation {reservation_id}")
    return lease


def _resales_of(session: Session, lease: MarketLease) -> list[Offer]:
    """Resale offers already made from this block, with the devices they still take from it."""
    out = []
    for rec in offer_records(session, kinds=("resale",), open_only=False):
        if rec.row.reservation_id != lease.id:
            continue
        if rec.row.state == "open":
            out.append(rec.core())
            continue
        sold = session.scalars(select(MarketLease).where(MarketLease.offer_id == rec.row.id,
                                                         MarketLease.kind == "reserved")).all()
        for block in sold:  # a withdrawn resale keeps what it sold
            out.append(replace(rec.core(), id=f"{rec.row.id}/{block.id}", devices=block.devices,
                               window_start_ms=block.start_ms, window_end_ms=block.end_ms))
    return out


def resell_block(*, session: Session, principal: Principal, catalog: Catalog, reservation_id: int, devices: int,
                 from_ms: int, floor_fen_per_du: int, now_ms: int) -> dict[str, Any]:
    """List `devices` unused devices of a block from `from_ms` to its end as a resale offer."""
    lock_market(session)
    lease = get_reservation(session=session, principal=principal, reservation_id=reservation_id)
    if principal.role != "tenant" and not principal.is_operator:
        raise Forbidden("only the block's tenant resells it")
    source = offer_records(session, kinds=("reserved", "resale"), ids=[lease.offer_id], open_only=False)
    if not source:
        raise NotFound(f"the offer of reservation {reservation_id} is gone")
    tenant = session.get(Tenant, lease.tenant_id)
    assert tenant is not None
    try:
        offer = resell(core_reservation(lease, tenant.name, source[0].site.region, catalog), source[0].core(),
                       _resales_of(session, lease), offer_id="new", devices=devices, from_ms=from_ms,
                       floor_fen_per_du=floor_fen_per_du, at_ms=now_ms,
                       devices_in_use=reservation_jobs(session).get(lease.id, 0))
    except OrderError as exc:
        raise order_error(exc) from exc
    row = MarketOffer(provider_id=source[0].row.provider_id, site_id=lease.site_id, model=lease.model,
                      device_memory_gb=source[0].row.device_memory_gb, devices=offer.devices,
                      floor_fen_per_du=offer.floor_fen_per_du, kind="resale", window_start_ms=offer.window_start_ms,
                      window_end_ms=offer.window_end_ms, interruptible=False, reseller_tenant_id=lease.tenant_id,
                      reservation_id=lease.id, state="open", created_by=principal.user_id, created_ms=now_ms,
                      updated_ms=now_ms)
    session.add(row)
    session.flush()
    (rec,) = offer_records(session, kinds=("resale",), ids=[row.id])
    return offer_view(session, rec, PostedPriceBook(session), now_ms)
