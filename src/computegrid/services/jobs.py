"""Job use cases for tenants: submit, list, show, cancel, logs and events."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.catalog import Catalog
from computegrid.core.jobs import (
    ACTIVE_STATES,
    JobSpec,
    JobState,
    SpecError,
    deadline_problem,
    parse_job_spec,
    transition,
)
from computegrid.core.placement.base import PlacementRequest, RttTable, feasible_nodes
from computegrid.core.placement.gang import widest_group
from computegrid.core.pool import BoolArray, PoolSnapshot
from computegrid.services.billing.charges import charge_attempt
from computegrid.services.errors import Forbidden, Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.services.submissions import WAITING_REASON, Stored, Submission
from computegrid.services.views import iso
from computegrid.store.models import Job, JobAllocation, JobEvent

MAX_LIST = 1000


def validate_spec(data: Any, catalog: Catalog) -> JobSpec:
    try:
        return parse_job_spec(data, catalog)
    except SpecError as exc:
        raise Invalid(f"invalid job spec: {exc}", detail=[{"field": p.field, "message": p.message}
                                                           for p in exc.problems]) from exc


def check_fits_somewhere(spec: JobSpec, shape: PoolSnapshot, rtt: RttTable | None = None) -> None:
    """Reject a job no node could ever hold (judged on total capacity, every node up)."""
    if shape.node_count == 0:
        return  # nothing registered yet: the job waits for capacity
    req = PlacementRequest.from_spec(spec)
    feas = feasible_nodes(shape, req, rtt, empty=True)
    if int(feas.node_mask.sum()) >= req.nodes:
        check_gang_fits_one_group(req, shape, feas.node_mask)
        return
    reasons = "; ".join(f"{what} excluded {n}" for what, n in feas.exclusions if n)
    raise Invalid(f"no node in the pool could ever run this job ({reasons or 'gang too large'}); "
                  f"it needs {req.nodes} node(s) each with what resources asks for")


def check_gang_fits_one_group(req: PlacementRequest, shape: PoolSnapshot, could_hold: BoolArray) -> None:
    """Reject a gang wider than any single site (or region, with `gang: {spread: region}`), counting the
    nodes that could ever hold one member (`could_hold`): it lands whole on one, so it could never run."""
    if req.nodes <= 1:
        return
    name, count = widest_group(shape, could_hold, req.gang_spread)
    if count < req.nodes:
        raise Invalid(f"the gang needs {req.nodes} nodes on one {req.gang_spread}, and the widest {req.gang_spread} "
                      f"has {count} that could hold a member ({req.gang_spread} {name}); ask for fewer nodes"
                      + (", or allow the sites of one region with gang: {spread: region}"
                         if req.gang_spread == "site" else ""))


def record_event(session: Session, job: Job, to_state: JobState, reason: str, now_ms: int) -> None:
    """Move a job along a declared transition and log the event (raises InvalidTransition).

    Leaving the active states (placed, starting, running) releases the job's allocations.
    """
    src = JobState(job.state)
    transition(src, to_state)
    job.state = to_state.value
    job.state_reason = reason
    job.updated_ms = now_ms
    session.add(JobEvent(job_id=job.id, at_ms=now_ms, from_state=src.value, to_state=to_state.value,
                         reason=reason))
    if src in ACTIVE_STATES and to_state not in ACTIVE_STATES:
        release_allocations(session, job)  # capacity is held exactly while the job is active
        # Money: the attempt has ended. Capture its price now, while the job row still holds it.
        charge_attempt(session, job, job.attempt, now_ms)


def mark_lost(session: Session, job: Job, reason: str, now_ms: int) -> None:
    """The job's attempt is lost; requeue it when its spec allows another attempt."""
    record_event(session, job, JobState.LOST, reason, now_ms)
    spec = json.loads(job.spec)
    if spec.get("requeue_on_lost", True) and job.attempt < int(spec.get("max_attempts", 3)):
        record_event(session, job, JobState.PENDING, f"requeued after attempt {job.attempt} was lost", now_ms)
        job.site_id = None


