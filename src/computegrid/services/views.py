"""Read models: what the API and CLI show of a job, computed from the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import PRIORITY_CLASSES
from computegrid.core.metering import UsageInterval, meter
from computegrid.store.models import Job, JobAllocation, Node, Site, Tenant, UsageRecord

_CLASS_NAMES = {rank: name for name, rank in PRIORITY_CLASSES.items()}


def iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _decimal(value: Fraction, places: int = 6) -> str:
    return f"{float(value):.{places}f}"


@dataclass(frozen=True)
class UsageView:
    device_seconds: str
    cpu_seconds: str
    du: str | None
    intervals: int


def usage_of(session: Session, catalog: Catalog, job_id: int) -> UsageView:
    """Usage across all attempts: device-seconds (shares counted), CPU-seconds and du."""
    records = session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id)).all()
    device = [UsageInterval(r.model, r.share_milli, r.start_ms, r.end_ms) for r in records if r.device_index >= 0]
    cpu_ms = sum((r.end_ms - r.start_ms) * r.cpu_milli for r in records if r.device_index < 0)
    metered = meter(device, catalog)
    du = None if metered.du is None else _decimal(metered.du, 9)
    return UsageView(device_seconds=_decimal(metered.device_seconds, 3),
                     cpu_seconds=_decimal(Fraction(cpu_ms, 1_000_000), 3), du=du, intervals=len(records))


def job_view(session: Session, catalog: Catalog, job: Job, *, detail: bool = True) -> dict[str, Any]:
    """The job as the API shows it; `detail` adds placement nodes, usage and the spec."""
    site = session.get(Site, job.site_id) if job.site_id else None
    tenant = session.get(Tenant, job.tenant_id)
    view: dict[str, Any] = {
        "id": job.id, "name": job.name, "tenant": tenant.name if tenant else None,
        "priority": _CLASS_NAMES.get(job.priority_class, str(job.priority_class)), "state": job.state,
        "state_reason": job.state_reason, "attempt": job.attempt, "site": site.name if site else None,
        "exit_code": job.exit_code, "submitted_at": iso(job.submitted_ms), "placed_at": iso(job.placed_ms),
        "started_at": iso(job.started_ms), "ended_at": iso(job.ended_ms),
    }
    if detail:
        view["package_priority"] = job.package_priority
        rows = session.execute(select(JobAllocation, Node).join(Node, Node.id == JobAllocation.node_id)
                               .where(JobAllocation.job_id == job.id, JobAllocation.attempt == job.attempt)
                               .order_by(JobAllocation.rank)).all()
        view["nodes"] = [{"node": r.Node.name, "node_id": r.Node.id, "rank": r.JobAllocation.rank,
                          "devices": [int(i) for i in r.JobAllocation.device_indices.split(",") if i],
                          "milli_per_device": r.JobAllocation.milli_per_device} for r in rows]
        view["node"] = view["nodes"][0]["node"] if view["nodes"] else None
        view["usage"] = vars(usage_of(session, catalog, job.id))
        view["spec"] = json.loads(job.spec)
    return view
