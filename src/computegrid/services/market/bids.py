"""Bids. An interruptible job is a spot bid: its resources are the constraints and its
`max_price_fen_per_du` the limit, or, without one, the lowest posted on-demand price among the open
offers it could use (a spot buyer never pays more than buying on demand). A tenant may set or change a
job's limit (`job_id` + `limit_fen_per_du`), and bids explicitly for reserved blocks in a future window.

A spot bid below the floor of every class it could use, or a reserved bid below the floor of every
reserved offer it could use, is refused with the floor in the message, and nothing is stored.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import TERMINAL_STATES, JobState, parse_job_spec
from computegrid.core.market import (
    Bid,
    OrderError,
    check_bid,
    check_spot_bid_floor,
    class_floors,
    cost_fen,
    du_per_device_hour,
    parse_models,
)
from computegrid.core.placement.base import RttTable
from computegrid.services import jobs as job_service
from computegrid.services.billing.parties import tenant_for
from computegrid.services.errors import Conflict, Forbidden, Invalid, NotFound
from computegrid.services.market.common import (
    MAX_DEVICES,
    JobNeed,
    OfferRecord,
    PostedPriceBook,
    dumps_list,
    job_need,
    loads_set,
    offer_records,
    order_error,
)
from computegrid.services.market.money import ensure_can_pay, whole_fen
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Job, Tenant
from computegrid.store.models_market import MarketBid, MarketLease

STATES = ("open", "leased", "filled", "cancelled", "closed", "refused")
MAX_LIST = 1000


def bid_view(row: MarketBid, tenant: str) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "tenant": tenant, "job_id": row.job_id, "devices": row.devices,
            "limit_fen_per_du": row.limit_fen_per_du, "models": sorted(loads_set(row.models)),
            "min_device_memory_gb": str(Fraction(row.min_device_memory_gb)), "regions": sorted(loads_set(row.regions)),
            "tier": row.tier, "window_start_ms": row.window_start_ms, "window_end_ms": row.window_end_ms,
            "state": row.state, "state_reason": row.state_reason, "lease_id": row.lease_id,
            "created_at": iso(row.created_ms), "updated_at": iso(row.updated_ms)}


def core_bid(row: MarketBid, tenant: str, limit: int) -> Bid:
    return Bid(id=str(row.id), tenant=tenant, devices=row.devices, limit_fen_per_du=limit,
               models=loads_set(row.models), min_device_memory_gb=Fraction(row.min_device_memory_gb),
               regions=loads_set(row.regions), tier=row.tier, kind=row.kind,  # type: ignore[arg-type]
               window_start_ms=row.window_start_ms, window_end_ms=row.window_end_ms)


def job_bid_limit(row: MarketBid, accepted: list[OfferRecord], prices: PostedPriceBook, at_ms: int) -> int | None:
    """The bid's limit in fen/du: its own, else the lowest posted on-demand price of the offers it accepts."""
    if row.limit_fen_per_du is not None:
        return row.limit_fen_per_du
    posted = [p for rec in accepted
              if (p := prices.price(rec.row.provider_id, rec.row.model, rec.site.tier, at_ms)) is not None]
    return min(posted) if posted else None


def ensure_job_bid(session: Session, job: Job, need: JobNeed, now_ms: int) -> MarketBid:
    """The spot bid of an interruptible job (made on its first round, with the spec's limit)."""
    row = session.scalar(select(MarketBid).where(MarketBid.job_id == job.id))
    if row is None:
        row = MarketBid(tenant_id=job.tenant_id, user_id=job.user_id, job_id=job.id, kind="spot",
                        devices=need.devices, limit_fen_per_du=need.limit_fen_per_du, models=dumps_list(need.models),
                        min_device_memory_gb=str(need.min_device_memory_gb), regions="[]", tier=need.tier,
                        state="open", state_reason="", created_ms=now_ms, updated_ms=now_ms)
        session.add(row)
        session.flush()
    return row


