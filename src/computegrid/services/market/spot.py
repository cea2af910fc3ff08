"""The spot part of a market round: build core's inputs from the store, call `run_spot_round`, apply it.

Inputs:
- offers: open spot offers, each with the devices it can sell now: at most its devices, and no more
  than the devices its spot jobs hold plus the free devices of its model at its site (after reserved
  blocks in force are held back), shared among a site's offers in id order;
- leases: spot leases allocated or running (a lease whose job was told to stop is out already);
- bids: pending interruptible jobs that some open spot offer could serve (`bids.ensure_job_bid`);
- on-demand requests: a waiting on-demand job that spot jobs keep from an offer's devices (its
  devices are not free at that site now), and the requests granted before whose job is still waiting.

Applied: preemptions (services/jobs.preempt: SIGTERM now, stop by now + notice, requeue), new
spot leases at the class price (the scheduler places the job on the offer's site and model), on-demand
holds, and why unmatched bids wait.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import JobState, SpecError, parse_job_spec
from computegrid.core.market import Bid, OnDemandRequest, OrderError, Preemption, SpotLease, SpotRound, run_spot_round
from computegrid.core.placement import PlacementRequest
from computegrid.core.placement.base import RttTable
from computegrid.core.pool import PoolSnapshot
from computegrid.services import jobs as job_service
from computegrid.services.market.bids import ensure_job_bid, job_bid_limit
from computegrid.services.market.capacity import Withholding, free_devices, load_reservations, site_can_hold
from computegrid.services.market.common import JobNeed, OfferRecord, PostedPriceBook, job_need, offer_records
from computegrid.services.market.report import RoundReport
from computegrid.services.pool_state import load_pool
from computegrid.services.views import iso
from computegrid.store.models import Job, Tenant
from computegrid.store.models_market import MarketBid, MarketLease

MAX_PENDING = 1000  # pending jobs looked at per round, oldest first
LIVE = ("allocated", "active", "preempting")
_PREEMPTABLE = {JobState.PLACED.value, JobState.STARTING.value, JobState.RUNNING.value}


def capacities(recs: Sequence[OfferRecord], held: dict[int, int], pool: PoolSnapshot) -> dict[int, int]:
    """Devices each spot offer can sell now (see the module docstring)."""
    free_left: dict[tuple[str, str], int] = {}
    caps: dict[int, int] = {}
    for rec in recs:
        key = (rec.site.name, rec.row.model)
        if key not in free_left:
            free_left[key] = free_devices(pool, *key)
        holding = held.get(rec.row.id, 0)
        extra = min(max(0, rec.row.devices - holding), free_left[key])
        free_left[key] -= extra
        caps[rec.row.id] = min(rec.row.devices, holding + extra)
    return caps


def _reason(p: Preemption, classes: dict[str, str]) -> str:
    if p.reason == "on-demand":
        return f"preempted: an on-demand buyer (job {(p.by or '?').lstrip('J')}) takes the devices"
    if p.reason == "outbid":
        return f"preempted: outbid by a higher spot bid (bid {p.by})"
    if p.reason == "capacity":
        return "preempted: the provider withdrew or cut its spot offer"
    return f"preempted: the spot price of {classes.get(p.offer_id, 'its class')} rose above the bid's limit"


class SpotRoundBuilder:
    """One spot round over the store, inside the round's transaction."""

    def __init__(self, session: Session, report: RoundReport, *, catalog: Catalog, notice_ms: int,
                 rtt: RttTable) -> None:
        self.session = session
        self.report = report
        self.now = report.at_ms
        self.catalog = catalog
        self.notice_ms = notice_ms
        self.rtt = rtt
        self.prices = PostedPriceBook(session)
        self.tenants: dict[int, str] = {}

    def tenant(self, tenant_id: int) -> str:
        if tenant_id not in self.tenants:
            row = self.session.get(Tenant, tenant_id)
            self.tenants[tenant_id] = row.name if row is not None else str(tenant_id)
        return self.tenants[tenant_id]

    def run(self) -> None:
        recs = offer_records(self.session, kinds=("spot",), now_ms=self.now)
        leases = list(self.session.scalars(select(MarketLease).where(
            MarketLease.kind.in_(("spot", "on-demand")), MarketLease.state.in_(LIVE)).order_by(MarketLease.id)))
        if not recs and not leases:
            return
        pending = list(self.session.scalars(select(Job).where(Job.state == JobState.PENDING.value)
                                            .order_by(Job.id).limit(MAX_PENDING)))
        pool = load_pool(session=self.session)
        Withholding(pool).apply(load_reservations(self.session, self.now).withheld())
        held: dict[int, int] = defaultdict(int)
        for lease in leases:
            if lease.kind == "spot" and lease.state in ("active", "preempting"):
                held[lease.offer_id] += lease.devices
        caps = capacities(recs, held, pool)
        by_id = {rec.row.id: rec for rec in recs}
        offers = [rec.core(devices=caps[rec.row.id],
                           on_demand=self.prices.price(rec.row.provider_id, rec.row.model, rec.site.tier, self.now))
                  for rec in recs if caps[rec.row.id] > 0]
        spot_leases = [SpotLease(f"L{x.id}", str(x.bid_id), self.tenant(x.tenant_id), str(x.offer_id), x.devices,
                                 x.limit_fen_per_du or 0, x.start_ms)
                       for x in leases if x.kind == "spot" and x.state in ("allocated", "active")]
        held_requests = {x.job_id: x for x in leases if x.kind == "on-demand"}
        requests = [OnDemandRequest(f"J{x.job_id}", self.tenant(x.tenant_id), str(x.offer_id), x.devices)
                    for x in held_requests.values()]
        busy_offers = {x.offer_id for x in leases if x.kind == "spot" and x.state in ("allocated", "active")}
        bids: list[Bid] = []
        bid_rows: dict[str, tuple[MarketBid, Job]] = {}
        for job in pending:
            try:
                spec = parse_job_spec(json.loads(job.spec), self.catalog)
            except (SpecError, ValueError):
                continue
            need, req = job_need(spec), PlacementRequest.from_spec(spec)
            if need is None or need.reservation is not None or job.id in held_requests:
                continue
            if need.interruptible:
                found = self._job_bid(job, need, req, recs, pool)
                if found is not None:
                    bids.append(found[0])
                    bid_rows[found[0].id] = (found[1], job)
            elif "devices in use" in job.state_reason:  # the scheduler tried it, and busy devices kept it out
                request = self._on_demand_request(job, need, req, recs, busy_offers, pool)
                if request is not None:
                    requests.append(request)
        if not bids and not requests and not spot_leases:
            return
        try:
            result = run_spot_round(offers=offers, leases=spot_leases, bids=bids, on_demand=requests,
                                    catalog=self.catalog, at_ms=self.now, notice_ms=self.notice_ms)
        except OrderError as exc:  # stored orders were checked on the way in; say so rather than fail the loop
            self.report.notes.append(f"spot round refused its inputs: {exc}")
            return
        self._apply(result, {x.id: x for x in leases}, bid_rows, bids, held_requests, by_id)

    def _job_bid(self, job: Job, need: JobNeed, req: PlacementRequest, recs: Sequence[OfferRecord],
                 pool: PoolSnapshot) -> tuple[Bid, MarketBid] | None:
        accepted = [rec for rec in recs if need.accepts(rec.core(), self.rtt)]
        if not accepted:
            return None  # no spot offer could ever serve it: the scheduler places it like any job
        row = ensure_job_bid(self.session, job, need, self.now)
        if row.state != "open":
            return None
        accepted = [rec for rec in accepted if site_can_hold(pool, rec.site.name, rec.row.model, req)]
        if not accepted:
            row.state_reason = ("no site with a spot offer it could use has nodes that can hold it (devices, CPU "
                                "and memory per node)")
            return None
        limit = job_bid_limit(row, accepted, self.prices, self.now)
        if limit is None:
            row.state_reason = ("no price limit (max_price_fen_per_du) and no provider of the offers it could use "
                                "posts an on-demand price to bid up to; set max_price_fen_per_du")
            return None
        bid = Bid(id=str(row.id), tenant=self.tenant(job.tenant_id), devices=need.devices, limit_fen_per_du=limit,
                  models=need.models, min_device_memory_gb=need.min_device_memory_gb,
                  regions=need.regions({rec.site.region for rec in accepted}, self.rtt), tier=need.tier)
        return bid, row

    def _on_demand_request(self, job: Job, need: JobNeed, req: PlacementRequest, recs: Sequence[OfferRecord],
                           busy: set[int], pool: PoolSnapshot) -> OnDemandRequest | None:
        best: tuple[int, int, OfferRecord] | None = None
        for rec in recs:
            if rec.row.id not in busy or rec.row.devices < need.devices or not need.accepts(rec.core(), self.rtt):
                continue
            if not site_can_hold(pool, rec.site.name, rec.row.model, req):
                continue
            if free_devices(pool, rec.site.name, rec.row.model) >= need.devices:
                continue  # it fits there now: the scheduler will place it without taking anything back
            price = self.prices.price(rec.row.provider_id, rec.row.model, rec.site.tier, self.now)
            if price is not None and (best is None or (price, rec.row.id) < best[:2]):
                best = (price, rec.row.id, rec)
        if best is None:
            return None
        return OnDemandRequest(f"J{job.id}", self.tenant(job.tenant_id), str(best[1]), need.devices)

    def _apply(self, result: SpotRound, leases: dict[int, MarketLease], bid_rows: dict[str, tuple[MarketBid, Job]],
               bids: Sequence[Bid], held_requests: dict[int | None, MarketLease],
               recs: dict[int, OfferRecord]) -> None:
        classes = {str(i): str(rec.market_class) for i, rec in recs.items()}
        for p in result.preemptions:
            self._preempt(leases[int(p.lease_id[1:])], p, _reason(p, classes))
        price_of = {cp.market_class: cp.price_fen_per_du for cp in result.prices}
        for a in result.allocations:
            row, job = bid_rows[a.bid_id]
            rec = recs[int(a.offer_id)]
            price = price_of[a.market_class]
            lease = MarketLease(kind="spot", tenant_id=job.tenant_id, offer_id=rec.row.id, bid_id=row.id,
                                job_id=job.id, attempt=None, site_id=rec.site.id, model=rec.row.model,
                                devices=a.devices, start_ms=a.start_ms, end_ms=None,
                                limit_fen_per_du=a.limit_fen_per_du, price_fen_per_du=price, cost_fen=None,
                                resold_devices=0, state="allocated", reason="", created_ms=self.now,
                                updated_ms=self.now)
            self.session.add(lease)
            self.session.flush()
            later = f" from {iso(a.start_ms)}, when a preempted job has stopped" if a.start_ms > self.now else ""
            row.state, row.lease_id, row.updated_ms = "leased", lease.id, self.now
            row.state_reason = (f"spot lease {lease.id}: {a.devices} x {rec.row.model} at {rec.site.name} at "
                                f"{price} fen/du{later}")
            self.report.allocations.append({"lease_id": lease.id, "bid_id": row.id, "job_id": job.id,
                                            "offer_id": rec.row.id, "site": rec.site.name, "model": rec.row.model,
                                            "devices": a.devices, "price_fen_per_du": price, "start_ms": a.start_ms})
        for g in result.on_demand:
            job_id = int(g.request_id[1:])
            if job_id in held_requests:
                continue
            rec = recs[int(g.offer_id)]
            waiting = self.session.get(Job, job_id)
            assert waiting is not None
            lease = MarketLease(kind="on-demand", tenant_id=waiting.tenant_id, offer_id=rec.row.id, bid_id=None,
                                job_id=job_id, attempt=None, site_id=rec.site.id, model=rec.row.model,
                                devices=g.devices, start_ms=g.start_ms, end_ms=None, limit_fen_per_du=None,
                                price_fen_per_du=g.price_fen_per_du, cost_fen=None, resold_devices=0,
                                state="allocated", reason="held for an on-demand job", created_ms=self.now,
                                updated_ms=self.now)
            self.session.add(lease)
            self.session.flush()
            self.report.on_demand.append({"lease_id": lease.id, "job_id": job_id, "offer_id": rec.row.id,
                                          "devices": g.devices, "start_ms": g.start_ms})
        for request_id, why in result.unserved_on_demand:
            held = held_requests.get(int(request_id[1:]))
            if held is not None:
                self._end(held, f"no longer held: {why}")
        limits = {b.id: b.limit_fen_per_du for b in bids}
        for bid_id in result.unmatched_bids:
            row, _ = bid_rows[bid_id]
            # no time in the text: a reason that changes every round would be rewritten on every waiting job
            row.state_reason = f"bid {limits[bid_id]} fen/du not matched in the last round; bids again in the next"
            self.report.unmatched.append({"bid_id": row.id, "job_id": row.job_id})
        self.report.prices.extend(result.prices)

    def _end(self, lease: MarketLease, reason: str) -> None:
        lease.state, lease.end_ms, lease.reason, lease.updated_ms = "ended", self.now, reason, self.now
        self.report.ended.append({"lease_id": lease.id, "job_id": lease.job_id, "reason": reason})

    def _preempt(self, lease: MarketLease, p: Preemption, reason: str) -> None:
        self.report.preemptions.append({"lease_id": lease.id, "job_id": lease.job_id, "reason": p.reason,
                                        "by": p.by, "preempt_at_ms": p.preempt_at_ms})
        if lease.state == "allocated":  # its job was not placed yet: nothing to stop
            self._end(lease, reason)
            reopen_bid(self.session, lease, f"lost its allocation ({reason}); bids again in the next round",
                       self.now)
            return
        job = self.session.get(Job, lease.job_id) if lease.job_id is not None else None
        if job is not None and job.state in _PREEMPTABLE and job.attempt == lease.attempt:
            job_service.preempt(self.session, job, reason, self.now, self.notice_ms)
        lease.state, lease.preempt_at_ms, lease.reason, lease.updated_ms = "preempting", p.preempt_at_ms, reason, \
            self.now


def reopen_bid(session: Session, lease: MarketLease, reason: str, now_ms: int) -> None:
    """The job behind a spot lease that ended is back in the queue: its bid takes part again."""
    if lease.bid_id is None:
        return
    bid = session.get(MarketBid, lease.bid_id)
    if bid is not None and bid.lease_id == lease.id:
        bid.state, bid.lease_id, bid.state_reason, bid.updated_ms = "open", None, reason, now_ms
