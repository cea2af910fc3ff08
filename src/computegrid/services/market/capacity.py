"""Devices the market governs: reserved blocks in their window, and placement on one site and model.

A reserved block is a promise: during its window its devices must be there for the holder's jobs.
Ordinary placement therefore sees, at each (site, model), as many free devices taken as the blocks in
force there still have unused (`withhold`, a change to the pool snapshot only; nothing is stored).
A job on a reservation, or a spot job the auction gave an offer's devices, is placed first-fit on
that site and model only (`place_on`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.jobs import ACTIVE_STATES
from computegrid.core.market.reserved import peak_devices
from computegrid.core.placement import FirstFit, Placement, PlacementFailure, PlacementRequest
from computegrid.core.placement.base import RttTable, engine_mask
from computegrid.core.pool import NodeAllocation, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE
from computegrid.store.models import Job, JobAllocation, Site
from computegrid.store.models_market import MarketLease, MarketOffer

_FIRST_FIT = FirstFit()


@dataclass
class Reservations:
    """Reserved blocks in force at `at_ms` and how much of each is used or resold."""

    at_ms: int
    leases: dict[int, MarketLease] = field(default_factory=dict)
    root: dict[int, int] = field(default_factory=dict)  # lease -> the block bought from a reserved offer
    in_use: dict[int, int] = field(default_factory=dict)  # lease -> devices held by its active jobs
    listed: dict[int, int] = field(default_factory=dict)  # lease -> devices put up for resale from now on
    site_names: dict[int, str] = field(default_factory=dict)

    def allowance(self, lease_id: int) -> int:
        """Devices of the lease its holder may still start jobs on now."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return 0
        return lease.devices - self.listed.get(lease_id, 0) - self.in_use.get(lease_id, 0)

    def withheld(self) -> dict[tuple[str, str], int]:
        """Per (site name, model): reserved devices in force and not used by any job on them."""
        used: dict[int, int] = defaultdict(int)
        for lease_id, count in self.in_use.items():
            if lease_id in self.root:
                used[self.root[lease_id]] += count
        out: dict[tuple[str, str], int] = defaultdict(int)
        for lease_id, root in self.root.items():
            if lease_id == root:
                lease = self.leases[lease_id]
                out[(self.site_names[lease.site_id], lease.model)] += max(0, lease.devices - used[lease_id])
        return {k: v for k, v in out.items() if v > 0}


def reservation_jobs(session: Session) -> dict[int, int]:
    """Devices held by active jobs on each reservation (lease id -> devices)."""
    rows = session.execute(
        select(Job.spec, JobAllocation.device_indices).join(JobAllocation, JobAllocation.job_id == Job.id)
        .where(Job.state.in_([s.value for s in ACTIVE_STATES]), Job.price_kind == "reserved",
               JobAllocation.attempt == Job.attempt, JobAllocation.active.is_(True))).all()
    out: dict[int, int] = defaultdict(int)
    for spec, indices in rows:
        lease_id = json.loads(spec).get("reservation")
        if lease_id is not None:
            out[int(lease_id)] += len([i for i in indices.split(",") if i != ""])
    return dict(out)


def load_reservations(session: Session, at_ms: int) -> Reservations:
    """Reserved blocks whose window holds `at_ms`, their roots, use and resale listings."""
    state = Reservations(at_ms)
    rows = session.execute(select(MarketLease, MarketOffer).join(MarketOffer, MarketOffer.id == MarketLease.offer_id)
                           .where(MarketLease.kind == "reserved", MarketLease.state == "held",
                                  MarketLease.start_ms <= at_ms, MarketLease.end_ms > at_ms)).all()
    if not rows:
        return state
    parent: dict[int, int | None] = {}
    for lease, offer in rows:
        state.leases[lease.id] = lease
        parent[lease.id] = offer.reservation_id if offer.kind == "resale" else None
    for lease_id in parent:
        node, seen = lease_id, set()
        while parent.get(node) is not None and node not in seen:
            seen.add(node)
            node = parent[node]  # type: ignore[assignment]
        if node in state.leases:
            state.root[lease_id] = node
    state.in_use = {k: v for k, v in reservation_jobs(session).items() if k in state.leases}
    # Devices put up for resale from now to a block's end are not its holder's to start jobs on: a job
    # started now could still hold them when the buyer's window begins.
    resold: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for offer in session.scalars(select(MarketOffer).where(MarketOffer.kind == "resale",
                                                           MarketOffer.reservation_id.in_(list(state.leases)),
                                                           MarketOffer.window_end_ms > at_ms)):
        assert offer.reservation_id is not None and offer.window_start_ms is not None
        assert offer.window_end_ms is not None
        if offer.state == "open":
            resold[offer.reservation_id].append((offer.devices, offer.window_start_ms, offer.window_end_ms))
            continue
        for devices, start, end in session.execute(  # withdrawn: only what was sold from it stays resold
                select(MarketLease.devices, MarketLease.start_ms, MarketLease.end_ms)
                .where(MarketLease.offer_id == offer.id, MarketLease.kind == "reserved")).all():
            resold[offer.reservation_id].append((devices, start, end or start))
    for lease_id, blocks in resold.items():
        lease = state.leases[lease_id]
        assert lease.end_ms is not None
        state.listed[lease_id] = peak_devices(blocks, at_ms, lease.end_ms)
    site_ids = {lease.site_id for lease in state.leases.values()}
    state.site_names = dict(session.execute(select(Site.id, Site.name).where(Site.id.in_(site_ids))).all())
    return state