def _spot_bid_for_job(session: Session, principal: Principal, catalog: Catalog, rtt: RttTable, job_id: int,
                      limit: int, now_ms: int) -> MarketBid:
    job = job_service.get_job(session=session, principal=principal, job_id=job_id)
    spec = parse_job_spec(json.loads(job.spec), catalog)
    need = job_need(spec)
    if need is None:
        raise Invalid(f"job {job_id} asks for no accelerators; the spot market sells devices")
    if not spec.interruptible:
        raise Invalid(f"job {job_id} is not interruptible; only interruptible jobs bid for spot capacity "
                      "(resubmit it with interruptible: true)")
    if spec.reservation is not None:
        raise Invalid(f"job {job_id} runs on reservation {spec.reservation}, not on the spot market")
    if JobState(job.state) in TERMINAL_STATES:
        raise Conflict(f"job {job_id} already ended ({job.state})")
    tenant = session.get(Tenant, job.tenant_id)
    assert tenant is not None
    accepted = [rec for rec in offer_records(session, kinds=("spot",), now_ms=now_ms) if need.accepts(rec.core(), rtt)]
    try:
        bid = Bid(id=f"job-{job_id}", tenant=tenant.name, devices=need.devices, limit_fen_per_du=limit,
                  models=need.models, min_device_memory_gb=need.min_device_memory_gb, tier=need.tier)
        check_bid(bid, catalog)
        check_spot_bid_floor(bid, class_floors(rec.core() for rec in accepted))
    except OrderError as exc:
        raise order_error(exc) from exc
    row = ensure_job_bid(session, job, need, now_ms)
    row.limit_fen_per_du = limit
    row.updated_ms = now_ms
    if row.lease_id is not None:  # a raised (or lowered) limit counts for the lease it holds from the next round
        lease = session.get(MarketLease, row.lease_id)
        if lease is not None and lease.state in ("allocated", "active"):
            lease.limit_fen_per_du = limit
    return row


def _reserved_floor_check(bid: Bid, accepted: list[OfferRecord]) -> None:
    floors = sorted((rec.row.floor_fen_per_du, rec.row.id) for rec in accepted)
    if floors and floors[0][0] > bid.limit_fen_per_du:
        floor, offer_id = floors[0]
        raise Invalid(f"bid {bid.limit_fen_per_du} fen/du is below the floor {floor} fen/du of every reserved "
                      f"offer it accepts (lowest: offer {offer_id})")


def _reserved_bid(session: Session, principal: Principal, catalog: Catalog, *, devices: int | None, limit: int,
                  models: str | list[str] | None, min_device_memory_gb: Fraction | None, regions: list[str] | None,
                  tier: str | None, window_start_ms: int | None, window_end_ms: int | None,
                  now_ms: int) -> MarketBid:
    if principal.role == "provider":
        raise Forbidden("providers do not bid; a tenant's user does")
    tenant = tenant_for(session, principal, None)
    if not isinstance(devices, int) or isinstance(devices, bool) or not 0 < devices <= MAX_DEVICES:
        raise Invalid(f"devices must be a whole number from 1 to {MAX_DEVICES}, got {devices!r}")
    if window_start_ms is not None and window_start_ms <= now_ms:
        raise Invalid(f"a reserved bid is for a future window; it starts at {window_start_ms} ms, not after now "
                      f"({now_ms} ms)")
    expression = "|".join(models) if isinstance(models, list) else (models or "")
    try:
        bid = Bid(id="new", tenant=tenant.name, devices=devices, limit_fen_per_du=limit,
                  models=parse_models(expression, catalog), min_device_memory_gb=min_device_memory_gb or Fraction(0),
                  regions=frozenset(regions or ()), tier=tier, kind="reserved", window_start_ms=window_start_ms,
                  window_end_ms=window_end_ms)
        check_bid(bid, catalog)
    except OrderError as exc:
        raise order_error(exc) from exc
    accepted = [rec for rec in offer_records(session, kinds=("reserved", "resale"), now_ms=now_ms)
                if bid.accepts_offer_statically(rec.core())]
    _reserved_floor_check(bid, accepted)
    assert window_start_ms is not None and window_end_ms is not None
    dearest = Fraction(0)
    for rec in accepted:
        try:
            rate = du_per_device_hour(rec.row.model, catalog)
        except OrderError:
            continue
        dearest = max(dearest, cost_fen(devices, rate, window_end_ms - window_start_ms, limit))
    ensure_can_pay(session, tenant, whole_fen(dearest))  # at its limit on the dearest offer it could get
    row = MarketBid(tenant_id=tenant.id, user_id=principal.user_id, job_id=None, kind="reserved", devices=devices,
                    limit_fen_per_du=limit, models=dumps_list(bid.models),
                    min_device_memory_gb=str(bid.min_device_memory_gb), regions=dumps_list(bid.regions), tier=tier,
                    window_start_ms=window_start_ms, window_end_ms=window_end_ms, state="open",
                    state_reason="waits for the next market round", created_ms=now_ms, updated_ms=now_ms)
    session.add(row)
    session.flush()
    return row


