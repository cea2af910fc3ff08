"""The market: offers, bids, rounds, the spot index, quotes, and reserved blocks (see docs/market.md).

Register with `app.include_router(market.router)`. Every write is one transaction: a refusal (4xx
with the reason) stores nothing and moves no money.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.routes.money_common import IdempotencyKey, answer, writing
from computegrid.api.schemas_market import (
    BidCreate,
    OfferCreate,
    QuoteAsk,
    ResaleCreate,
    ReservationBuy,
    RoundRun,
    exact_gb,
    id_path,
    ms_query,
    text_query,
)
from computegrid.services.errors import Invalid
from computegrid.services.market import bids, offers, quote, reserved, rounds
from computegrid.services.market import index as spot_index
from computegrid.services.regions import load_rtt

router = APIRouter(tags=["market"])


@router.post("/v1/market/offers", status_code=201)
def create_offer(body: OfferCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """A provider offers devices of one model at one of its sites: spot (open now) or reserved (a window)."""
    with writing(state) as session:
        return offers.create_offer(
            session=session, principal=principal, catalog=state.catalog, site=body.site, model=body.model,
            devices=body.devices, floor_fen_per_du=body.floor_fen_per_du, kind=body.kind,
            window_start_ms=body.window_start_ms, window_end_ms=body.window_end_ms, interruptible=body.interruptible,
            device_memory_gb=exact_gb(body.device_memory_gb, "device_memory_gb"), now_ms=state.clock.now_ms())


@router.get("/v1/market/offers")
def list_offers(principal: CurrentPrincipal, state: StateDep, kind: str | None = text_query("spot, reserved, resale"),
                offer_state: str | None = Query(default="open", alias="state", max_length=16),
                site: str | None = text_query("only this site"), model: str | None = text_query("only this model"),
                region: str | None = text_query("only this region"),
                provider: str | None = text_query("only this provider"),
                limit: int = Query(default=100, ge=1, le=1000)) -> list[dict[str, Any]]:
    """Offers anyone may see (open ones by default; `state=cancelled` for withdrawn ones)."""
    with state.db.reading() as session:
        return offers.list_offers(session=session, now_ms=state.clock.now_ms(), kind=kind, state=offer_state,
                                  site=site, model=model, region=region, provider=provider, catalog=state.catalog,
                                  limit=limit)


@router.get("/v1/market/offers/{offer_id}")
def get_offer(principal: CurrentPrincipal, state: StateDep, offer_id: int = id_path("offer")) -> dict[str, Any]:
    with state.db.reading() as session:
        return offers.get_offer(session=session, offer_id=offer_id, now_ms=state.clock.now_ms())


@router.delete("/v1/market/offers/{offer_id}")
def cancel_offer(principal: CurrentPrincipal, state: StateDep, offer_id: int = id_path("offer")) -> dict[str, Any]:
    """Withdraw an open offer (spot leases on it are preempted, with notice, at the next round)."""
    with writing(state) as session:
        return offers.cancel_offer(session=session, principal=principal, offer_id=offer_id,
                                   now_ms=state.clock.now_ms())


@router.post("/v1/market/bids", status_code=201)
def create_bid(body: BidCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Set an interruptible job's spot bid (`job_id`, `limit_fen_per_du`), or bid for a reserved block."""
    with writing(state) as session:
        return bids.post_bid(session=session, principal=principal, catalog=state.catalog, rtt=load_rtt(session),
                             now_ms=state.clock.now_ms(), limit_fen_per_du=body.limit_fen_per_du, job_id=body.job_id,
                             kind=body.kind, devices=body.devices, models=body.models,
                             min_device_memory_gb=exact_gb(body.min_device_memory_gb), regions=body.regions,
                             tier=body.tier, window_start_ms=body.window_start_ms, window_end_ms=body.window_end_ms)


@router.get("/v1/market/bids")
def list_bids(principal: CurrentPrincipal, state: StateDep, tenant: str | None = text_query("operators: a tenant"),
              bid_state: str | None = Query(default=None, alias="state", max_length=16),
              kind: str | None = Query(default=None, max_length=16),
              limit: int = Query(default=100, ge=1, le=1000)) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return bids.list_bids(session=session, principal=principal, tenant=tenant, state=bid_state, kind=kind,
                              limit=limit)


@router.delete("/v1/market/bids/{bid_id}")
def cancel_bid(principal: CurrentPrincipal, state: StateDep, bid_id: int = id_path("bid")) -> dict[str, Any]:
    with writing(state) as session:
        return bids.cancel_bid(session=session, principal=principal, bid_id=bid_id, now_ms=state.clock.now_ms())


