"""Reading a job attempt's output: one rank's log, or every rank's merged line by line.

Each rank of a gang has its own log (agents ship it per rank, see services/agents.py `append_log`).
A one-node job reads as its rank 0 log, unchanged. A gang read without a rank is its ranks' complete lines
merged in the order they arrived, each prefixed `[rank N] `; a rank's unfinished last line joins the merge
once its newline arrives, or once the attempt has ended. Offsets count characters of what is read (one
rank's log, or the merged text), so a follower passes back `next_offset`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from computegrid.core.jobs import ACTIVE_STATES, JobState
from computegrid.services.errors import Invalid
from computegrid.services.jobs import get_job
from computegrid.services.principal import Principal
from computegrid.store.models import Job, JobLogChunk


@dataclass(frozen=True)
class LogSlice:
    attempt: int
    rank: int | None  # None: every rank's output merged (a one-node job: its only rank, unprefixed)
    ranks: tuple[int, ...]  # the attempt's ranks (0 .. nodes-1)
    offset: int
    next_offset: int
    data: str


def job_logs(*, session: Session, principal: Principal, job_id: int, offset: int = 0,
             attempt: int | None = None, rank: int | None = None) -> LogSlice:
    """Log text of one attempt (the latest by default) from character `offset` on: one rank's, or all merged."""
    job = get_job(session=session, principal=principal, job_id=job_id)
    att = job.attempt if attempt is None else attempt
    if offset < 0:
        raise Invalid("offset must be >= 0")
    ranks = tuple(range(max(1, int(json.loads(job.spec).get("nodes", 1)))))
    if rank is not None and rank not in ranks:
        raise Invalid(f"job {job_id} has ranks 0..{ranks[-1]}; there is no rank {rank}")
    if rank is not None or len(ranks) == 1:
        one = 0 if rank is None else rank
        end, text = _rank_text(session, job_id, att, one, offset)
        return LogSlice(attempt=att, rank=rank, ranks=ranks, offset=offset, next_offset=end, data=text)
    merged = _merged_text(session, job, att)
    data = merged[offset:]
    return LogSlice(attempt=att, rank=None, ranks=ranks, offset=offset, next_offset=offset + len(data), data=data)


def _rank_text(session: Session, job_id: int, attempt: int, rank: int, offset: int) -> tuple[int, str]:
    chunks = session.scalars(select(JobLogChunk).where(JobLogChunk.job_id == job_id, JobLogChunk.attempt == attempt,
                                                       JobLogChunk.rank == rank,
                                                       JobLogChunk.offset + func.length(JobLogChunk.data) > offset)
                             .order_by(JobLogChunk.offset)).all()
    out: list[str] = []
    pos = offset
    for chunk in chunks:
        if chunk.offset > pos:
            break  # a gap: the rest has not arrived yet
        text = chunk.data[pos - chunk.offset:]
        out.append(text)
        pos += len(text)
    return pos, "".join(out)


def _merged_text(session: Session, job: Job, attempt: int) -> str:
    """Every rank's complete lines in the order their chunks arrived (ids grow as chunks are stored, so the
    merged text only grows while the attempt runs)."""
    chunks = session.scalars(select(JobLogChunk).where(JobLogChunk.job_id == job.id, JobLogChunk.attempt == attempt)
                             .order_by(JobLogChunk.id)).all()
    unfinished: dict[int, str] = {}
    lines: list[str] = []
    for chunk in chunks:
        *complete, rest = (unfinished.get(chunk.rank, "") + chunk.data).split("\n")
        lines.extend(f"[rank {chunk.rank}] {line}\n" for line in complete)
        unfinished[chunk.rank] = rest
    over = job.attempt != attempt or JobState(job.state) not in ACTIVE_STATES
    if over:
        lines.extend(f"[rank {r}] {rest}\n" for r, rest in sorted(unfinished.items()) if rest)
    return "".join(lines)
