"""services/placement_writes.py: placements written in bulk (array parameters on PostgreSQL) keep every
character of the reason, whatever a node is called."""

from __future__ import annotations

from sqlalchemy import select

from computegrid.store.models import JobAllocation, JobEvent
from tests.api.conftest import World
from tests.api.test_queue_live import show, submit, t4


def test_a_node_name_with_quotes_backslashes_and_braces_survives_the_bulk_write(world: World) -> None:
    w = world
    name = 'n"1\\{x},y NULL'  # what an array literal must escape: quote, backslash, braces, comma, NULL
    node = w.register_node("prov1", "s1", name, devices=t4(2))
    job = submit(w, devices=2)
    assert w.scheduler.place_pending().placed == 1
    body = show(w, job)
    assert body["state"] == "placed"
    assert body["state_reason"] == f"placed by first-fit on s1/{name} (attempt 1)"
    with w.db.reading() as session:
        events = session.scalars(select(JobEvent.reason).where(JobEvent.job_id == job)).all()
        alloc = session.execute(select(JobAllocation.node_id, JobAllocation.device_indices, JobAllocation.active)
                                .where(JobAllocation.job_id == job)).one()
    assert events[-1] == body["state_reason"]
    assert tuple(alloc) == (node, "0,1", True)
