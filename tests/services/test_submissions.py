"""Group commit: one transaction stores a batch; idempotency keys hold within and across batches."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from computegrid.core.catalog import default_catalog
from computegrid.core.jobs import parse_job_spec
from computegrid.services import accounts
from computegrid.services.errors import Forbidden
from computegrid.services.submissions import Submission, SubmissionWriter, store_batch
from computegrid.store.db import Database
from computegrid.store.models import Job, JobEvent


def setup_tenants(db: Database) -> tuple[int, int, int]:
    with db.transaction() as session:
        a = accounts.create_tenant(session=session, name="a", now_ms=1).id
        b = accounts.create_tenant(session=session, name="b", now_ms=1).id
        user, _ = accounts.create_user(session=session, name="u", role="tenant", tenant="a", now_ms=1)
        return a, b, user.id


def sub(tenant: int, user: int, key: str | None, name: str = "j", priority: str = "normal") -> Submission:
    return Submission(tenant_id=tenant, user_id=user, spec=parse_job_spec({"name": name, "run": "x",
                                                                           "priority": priority}, default_catalog()),
                      idempotency_key=key, now_ms=1000)


def test_batch_resolves_keys_within_and_across_batches(db: Database) -> None:
    a, b, user = setup_tenants(db)
    with db.transaction() as session:
        first = store_batch(session, [sub(a, user, "k1")])
    batch = [sub(a, user, None), sub(a, user, "k1"), sub(a, user, "k2"), sub(a, user, "k2"), sub(b, user, "k2"),
             sub(a, user, None)]
    with db.transaction() as session:
        out = store_batch(session, batch)
    assert [r.created for r in out] == [True, False, True, False, True, True]
    assert out[1].job_id == first[0].job_id
    assert out[2].job_id == out[3].job_id != out[4].job_id
    assert len({r.job_id for r in out}) == 5
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 5
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 5


def test_writer_answers_every_concurrent_caller_once(db: Database) -> None:
    a, _, user = setup_tenants(db)
    stored_counts: list[int] = []
    writer = SubmissionWriter(db, on_stored=stored_counts.append)
    results: list[int] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for i in range(20):
            job_id = writer.submit(sub(a, user, f"k{(n * 20 + i) % 50}", name=f"c{n}")).result(timeout=30).job_id
            with lock:
                results.append(job_id)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert len(results) == 160
    assert len(set(results)) == 50  # 160 submissions over 50 keys: 50 jobs
    assert sum(stored_counts) == 50
    with db.reading() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 50


def test_a_batch_refuses_only_the_submissions_of_a_class_the_tenant_may_not_use(db: Database) -> None:
    a, _, user = setup_tenants(db)
    batch = [sub(a, user, "k", priority="high"), sub(a, user, "k", priority="low"), sub(a, user, None),
             sub(a, user, None, priority="high")]
    with db.transaction() as session:
        out = store_batch(session, batch)
    assert isinstance(out[0], Forbidden) and isinstance(out[3], Forbidden)
    assert "may not use priority 'high'" in out[0].message
    assert not isinstance(out[1], Forbidden) and out[1].created  # the refused one did not take the key
    assert not isinstance(out[2], Forbidden) and out[2].created
    with db.reading() as session:
        assert sorted(session.scalars(select(Job.priority_class))) == [0, 1]
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 2