def _free_rows(pool: PoolSnapshot, site: str, model: str) -> list[int]:
    """Device rows of `model` at `site` that are entirely free, on nodes that are up, in pool order."""
    if model not in pool.model_code or not len(pool.dev_free):
        return []
    node_ok = (pool.site == site) & pool.up
    ok = (node_ok[pool.dev_node] & (pool.dev_model_code == pool.model_code[model])
          & (pool.dev_free == MILLI_PER_DEVICE))
    return [int(r) for r in np.flatnonzero(ok)]


def free_devices(pool: PoolSnapshot, site: str, model: str) -> int:
    """Whole free devices of `model` at `site` (nodes up) in the snapshot."""
    return len(_free_rows(pool, site, model))


def withhold(pool: PoolSnapshot, site: str, model: str, count: int) -> list[NodeAllocation]:
    """Take up to `count` free devices of `model` at `site` out of the snapshot; returns what was taken."""
    by_node: dict[int, list[int]] = defaultdict(list)
    for row in _free_rows(pool, site, model)[:max(0, count)]:
        by_node[int(pool.node_ids[int(pool.dev_node[row])])].append(int(pool.dev_index[row]))
    taken = [NodeAllocation(node_id=node, device_indices=tuple(indices), milli_per_device=MILLI_PER_DEVICE,
                            cpu_milli=0, memory_mb=0) for node, indices in by_node.items()]
    if taken:
        pool.allocate(taken)
    return taken


@dataclass
class Withholding:
    """The devices held back in a snapshot per (site, model), so a reservation's job can be let in."""

    pool: PoolSnapshot
    held: dict[tuple[str, str], list[NodeAllocation]] = field(default_factory=dict)
    count: dict[tuple[str, str], int] = field(default_factory=dict)

    def apply(self, wanted: dict[tuple[str, str], int]) -> None:
        for key, n in wanted.items():
            self.count[key] = n
            self.held[key] = withhold(self.pool, key[0], key[1], n)

    def release(self, site: str, model: str) -> None:
        self.pool.release(self.held.pop((site, model), []))

    def reapply(self, site: str, model: str, used: int) -> None:
        """After `used` reserved devices at (site, model) went to a job: hold back the rest again."""
        key = (site, model)
        self.count[key] = max(0, self.count.get(key, 0) - used)
        self.held[key] = withhold(self.pool, site, model, self.count[key])


def place_on(pool: PoolSnapshot, req: PlacementRequest, site: str, model: str,
             rtt: RttTable | None = None) -> Placement | PlacementFailure:
    """First-fit placement of `req` on `site`'s nodes and devices of `model` only."""
    saved = pool.up
    pool.up = saved & (pool.site == site)
    try:
        return _FIRST_FIT.place(pool, PlacementRequest(
            models=frozenset({model}), milli_per_node=req.milli_per_node,
            min_device_memory_gb=req.min_device_memory_gb, cpu_milli=req.cpu_milli, memory_mb=req.memory_mb,
            nodes=req.nodes, image=req.image), rtt)
    finally:
        pool.up = saved


def site_can_hold(pool: PoolSnapshot, site: str, model: str, req: PlacementRequest) -> bool:
    """Whether `site`'s nodes could ever run the job on `model` (its CPU, memory and devices per node,
    on enough nodes), judged on total capacity: a spot or on-demand match there would not be placed."""
    rows = np.flatnonzero(pool.site == site)
    engine = engine_mask(pool, req)  # what the site's engine takes (shares, images, gangs)
    if engine is not None:
        rows = rows[engine[rows]]
    if not len(rows):
        return False
    per_node = req.devices_per_node
    if model in pool.model_code:
        of_model = np.bincount(pool.dev_node[(pool.dev_model_code == pool.model_code[model]) & pool.dev_engine_ok],
                               minlength=pool.node_count)[rows]
    else:
        of_model = np.zeros(len(rows), dtype=np.int64)
    fits = (of_model >= per_node) & (pool.cpu_total[rows] >= req.cpu_milli) & (pool.mem_total[rows] >= req.memory_mb)
    return int(np.count_nonzero(fits)) >= req.nodes
