"""Group commit for job submissions.

Each accepted submission must be durable before its 201 goes out, but committing
each one in its own transaction spends most of the time on round trips and commits.
A single writer thread takes every submission waiting at that moment and stores them
in one transaction (one multi-row INSERT for jobs, one for their events); each caller
is answered when that transaction has committed. Idempotency keys are resolved inside
the batch as well as against what is already stored.

The batch also reads what the queue needs of each tenant, in one query for the whole batch:
the priority classes it may use (a job of another class is refused, storing nothing) and
the priority of its active training packages (stored as Job.package_priority).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import and_, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from computegrid.core.jobs import PRIORITY_CLASSES, JobSpec, JobState, class_problem
from computegrid.core.jobs.admission import parse_class_list
from computegrid.services.errors import Conflict, Forbidden
from computegrid.store.db import Database
from computegrid.store.models import Job, JobEvent, Tenant
from computegrid.store.models_billing import HoldingRow, ProductRow

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


@dataclass
class _TenantTerms:
    """What the queue needs of one tenant at submission: its name, allowed classes and package holdings."""

    name: str
    classes: tuple[str, ...]
    packages: list[tuple[int, int, int]]  # (priority, valid_from_ms, expires_ms) of holdings with du left

    def package_priority(self, at_ms: int) -> int:
        """The highest priority of the training packages valid at `at_ms`, else 0."""
        return max((p for p, start, end in self.packages if start <= at_ms < end), default=0)


def _tenant_terms(session: Session, batch: list[Submission]) -> dict[int, _TenantTerms]:
    """One query for every tenant in the batch: its classes, and its active packages valid in the batch's span."""
    low = min(s.now_ms for s in batch)
    high = max(s.now_ms for s in batch)
    packages = select(ProductRow.product_id).where(ProductRow.kind == "training_package")
    holding = and_(HoldingRow.tenant_id == Tenant.id, HoldingRow.state == "active",
                   HoldingRow.valid_from_ms <= high, HoldingRow.expires_ms > low, HoldingRow.product_id.in_(packages))
    rows = session.execute(
        select(Tenant.id, Tenant.name, Tenant.priority_classes, HoldingRow.priority, HoldingRow.du_total,
               HoldingRow.du_used, HoldingRow.valid_from_ms, HoldingRow.expires_ms)
        .outerjoin(HoldingRow, holding).where(Tenant.id.in_({s.tenant_id for s in batch}))).all()
    terms: dict[int, _TenantTerms] = {}
    for tenant_id, name, classes, priority, du_total, du_used, start, end in rows:
        entry = terms.setdefault(tenant_id, _TenantTerms(name, parse_class_list(classes), []))
        if priority is not None and Fraction(du_used) < Fraction(du_total):
            entry.packages.append((priority, start, end))
    return terms


def store_batch(session: Session, batch: list[Submission]) -> list[Stored | Forbidden]:
    """Insert a batch of submissions in the caller's transaction; results in the batch's order.

    A submission whose (tenant, Idempotency-Key) is already stored, or appears earlier in
    the batch, is answered with that job instead of creating another. One whose priority
    class its tenant may not use is answered with a Forbidden and stores nothing.
    """
    keys = {s.idempotency_key for s in batch if s.idempotency_key is not None}
    by_key: dict[tuple[int, str], Stored] = {}
    if keys:
        rows = session.execute(select(Job.tenant_id, Job.idempotency_key, Job.id, Job.submitted_ms)
                               .where(Job.idempotency_key.in_(keys))).all()
        for tenant_id, stored_key, job_id, submitted_ms in rows:
            by_key[(tenant_id, str(stored_key))] = Stored(job_id, False, submitted_ms)
    terms = _tenant_terms(session, batch)
    refused: dict[int, Forbidden] = {}  # by id() of the submission
    fresh: list[Submission] = []
    claimed: set[tuple[int, str]] = set()
    for sub in batch:
        key = None if sub.idempotency_key is None else (sub.tenant_id, sub.idempotency_key)
        if key is not None and key in by_key:
            continue
        tenant = terms.get(sub.tenant_id)
        problem = (f"no tenant {sub.tenant_id}" if tenant is None
                   else class_problem(sub.spec.priority, tenant.classes, tenant.name))
        if problem is not None:
            refused[id(sub)] = Forbidden(problem)
            continue
        if key is not None:
            if key in claimed:
                continue
            claimed.add(key)
        fresh.append(sub)
    created: dict[int, Stored] = {}  # by id() of the submission
    if fresh:
        rows_in = [{"tenant_id": s.tenant_id, "user_id": s.user_id, "name": s.spec.name,
                    "spec": json.dumps(s.spec.to_dict(), sort_keys=True), "state": JobState.PENDING.value,
                    "state_reason": WAITING_REASON, "attempt": 0, "idempotency_key": s.idempotency_key,
                    "submitted_ms": s.now_ms, "updated_ms": s.now_ms,
                    "priority_class": PRIORITY_CLASSES[s.spec.priority],
                    "package_priority": terms[s.tenant_id].package_priority(s.now_ms)} for s in fresh]
        result = session.execute(insert(Job).returning(Job.id, sort_by_parameter_order=True), rows_in)
        ids = [int(row[0]) for row in result]
        session.execute(insert(JobEvent), [
            {"job_id": job_id, "at_ms": s.now_ms, "from_state": None, "to_state": JobState.PENDING.value,
             "reason": "submitted"} for job_id, s in zip(ids, fresh, strict=True)])
        for job_id, sub in zip(ids, fresh, strict=True):
            created[id(sub)] = Stored(job_id, True, sub.now_ms)
            if sub.idempotency_key is not None:
                by_key[(sub.tenant_id, sub.idempotency_key)] = Stored(job_id, False, sub.now_ms)
    out: list[Stored | Forbidden] = []
    for sub in batch:
        if id(sub) in created:
            out.append(created[id(sub)])
        elif id(sub) in refused:
            out.append(refused[id(sub)])
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
            if isinstance(result, Forbidden):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self.on_stored is not None:
            self.on_stored(sum(isinstance(r, Stored) and r.created for r in results))

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