def preempt(session: Session, job: Job, reason: str, now_ms: int, notice_ms: int) -> None:
    """Take an interruptible job's capacity back: its agent signals it (SIGTERM, then the engine's grace
    period) and it must stop by now + notice; it is then requeued and charged only for the time it ran."""
    if notice_ms < 0:
        raise Invalid("the notice period cannot be negative")
    record_event(session, job, JobState.PREEMPTING, f"{reason}; stops within {notice_ms // 1000} s", now_ms)
    job.stop_by_ms = now_ms + notice_ms


def requeue_preempted(session: Session, job: Job, reason: str, now_ms: int) -> None:
    """A preempted attempt has stopped (or its notice ran out): free its capacity and queue the job again.
    A preemption is the platform's doing, so it never uses up the job's attempts."""
    record_event(session, job, JobState.PENDING, reason, now_ms)
    job.site_id = None
    job.stop_by_ms = None


def release_allocations(session: Session, job: Job) -> None:
    for alloc in session.scalars(select(JobAllocation).where(JobAllocation.job_id == job.id,
                                                             JobAllocation.active.is_(True))):
        alloc.active = False


def admit(*, principal: Principal, spec: JobSpec, shape: PoolSnapshot, now_ms: int,
          idempotency_key: str | None = None, rtt: RttTable | None = None) -> Submission:
    """Check that the principal may submit this job, that its deadline can be met and that it could ever run;
    returns what to store. (Whether the tenant may use the job's priority class is checked as it is stored.)"""
    if principal.tenant_id is None:
        raise Forbidden("only a tenant's users (or an operator with a tenant) may submit jobs")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 128:
        raise Invalid("Idempotency-Key must be 1-128 characters")
    late = deadline_problem(spec, now_ms)
    if late is not None:
        raise Invalid(late)
    check_fits_somewhere(spec, shape, rtt)
    return Submission(tenant_id=principal.tenant_id, user_id=principal.user_id, spec=spec,
                      idempotency_key=idempotency_key, now_ms=now_ms)


def pending_view(principal: Principal, spec: JobSpec, stored: Stored) -> dict[str, Any]:
    """What a just-created job looks like, built without reading it back."""
    return {"id": stored.job_id, "name": spec.name, "tenant": principal.tenant_name, "priority": spec.priority,
            "state": "pending",
            "state_reason": WAITING_REASON, "attempt": 0, "site": None, "exit_code": None,
            "submitted_at": iso(stored.submitted_ms), "placed_at": None, "started_at": None, "ended_at": None}


def job_id_for_key(*, session: Session, tenant_id: int, key: str) -> int | None:
    """The id of the tenant's job stored under an Idempotency-Key, if any."""
    return session.scalar(select(Job.id).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))


def get_job(*, session: Session, principal: Principal, job_id: int) -> Job:
    """A job the principal may see; others' jobs are reported as not found."""
    job = session.get(Job, job_id)
    if job is None or not principal.can_see_tenant(job.tenant_id):
        raise NotFound(f"no job {job_id}")
    return job


def list_jobs(*, session: Session, principal: Principal, state: str | None = None,
              limit: int = 100) -> list[Job]:
    if principal.role == "provider":
        raise Forbidden("providers see the jobs on their sites through their agents, not this list")
    query = select(Job).order_by(Job.id.desc()).limit(max(1, min(limit, MAX_LIST)))
    if not principal.is_operator:
        query = query.where(Job.tenant_id == principal.tenant_id)
    if state is not None:
        if state not in {s.value for s in JobState}:
            raise Invalid(f"state must be one of {', '.join(s.value for s in JobState)}")
        query = query.where(Job.state == state)
    return list(session.scalars(query))


def cancel(*, session: Session, principal: Principal, job_id: int, now_ms: int) -> Job:
    """Cancel a job that has not ended; its agent stops it at the next heartbeat."""
    job = get_job(session=session, principal=principal, job_id=job_id)
    if JobState(job.state) in {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}:
        raise Invalid(f"job {job_id} already ended ({job.state})")
    record_event(session, job, JobState.CANCELLED, f"cancelled by {principal.name}", now_ms)
    job.ended_ms = now_ms
    return job


def job_events(*, session: Session, principal: Principal, job_id: int) -> list[JobEvent]:
    get_job(session=session, principal=principal, job_id=job_id)
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))
