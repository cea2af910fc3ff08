"""Use cases for site agents: pull assignments, report job state, stream logs, report usage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computegrid.core.jobs import ACTIVE_STATES, TERMINAL_STATES, JobState, can_transition
from computegrid.services.errors import Conflict, Invalid, NotFound
from computegrid.services.jobs import mark_lost, record_event, requeue_preempted
from computegrid.services.pool_state import allocation_of
from computegrid.store.models import Job, JobAllocation, JobLogChunk, Node, UsageRecord

MAX_LOG_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Assignment:
    job_id: int
    attempt: int
    state: str
    node_id: int
    rank: int
    nodes: int
    placement: tuple[int, ...]  # node id of every rank of this attempt, so a site agent can start a gang whole
    spec: dict[str, Any]
    stop_by_ms: int | None  # set while the attempt is being preempted
    device_indices: tuple[int, ...]
    milli_per_device: int
    cpu_milli: int
    memory_mb: int


def assignments_for(*, session: Session, node: Node) -> list[Assignment]:
    """Every active job attempt that holds capacity on this node."""
    rows = session.execute(
        select(JobAllocation, Job).join(Job, Job.id == JobAllocation.job_id)
        .where(JobAllocation.node_id == node.id, JobAllocation.active.is_(True),
               JobAllocation.attempt == Job.attempt,
               Job.state.in_([s.value for s in ACTIVE_STATES]))
        .order_by(Job.id)
    ).all()
    gangs = [row.Job.id for row in rows if int(json.loads(row.Job.spec).get("nodes", 1)) > 1]
    ranks: dict[int, dict[int, int]] = {}
    if gangs:
        for other in session.scalars(select(JobAllocation).join(Job, Job.id == JobAllocation.job_id)
                                     .where(JobAllocation.job_id.in_(gangs), JobAllocation.attempt == Job.attempt)):
            ranks.setdefault(other.job_id, {})[other.rank] = other.node_id
    out = []
    for row in rows:
        alloc, job = row.JobAllocation, row.Job
        spec = json.loads(job.spec)
        by_rank = ranks.get(job.id, {alloc.rank: node.id})
        out.append(Assignment(job_id=job.id, attempt=job.attempt, state=job.state, node_id=node.id, rank=alloc.rank,
                              nodes=int(spec.get("nodes", 1)), placement=tuple(by_rank[r] for r in sorted(by_rank)),
                              spec=spec, stop_by_ms=job.stop_by_ms, device_indices=allocation_of(alloc).device_indices,
                              milli_per_device=alloc.milli_per_device, cpu_milli=alloc.cpu_milli,
                              memory_mb=alloc.memory_mb))
    return out


def _job_on_node(session: Session, node: Node, job_id: int, attempt: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    held = session.scalar(select(JobAllocation.id).where(JobAllocation.job_id == job_id,
                                                         JobAllocation.attempt == attempt,
                                                         JobAllocation.node_id == node.id))
    if held is None:
        raise NotFound(f"job {job_id} attempt {attempt} was never placed on node {node.id}")
    return job


def report_state(*, session: Session, node: Node, job_id: int, attempt: int, state: str, now_ms: int,
                 exit_code: int | None = None, reason: str = "", at_ms: int | None = None) -> Job:
    """Apply an agent's report. Repeats are no-ops; reports about a superseded attempt are refused."""
    if state == STOPPED:
        return _stopped(session, node, job_id, attempt, reason, now_ms)
    try:
        target = JobState(state)
    except ValueError as exc:
        raise Invalid(f"unknown state {state!r}") from exc
    if target not in {JobState.STARTING, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.LOST}:
        raise Invalid(f"an agent cannot report {state!r}")
    job = _job_on_node(session, node, job_id, attempt)
    if job.attempt != attempt:
        raise Conflict(f"job {job_id} is on attempt {job.attempt}; attempt {attempt} is superseded")
    current = JobState(job.state)
    if current == JobState.PREEMPTING and target in (JobState.STARTING, JobState.RUNNING):
        if job.started_ms is None:
            job.started_ms = at_ms if at_ms is not None else now_ms
        return job  # it started before it was told to stop: it stays preempting
    if current == target or (current in TERMINAL_STATES):
        return job  # a repeat, or the job was cancelled meanwhile: nothing to change
    if not can_transition(current, target):
        raise Conflict(f"job {job_id} is {current}; it cannot become {target}")
    when = at_ms if at_ms is not None else now_ms
    if target in (JobState.STARTING, JobState.RUNNING) and job.started_ms is None:
        job.started_ms = when
    if target in TERMINAL_STATES:
        job.exit_code = exit_code
        job.ended_ms = when
    text = reason or (f"exit code {exit_code}" if exit_code is not None else f"reported by node {node.name}")
    if target == JobState.LOST:
        mark_lost(session, job, text, now_ms)
    else:
        record_event(session, job, target, text, now_ms)
    return job


