"""Build the core pool snapshot from the store: nodes, devices and the allocations now held."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.capabilities import EngineCapabilities
from computegrid.core.pool import DeviceInfo, NodeAllocation, NodeInfo, PoolSnapshot
from computegrid.store.models import Device, JobAllocation, Node, Site


def allocation_of(row: JobAllocation) -> NodeAllocation:
    indices = tuple(int(i) for i in row.device_indices.split(",") if i != "")
    return NodeAllocation(node_id=row.node_id, device_indices=indices, milli_per_device=row.milli_per_device,
                          cpu_milli=row.cpu_milli, memory_mb=row.memory_mb)


def _capabilities(seen: dict[str, EngineCapabilities], text: str) -> EngineCapabilities:
    """A site's stored capabilities; "" (an agent that declared none) is ANY: taken to run everything."""
    hit = seen.get(text)
    if hit is None:
        hit = seen[text] = EngineCapabilities.from_json(text or "")
    return hit


def load_pool(*, session: Session, with_allocations: bool = True) -> PoolSnapshot:
    """The pool as it stands; with `with_allocations=False`, its total capacity only."""
    rows = session.execute(select(Node, Site).join(Site, Site.id == Node.site_id).order_by(Node.id)).all()
    capabilities: dict[str, EngineCapabilities] = {}  # by the stored text: one parse per site
    nodes = [NodeInfo(node_id=r.Node.id, site=r.Site.name, region=r.Site.region, tier=r.Site.tier,
                      up=r.Node.state == "up", cpu_milli=r.Node.cpu_milli, memory_mb=r.Node.memory_mb,
                      capabilities=_capabilities(capabilities, r.Site.capabilities))
             for r in rows]
    devices = [DeviceInfo(node_id=d.node_id, index=d.index, model=d.model, memory_gb=float(d.memory_gb))
               for d in session.scalars(select(Device).where(Device.health != "removed"))]
    pool = PoolSnapshot(nodes, devices)
    if with_allocations:
        for alloc in session.scalars(select(JobAllocation).where(JobAllocation.active.is_(True))):
            # A record can outlive a changed node (a device removed): take what still exists.
            pool.try_allocate([allocation_of(alloc)])
    return pool