@router.post("/v1/market/rounds")
def run_round(principal: CurrentPrincipal, state: StateDep,
              body: RoundRun = Body(default_factory=RoundRun)) -> dict[str, Any]:
    """Operator: run a market round now and see what it decided."""
    with writing(state) as session:
        report = rounds.run_round_now(session=session, principal=principal, now_ms=state.clock.now_ms(),
                                      catalog=state.catalog, notice_ms=body.notice_ms)
    if state.scheduler_wake is not None:
        state.scheduler_wake.capacity()  # new leases and freed devices: place what can go now
    return report


@router.get("/v1/market/rounds")
def list_rounds(principal: CurrentPrincipal, state: StateDep,
                limit: int = Query(default=20, ge=1, le=200)) -> list[dict[str, Any]]:
    """Operator: the latest rounds that decided something, newest first."""
    principal.require_operator()
    with state.db.reading() as session:
        return rounds.list_rounds(session=session, limit=limit)


@router.get("/v1/market/spot-index")
def get_spot_index(principal: CurrentPrincipal, state: StateDep, model: str | None = text_query("a model"),
                   region: str | None = text_query("a region"),
                   since: int | None = ms_query("history from this time (the price then, and every change)"),
                   until: int | None = ms_query("history before this time")) -> list[dict[str, Any]]:
    """The spot price per class (model, region) and its history: a point each time the price changed."""
    with state.db.reading() as session:
        return spot_index.spot_index(session=session, catalog=state.catalog, model=model, region=region,
                                     since_ms=since, until_ms=until)


@router.post("/v1/market/quote")
def get_quote(body: QuoteAsk, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """What capacity for a job spec (or a request) would cost now: on demand, spot and reserved."""
    now = state.clock.now_ms()
    with state.db.reading() as session:
        if body.job is not None:
            given = [k for k in ("devices", "models", "min_device_memory_gb", "regions", "tier", "duration_ms")
                     if getattr(body, k) is not None]
            if given:
                raise Invalid(f"a job's quote takes its needs from the job spec; leave out {', '.join(given)}")
            return quote.quote_now(session=session, catalog=state.catalog, rtt=load_rtt(session), now_ms=now,
                                   job=body.job, start_ms=body.start_ms)
        if body.devices is None:
            raise Invalid("give a job spec (`job`) or the devices to quote (`devices`, with models, regions, ...)")
        request = quote.make_request(catalog=state.catalog, devices=body.devices, models=body.models,
                                     min_device_memory_gb=exact_gb(body.min_device_memory_gb), regions=body.regions,
                                     tier=body.tier, duration_ms=body.duration_ms or 3_600_000,
                                     start_ms=body.start_ms)
        return quote.quote_now(session=session, catalog=state.catalog, rtt=load_rtt(session), now_ms=now,
                               request=request)


@router.post("/v1/reservations", status_code=201)
def buy_reservation(body: ReservationBuy, principal: CurrentPrincipal, state: StateDep,
                    idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """A tenant buys devices x a future window from a reserved or resale offer, paid now from its wallet."""
    with writing(state) as session:
        return answer(reserved.buy(session=session, principal=principal, catalog=state.catalog,
                                   offer_id=body.offer_id, devices=body.devices, start_ms=body.start_ms,
                                   end_ms=body.end_ms, key=idempotency_key, now_ms=state.clock.now_ms()))


@router.get("/v1/reservations")
def list_reservations(principal: CurrentPrincipal, state: StateDep,
                      tenant: str | None = text_query("operators: a tenant"),
                      limit: int = Query(default=100, ge=1, le=1000)) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return reserved.list_reservations(session=session, principal=principal, now_ms=state.clock.now_ms(),
                                          tenant=tenant, limit=limit)


@router.get("/v1/reservations/{reservation_id}")
def get_reservation(principal: CurrentPrincipal, state: StateDep,
                    reservation_id: int = id_path("reservation")) -> dict[str, Any]:
    with state.db.reading() as session:
        lease = reserved.get_reservation(session=session, principal=principal, reservation_id=reservation_id)
        return reserved.reservation_view(session, lease, state.clock.now_ms())


@router.post("/v1/reservations/{reservation_id}/resell", status_code=201)
def resell(body: ResaleCreate, principal: CurrentPrincipal, state: StateDep,
           reservation_id: int = id_path("reservation")) -> dict[str, Any]:
    """List unused devices of a block, from `from_ms` (default now) to its end, as a resale offer."""
    now = state.clock.now_ms()
    with writing(state) as session:
        return reserved.resell_block(session=session, principal=principal, catalog=state.catalog,
                                     reservation_id=reservation_id, devices=body.devices,
                                     from_ms=now if body.from_ms is None else body.from_ms,
                                     floor_fen_per_du=body.floor_fen_per_du, now_ms=now)
