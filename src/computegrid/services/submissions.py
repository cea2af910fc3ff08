"""Group commit for job submissions.

Each accepted submission must be durable before its 201 goes out, but committing
each one in its own transaction spends most of the time on round trips and commits.
A single writer thread takes every submission waiting at that moment and stores them
in one transaction (one multi-row INSERT for jobs, one for their events); each caller
is answered when that transaction has committed. Idempotency keys are resolved inside
the batch as well as against what is already stored.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from computegrid.core.jobs import JobSpec, JobState
from computegrid.services.errors import Conflict
from computegrid.store.db import Database
from computegrid.store.models import Job, JobEvent

log = logging.getLogger(__name__)
WAITING_REASON = "waiting for placement"


@dataclass(frozen=True)
class Submission:
    tenant_id: int
    user_id: int
    spec: JobSpec
    idempotency_key: str | None
    now_ms: int


@dataclass(frozen=True)
class Stored:
    """The outcome of one submission: the job's id, and whether this call created it."""

    job_id: int
    created: bool
    submitted_ms: int


def store_batch(session: Session, batch: list[Submission]) -> list[Stored]:
    """Insert a batch of submissions in the caller's transaction; results in the batch's order.

    A submission whose (tenant, Idempotency-Key) is already stored, or appears earlier in
    the batch, is answered with that job instead of creating another.
    """
    keys = {s.idempotency_key for s in batch if s.idempotency_key is not None}
    by_key: dict[tuple[int, str], Stored] = {}
    if keys:
        rows = session.execute(select(Job.tenant_id, Job.idempotency_key, Job.id, Job.submitted_ms)
                               .where(Job.idempotency_key.in_(keys))).all()
        for tenant_id, stored_key, job_id, submitted_ms in rows:
            by_key[(tenant_id, str(stored_key))] = Stored(job_id, False, submitted_ms)
    fresh: list[Submission] = []
    claimed: set[tuple[int, str]] = set()
    for sub in batch:
        if sub.idempotency_key is not None:
            key = (sub.tenant_id, sub.idempotency_key)
            if key in by_key or key in claimed:
                continue
            claimed.add(key)
        fresh.append(sub)
    created: dict[int, Stored] = {}  # by id() of the submission
    if fresh:
        rows_in = [{"tenant_id": s.tenant_id, "user_id": s.user_id, "name": s.spec.name,
                    "spec": json.dumps(s.spec.to_dict(), sort_keys=True), "state": JobState.PENDING.value,
                    "state_reason": WAITING_REASON, "attempt": 0, "idempotency_key": s.idempotency_key,
                    "submitted_ms": s.now_ms, "updated_ms": s.now_ms} for s in fresh]
        result = session.execute(insert(Job).returning(Job.id, sort_by_parameter_order=True), rows_in)
        ids = [int(row[0]) for row in result]
        session.execute(insert(JobEvent), [
            {"job_id": job_id, "at_ms": s.now_ms, "from_state": None, "to_state": JobState.PENDING.value,
             "reason": "submitted"} for job_id, s in zip(ids, fresh, strict=True)])
        for job_id, sub in zip(ids, fresh, strict=True):
            created[id(sub)] = Stored(job_id, True, sub.now_ms)
            if sub.idempotency_key is not None:
                by_key[(sub.tenant_id, sub.idempotency_key)] = Stored(job_id, False, sub.now_ms)
    out: list[Stored] = []
    for sub in batch:
        if id(sub) in created:
            out.append(created[id(sub)])
        else:
            assert sub.idempotency_key is not None
            out.append(by_key[(sub.tenant_id, sub.idempotency_key)])
    return out


class SubmissionWriter:
    """One thread that stores queued submissions in batches (group commit)."""

    def __init__(self, db: Database, *, max_batch: int = 256, on_stored: Callable[[int], None] | None = None):
        self.db = db
        self.max_batch = max_batch
        self.on_stored = on_stored
        self._queue: queue.Queue[tuple[Submission, Future[Stored]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, sub: Submission) -> Future[Stored]:
        """Queue a submission; the future resolves once its transaction has committed."""
        self._ensure_started()
        future: Future[Stored] = Future()
        self._queue.put((sub, future))
        return future

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="submission-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._write(batch)

    def _write(self, batch: list[tuple[Submission, Future[Stored]]]) -> None:
        try:
            with self.db.transaction() as session:
                results = store_batch(session, [sub for sub, _ in batch])
        except IntegrityError:
            # Another API process stored one of these keys meanwhile: take them one by one.
            if len(batch) > 1:
                for item in batch:
                    self._write([item])
                return
            for _, future in batch:
                future.set_exception(Conflict("a job with this Idempotency-Key is being created; retry"))
            return
        except Exception as exc:  # the whole transaction rolled back: every caller hears why
            log.exception("storing %d submissions failed", len(batch))
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
        if self.on_stored is not None:
            self.on_stored(sum(r.created for r in results))

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
