"""Endpoints site agents call with a provider key: register, heartbeat, job state, logs, usage."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

from fastapi import APIRouter

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.schemas import Heartbeat, JobStateReport, LogChunk, NodeRegister, UsageReport
from computegrid.services import agents, sites

router = APIRouter(prefix="/v1/agent", tags=["agent"])


@router.post("/register")
def register(body: NodeRegister, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    principal.require_role("provider")
    decls = [sites.DeviceDecl(index=d.index, model=d.model, source=d.source,
                              memory_gb=None if d.memory_gb is None else Decimal(str(d.memory_gb)))
             for d in body.devices]
    with state.db.transaction() as session:
        node = sites.register_node(session=session, principal=principal, catalog=state.catalog, site=body.site,
                                   name=body.name, cpu_milli=body.cpu_milli, memory_mb=body.memory_mb,
                                   devices=decls, now_ms=state.clock.now_ms(),
                                   capabilities=None if body.capabilities is None
                                   else body.capabilities.model_dump())
        node_id = node.id
    state.forget_shape()
    if state.scheduler_wake is not None:
        state.scheduler_wake.capacity()
    return {"node_id": node_id}


@router.post("/heartbeat")
def heartbeat(body: Heartbeat, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    """Record liveness and telemetry; answer with every job attempt this node should be running."""
    with state.db.transaction() as session:
        node = sites.owned_node(session=session, principal=principal, node_id=body.node_id)
        sites.record_heartbeat(session=session, node=node, telemetry=[t.model_dump() for t in body.telemetry],
                               now_ms=state.clock.now_ms())
        assignments = agents.assignments_for(session=session, node=node)
    return {"assignments": [asdict(a) for a in assignments]}


@router.post("/jobs/{job_id}/state")
def report_state(job_id: int, body: JobStateReport, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.transaction() as session:
        node = sites.owned_node(session=session, principal=principal, node_id=body.node_id)
        job = agents.report_state(session=session, node=node, job_id=job_id, attempt=body.attempt,
                                  state=body.state, exit_code=body.exit_code, reason=body.reason,
                                  at_ms=body.at_ms, now_ms=state.clock.now_ms())
        result = {"id": job.id, "state": job.state, "attempt": job.attempt}
    if state.scheduler_wake is not None:
        state.scheduler_wake.capacity()
    return result


@router.post("/jobs/{job_id}/logs")
def append_log(job_id: int, body: LogChunk, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.transaction() as session:
        node = sites.owned_node(session=session, principal=principal, node_id=body.node_id)
        end = agents.append_log(session=session, node=node, job_id=job_id, attempt=body.attempt,
                                offset=body.offset, data=body.data, rank=body.rank)
    return {"next_offset": end}


@router.post("/jobs/{job_id}/usage")
def report_usage(job_id: int, body: UsageReport, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.transaction() as session:
        node = sites.owned_node(session=session, principal=principal, node_id=body.node_id)
        added = agents.record_usage(session=session, node=node, job_id=job_id, attempt=body.attempt,
                                    intervals=[i.model_dump() for i in body.intervals])
    return {"recorded": added}
