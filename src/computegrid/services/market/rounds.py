"""A market round, in one transaction under the market lock:

1. settle: leases whose job attempt has ended are closed (a requeued job's bid takes part again);
   jobs still running on a reserved block whose window has ended are preempted (notice, requeue);
2. the spot round (services/market/spot.py): on-demand buyers, new bids, outbidding, preemptions;
3. reserved bids clear against reserved and resale offers (services/market/clearing.py);
4. the spot index gets a point for every class whose price changed; the round is recorded when it
   decided anything (an idle round leaves no row).

The scheduler runs a round every `market_interval_s`; an operator can run one now (POST /v1/market/rounds).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import ACTIVE_STATES, TERMINAL_STATES, JobState
from computegrid.core.placement.base import RttTable
from computegrid.services import jobs as job_service
from computegrid.services.market.clearing import clear_reserved_bids
from computegrid.services.market.common import DEFAULT_NOTICE_MS, lock_market
from computegrid.services.market.report import RoundReport
from computegrid.services.market.spot import LIVE, SpotRoundBuilder, reopen_bid
from computegrid.services.principal import Principal
from computegrid.services.views import iso
from computegrid.store.models import Job
from computegrid.store.models_market import MarketBid, MarketLease, MarketOffer, MarketRound, SpotIndexPoint

_PREEMPTABLE = (JobState.PLACED.value, JobState.STARTING.value, JobState.RUNNING.value)
PLACEMENT_GRACE_MS = 120_000  # an allocated spot lease whose job the scheduler has not placed by then is released


def _market_is_idle(session: Session, now_ms: int) -> bool:
    """Nothing to trade or watch: no open offer, no live lease, no block in force, no open reserved bid."""
    busy = session.scalar(select(or_(
        exists().where(MarketOffer.state == "open"),
        exists().where(MarketLease.state.in_(LIVE)),
        exists().where(MarketLease.state == "held"),
        exists().where(MarketBid.state == "open", MarketBid.kind == "reserved"))))
    return not busy


def _end(report: RoundReport, lease: MarketLease, reason: str, now_ms: int) -> None:
    lease.state, lease.end_ms, lease.reason, lease.updated_ms = "ended", now_ms, reason, now_ms
    report.ended.append({"lease_id": lease.id, "job_id": lease.job_id, "reason": reason})


def settle(session: Session, report: RoundReport, *, notice_ms: int) -> None:
    """Close leases whose job has moved on; stop jobs on reserved blocks whose window has ended."""
    now = report.at_ms
    rows = session.execute(select(MarketLease, Job).join(Job, Job.id == MarketLease.job_id)
                           .where(MarketLease.kind.in_(("spot", "on-demand")), MarketLease.state.in_(LIVE))
                           .order_by(MarketLease.id)).all()
    for lease, job in rows:
        state = JobState(job.state)
        if lease.kind == "spot" and lease.state == "allocated" and state == JobState.PENDING \
                and lease.start_ms + PLACEMENT_GRACE_MS < now:
            _end(report, lease, f"not placed within {PLACEMENT_GRACE_MS // 1000} s of its start; released", now)
            reopen_bid(session, lease, "its last allocation could not be placed in time; bids again", now)
            continue
        if lease.kind == "on-demand" or lease.state == "allocated":
            if state != JobState.PENDING:
                _end(report, lease, f"its job is {job.state}", now)
                if state in TERMINAL_STATES and lease.bid_id is not None:
                    _close_bid(session, lease.bid_id, f"job {job.id} {job.state}", now)
            continue
        if job.attempt == lease.attempt and state in ACTIVE_STATES:
            continue
        _end(report, lease, f"attempt {lease.attempt} ended ({'requeued' if state == JobState.PENDING else job.state})",
             now)
        if state == JobState.PENDING:
            reopen_bid(session, lease, f"requeued after attempt {lease.attempt}; bids again in the next round", now)
        elif lease.bid_id is not None:
            _close_bid(session, lease.bid_id, f"job {job.id} {job.state}", now)
    for bid, job in session.execute(select(MarketBid, Job).join(Job, Job.id == MarketBid.job_id)
                                    .where(MarketBid.state == "open",
                                           Job.state.in_([s.value for s in TERMINAL_STATES]))).all():
        _close_bid(session, bid.id, f"job {job.id} {job.state}", now)
    blocks = {lease.id: lease for lease in session.scalars(
        select(MarketLease).where(MarketLease.kind == "reserved", MarketLease.state == "held",
                                  MarketLease.end_ms <= now))}
    for lease in blocks.values():
        lease.state, lease.updated_ms = "ended", now
    if not blocks:
        return
    for job in session.scalars(select(Job).where(Job.state.in_(_PREEMPTABLE), Job.price_kind == "reserved")):
        lease_id = json.loads(job.spec).get("reservation")
        if lease_id is not None and int(lease_id) in blocks:
            reason = f"reservation {lease_id} ended at {iso(blocks[int(lease_id)].end_ms)}"
            job_service.preempt(session, job, reason, now, notice_ms)
            report.preemptions.append({"lease_id": int(lease_id), "job_id": job.id, "reason": "reservation-ended",
                                       "by": None, "preempt_at_ms": now + notice_ms})


def _close_bid(session: Session, bid_id: int, reason: str, now_ms: int) -> None:
    bid = session.get(MarketBid, bid_id)
    if bid is not None and bid.state in ("open", "leased"):
        bid.state, bid.lease_id, bid.state_reason, bid.updated_ms = "closed", None, reason, now_ms


def record_index(session: Session, report: RoundReport) -> list[SpotIndexPoint]:
    """A point for each class whose spot price changed (a price holds until the class's next point)."""
    points = []
    for p in report.prices:
        if p.segment != "spot":
            continue
        last = session.scalar(select(SpotIndexPoint).where(SpotIndexPoint.model == p.market_class.model,
                                                           SpotIndexPoint.region == p.market_class.region)
                              .order_by(SpotIndexPoint.at_ms.desc()).limit(1))
        if last is not None and (last.at_ms >= report.at_ms or last.price_fen_per_du == p.price_fen_per_du):
            continue
        report.index_points.append({"model": p.market_class.model, "region": p.market_class.region,
                                    "at_ms": report.at_ms, "price_fen_per_du": p.price_fen_per_du})
        points.append(SpotIndexPoint(model=p.market_class.model, region=p.market_class.region, at_ms=report.at_ms,
                                     price_fen_per_du=p.price_fen_per_du, devices=p.devices))
    session.add_all(points)
    return points


def run_round(session: Session, *, now_ms: int, catalog: Catalog, notice_ms: int = DEFAULT_NOTICE_MS,
              rtt: RttTable | None = None, force: bool = False) -> dict[str, Any] | None:
    """Run one market round at `now_ms`; the report, or None when the market is idle (unless `force`)."""
    lock_market(session)
    if not force and _market_is_idle(session, now_ms):
        return None
    report = RoundReport(now_ms)
    settle(session, report, notice_ms=notice_ms)
    SpotRoundBuilder(session, report, catalog=catalog, notice_ms=notice_ms, rtt=rtt or {}).run()
    clear_reserved_bids(session, report, catalog=catalog)
    points = record_index(session, report)
    if force or report.decided:
        row = MarketRound(at_ms=now_ms, summary="{}", created_ms=now_ms)
        session.add(row)
        session.flush()
        report.round_id = row.id
        for point in points:
            point.round_id = row.id
        row.summary = json.dumps(report.view(), sort_keys=True)
    session.flush()
    return report.view()


def run_round_now(*, session: Session, principal: Principal, now_ms: int, catalog: Catalog,
                  notice_ms: int = DEFAULT_NOTICE_MS, rtt: RttTable | None = None) -> dict[str, Any]:
    """Operator: run a market round now (the scheduler runs them on its own every few seconds)."""
    principal.require_operator()
    found = run_round(session, now_ms=now_ms, catalog=catalog, notice_ms=notice_ms, rtt=rtt, force=True)
    assert found is not None
    return found


def list_rounds(*, session: Session, limit: int = 20) -> list[dict[str, Any]]:
    rows = session.scalars(select(MarketRound).order_by(MarketRound.id.desc()).limit(max(1, min(limit, 200))))
    return [json.loads(r.summary) for r in rows]
