"""The reserved part of a market round: open reserved bids clear against reserved and resale offers.

Core `clear` matches them (most surplus, one price per class in the reserved segment); each match is
then bought like a direct purchase (`reserved.record_block`), at the class's clearing price rather
than the offer's floor, and paid from the bidder's wallet. A bidder whose wallet cannot pay any more is
refused (its bid says why) and nothing is bought for it; the round goes on for the others.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.market import Bid, Offer, OrderError, clear, free_devices, reserve
from computegrid.services.billing.errors import PaymentRequired
from computegrid.services.billing.parties import lock_tenant
from computegrid.services.market.bids import core_bid
from computegrid.services.market.common import offer_records
from computegrid.services.market.money import ensure_can_pay, whole_fen
from computegrid.services.market.report import RoundReport
from computegrid.services.market.reserved import blocks_on, record_block
from computegrid.services.views import iso
from computegrid.store.models import Tenant
from computegrid.store.models_market import MarketBid


def clear_reserved_bids(session: Session, report: RoundReport, *, catalog: Catalog) -> None:
    now = report.at_ms
    rows = list(session.scalars(select(MarketBid).where(MarketBid.kind == "reserved", MarketBid.state == "open")
                                .order_by(MarketBid.id)))
    if not rows:
        return
    live = []
    for row in rows:
        if row.window_start_ms is None or row.window_start_ms <= now:
            row.state, row.updated_ms = "closed", now
            row.state_reason = f"its window started at {iso(row.window_start_ms)} before a block was found"
            report.reserved.append({"bid_id": row.id, "outcome": "closed", "reason": row.state_reason})
        else:
            live.append(row)
    recs = {rec.row.id: rec for rec in offer_records(session, kinds=("reserved", "resale"), now_ms=now)}
    # core matches an offer's devices once per round; an offer is shown once per window bid for, with what
    # is free over that window, so blocks in different windows sell in one round (`reserve` re-checks).
    windows = sorted({(r.window_start_ms, r.window_end_ms) for r in live
                      if r.window_start_ms is not None and r.window_end_ms is not None})
    offers: list[Offer] = []
    for rec in recs.values():
        blocks = blocks_on(session, rec, catalog)
        for start, end in windows:
            if not rec.core().covers(start, end):
                continue
            free = free_devices(rec.core(), blocks, start, end)
            if free > 0:
                offers.append(replace(rec.core(devices=free), id=f"{rec.row.id}@{start}-{end}",
                                      window_start_ms=start, window_end_ms=end))
    names = dict(session.execute(select(Tenant.id, Tenant.name)
                                 .where(Tenant.id.in_({r.tenant_id for r in live}))).all())
    bids: list[Bid] = [core_bid(r, names[r.tenant_id], r.limit_fen_per_du or 0) for r in live]
    if not bids or not offers:
        return
    try:
        result = clear(bids, offers, catalog, at_ms=now)
    except OrderError as exc:
        report.notes.append(f"reserved clearing refused its inputs: {exc}")
        return
    by_id = {str(r.id): r for r in live}
    for match in result.matches:
        row, rec = by_id[match.bid_id], recs[int(match.offer_id.split("@")[0])]
        assert row.window_start_ms is not None and row.window_end_ms is not None
        try:
            block = reserve(rec.core(), blocks_on(session, rec, catalog), reservation_id="new",
                            tenant=names[row.tenant_id], devices=row.devices, start_ms=row.window_start_ms,
                            end_ms=row.window_end_ms, at_ms=now, catalog=catalog)
        except OrderError as exc:
            row.state_reason = f"matched offer {rec.row.id} at {iso(now)}, but it could not be reserved: {exc}"
            continue
        buyer = lock_tenant(session, row.tenant_id)
        cost = whole_fen(replace(block, price_fen_per_du=match.price_fen_per_du).cost_fen)
        try:
            ensure_can_pay(session, buyer, cost)
        except PaymentRequired as exc:
            row.state, row.state_reason, row.updated_ms = "refused", f"matched, but not paid: {exc.message}", now
            report.reserved.append({"bid_id": row.id, "outcome": "refused", "reason": row.state_reason})
            continue
        lease = record_block(session, rec=rec, buyer=buyer, block=block, price_fen_per_du=match.price_fen_per_du,
                             bid_id=row.id, now_ms=now)
        row.state, row.lease_id, row.updated_ms = "filled", lease.id, now
        row.state_reason = (f"reservation {lease.id}: {row.devices} x {rec.row.model} at {rec.site.name} at "
                            f"{match.price_fen_per_du} fen/du, {lease.cost_fen} fen")
        report.reserved.append({"bid_id": row.id, "outcome": "filled", "reservation_id": lease.id,
                                "offer_id": rec.row.id, "price_fen_per_du": match.price_fen_per_du,
                                "cost_fen": lease.cost_fen})
    for bid_id in result.unmatched_bids:
        by_id[bid_id].state_reason = f"not matched in the round at {iso(now)}; bids again in the next"