def post_bid(*, session: Session, principal: Principal, catalog: Catalog, rtt: RttTable, now_ms: int,
             limit_fen_per_du: int, job_id: int | None = None, kind: str | None = None, devices: int | None = None,
             models: str | list[str] | None = None, min_device_memory_gb: Fraction | None = None,
             regions: list[str] | None = None, tier: str | None = None, window_start_ms: int | None = None,
             window_end_ms: int | None = None) -> dict[str, Any]:
    """A spot bid for an interruptible job (`job_id`), or a reserved bid with its own constraints."""
    if isinstance(limit_fen_per_du, bool) or not isinstance(limit_fen_per_du, int) or limit_fen_per_du < 0:
        raise Invalid(f"limit_fen_per_du must be a whole number of fen per du >= 0, got {limit_fen_per_du!r}")
    if job_id is not None:
        given = [name for name, value in (("kind", kind if kind != "spot" else None), ("devices", devices),
                                          ("models", models), ("min_device_memory_gb", min_device_memory_gb),
                                          ("regions", regions), ("tier", tier), ("window_start_ms", window_start_ms),
                                          ("window_end_ms", window_end_ms)) if value is not None]
        if given:
            raise Invalid(f"a job's spot bid takes its devices and constraints from the job; leave out "
                          f"{', '.join(given)}")
        row = _spot_bid_for_job(session, principal, catalog, rtt, job_id, limit_fen_per_du, now_ms)
    elif kind == "reserved":
        row = _reserved_bid(session, principal, catalog, devices=devices, limit=limit_fen_per_du, models=models,
                            min_device_memory_gb=min_device_memory_gb, regions=regions, tier=tier,
                            window_start_ms=window_start_ms, window_end_ms=window_end_ms, now_ms=now_ms)
    else:
        raise Invalid("a spot bid is made by an interruptible job: give its job_id (and a limit); "
                      "a bid for a reserved block says kind: reserved, with a window")
    tenant = session.get(Tenant, row.tenant_id)
    assert tenant is not None
    return bid_view(row, tenant.name)


def list_bids(*, session: Session, principal: Principal, tenant: str | None = None, state: str | None = None,
              kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """A tenant's own bids (jobs' and reserved); operators see all, or one tenant's."""
    if principal.role == "provider":
        raise Forbidden("bids are tenants'; providers see their offers and what is held on them")
    if state is not None and state not in STATES:
        raise Invalid(f"state must be one of {', '.join(STATES)}, got {state!r}")
    if kind is not None and kind not in ("spot", "reserved"):
        raise Invalid(f"kind must be spot or reserved, got {kind!r}")
    query = (select(MarketBid, Tenant.name).join(Tenant, Tenant.id == MarketBid.tenant_id)
             .order_by(MarketBid.id.desc()).limit(max(1, min(limit, MAX_LIST))))
    if tenant is not None or not principal.is_operator:
        query = query.where(MarketBid.tenant_id == tenant_for(session, principal, tenant).id)
    if state is not None:
        query = query.where(MarketBid.state == state)
    if kind is not None:
        query = query.where(MarketBid.kind == kind)
    return [bid_view(row, name) for row, name in session.execute(query).all()]


def cancel_bid(*, session: Session, principal: Principal, bid_id: int, now_ms: int) -> dict[str, Any]:
    """Withdraw an open reserved bid (a job's bid ends with the job: cancel the job)."""
    row = session.get(MarketBid, bid_id, with_for_update=True)
    if row is None or not principal.can_see_tenant(row.tenant_id):
        raise NotFound(f"no bid {bid_id}")
    if row.job_id is not None:
        raise Invalid(f"bid {bid_id} is job {row.job_id}'s; it ends with the job (cancel the job)")
    if row.state != "open":
        raise Conflict(f"bid {bid_id} is already {row.state}")
    row.state, row.state_reason, row.updated_ms = "cancelled", f"cancelled by {principal.name}", now_ms
    tenant = session.get(Tenant, row.tenant_id)
    assert tenant is not None
    return bid_view(row, tenant.name)