STOPPED = "stopped"  # what an agent reports when an attempt it was told to stop (preemption) has ended


def _stopped(session: Session, node: Node, job_id: int, attempt: int, reason: str, now_ms: int) -> Job:
    job = _job_on_node(session, node, job_id, attempt)
    if job.attempt != attempt or job.state != JobState.PREEMPTING.value:
        return job  # already requeued (notice ran out) or ended otherwise: nothing to do
    requeue_preempted(session, job, f"preempted attempt {attempt} stopped{': ' + reason if reason else ''}; "
                      "requeued", now_ms)
    return job


def append_log(*, session: Session, node: Node, job_id: int, attempt: int, offset: int, data: str,
               rank: int | None = None) -> int:
    """Store a chunk of one rank's output at character `offset` of that rank's log; overlap with what is
    stored is dropped. `rank` must be the rank this node holds in the attempt (None: that rank, which is
    what agents that predate per-rank logs mean). Returns the new end of the rank's log."""
    if offset < 0:
        raise Invalid("offset must be >= 0")
    if len(data) > MAX_LOG_CHUNK:
        raise Invalid(f"a log chunk may hold at most {MAX_LOG_CHUNK} characters")
    _job_on_node(session, node, job_id, attempt)
    held = session.scalar(select(JobAllocation.rank).where(JobAllocation.job_id == job_id,
                                                           JobAllocation.attempt == attempt,
                                                           JobAllocation.node_id == node.id))
    held = int(held or 0)
    if rank is not None and rank != held:
        raise Invalid(f"node {node.id} holds rank {held} of job {job_id} attempt {attempt}, not rank {rank}")
    end = session.scalar(select(func.max(JobLogChunk.offset + func.length(JobLogChunk.data)))
                         .where(JobLogChunk.job_id == job_id, JobLogChunk.attempt == attempt,
                                JobLogChunk.rank == held)) or 0
    if offset > end:
        raise Conflict(f"log chunk at {offset} leaves a gap; rank {held}'s log ends at {end}")
    fresh = data[end - offset:]
    if fresh:
        session.add(JobLogChunk(job_id=job_id, attempt=attempt, rank=held, offset=end, data=fresh))
    return int(end + len(fresh))


def record_usage(*, session: Session, node: Node, job_id: int, attempt: int,
                 intervals: list[dict[str, Any]]) -> int:
    """Store usage intervals of one attempt on this node; a repeated interval is stored once."""
    _job_on_node(session, node, job_id, attempt)
    existing = {(u.device_index, u.start_ms) for u in session.scalars(
        select(UsageRecord).where(UsageRecord.job_id == job_id, UsageRecord.attempt == attempt,
                                  UsageRecord.node_id == node.id))}
    added = 0
    for iv in intervals:
        start, end = int(iv["start_ms"]), int(iv["end_ms"])
        share = int(iv.get("share_milli", 0))
        if end < start:
            raise Invalid("a usage interval cannot end before it starts")
        if int(iv["device_index"]) >= 0 and not 0 < share <= 1000:
            raise Invalid("share_milli must be 1..1000 for a device interval")
        key = (int(iv["device_index"]), start)
        if key in existing:
            continue
        existing.add(key)
        session.add(UsageRecord(job_id=job_id, attempt=attempt, node_id=node.id, device_index=key[0],
                                model=iv.get("model"), share_milli=share, cpu_milli=int(iv.get("cpu_milli", 0)),
                                start_ms=start, end_ms=end))
        added += 1
    return added
