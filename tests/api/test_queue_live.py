"""The live scheduler's queue: multi-factor order, EASY backfill and deadline deferral, on a real database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from computegrid.cli.main import app
from computegrid.services.clock import ManualClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.models import Job, JobEvent, Tenant, UsageRecord
from tests.api.conftest import World

HOUR = 3_600_000


def t4(n: int) -> list[dict[str, Any]]:
    return [{"index": i, "model": "T4"} for i in range(n)]


def submit(w: World, who: str = "alice", devices: int = 1, **extra: Any) -> int:
    spec = {"name": "q", "run": "true", "resources": {"accelerators": f"T4:{devices}"}, **extra}
    response = w.call(who, "POST", "/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def set_class(w: World, job: int, priority_class: int) -> None:
    with w.db.transaction() as session:
        session.execute(update(Job).where(Job.id == job).values(priority_class=priority_class))


def show(w: World, job: int) -> dict[str, Any]:
    body: dict[str, Any] = w.call("op", "GET", f"/v1/jobs/{job}").json()
    return body


def state(w: World, job: int) -> str:
    return str(show(w, job)["state"])


def test_high_goes_before_normal_before_low(world: World) -> None:
    w = world
    w.register_node("prov1", "s1", "n1", devices=t4(1))
    low, normal, high = submit(w), submit(w), submit(w)  # submitted in this order
    set_class(w, low, 0)
    set_class(w, high, 2)
    w.scheduler.tick()
    assert [state(w, j) for j in (high, normal, low)] == ["placed", "pending", "pending"]
    w.register_node("prov1", "s1", "n2", devices=t4(1))
    w.scheduler.tick()
    assert [state(w, j) for j in (normal, low)] == ["placed", "pending"]


def test_a_heavy_tenant_waits_behind_a_light_one(world: World) -> None:
    w = world
    w.register_node("prov1", "s1", "n1", devices=t4(1))
    heavy = submit(w, "alice")  # first in, but alpha has used a lot lately
    light = submit(w, "bob")
    now = w.clock.now_ms()
    with w.db.transaction() as session:
        session.add_all(UsageRecord(job_id=heavy, attempt=1, node_id=1, device_index=i, model="T4", share_milli=1000,
                                    start_ms=now - 10 * HOUR, end_ms=now - HOUR) for i in range(4))
    w.scheduler.tick()
    assert (state(w, light), state(w, heavy)) == ("placed", "pending")


def test_fair_share_weight_counts(world: World) -> None:
    w = world
    w.register_node("prov1", "s1", "n1", devices=t4(1))
    a, b = submit(w, "alice"), submit(w, "bob")
    now = w.clock.now_ms()
    with w.db.transaction() as session:
        # both used the same, but alpha's share is ten times beta's: alpha is the further below its share
        session.add_all(UsageRecord(job_id=j, attempt=1, node_id=1, device_index=0, model="T4", share_milli=1000,
                                    start_ms=now - 2 * HOUR, end_ms=now - HOUR) for j in (a, b))
        session.execute(update(Tenant).where(Tenant.name == "alpha").values(fair_share=10))
    w.scheduler.tick()
    assert (state(w, a), state(w, b)) == ("placed", "pending")


def backfill_world(w: World) -> tuple[int, int, int, int]:
    w.register_node("prov1", "s1", "n1", devices=t4(4))
    running = submit(w, devices=2, time_limit="1h")
    w.scheduler.tick()
    assert state(w, running) == "placed"
    head = submit(w, devices=4, time_limit="1h")  # must wait for the running job's end, an hour from now
    long = submit(w, devices=2, time_limit="2h")  # would still hold 2 devices then: it would delay the head
    short = submit(w, devices=2, time_limit="30m")  # ends before the head can start: it backfills
    return running, head, long, short


def test_a_short_job_backfills_and_a_long_one_does_not_delay_the_head(world: World) -> None:
    w = world
    _, head, long, short = backfill_world(w)
    w.scheduler.tick()
    assert [state(w, j) for j in (head, long, short)] == ["pending", "pending", "placed"]
    assert "reserved to start by" in show(w, head)["state_reason"]
    assert f"job {head} is next" in show(w, long)["state_reason"]


def test_without_backfill_first_come_first_tried_lets_the_long_job_through(world: World) -> None:
    w = world
    w.scheduler.queue_policy = "fifo"
    _, head, long, short = backfill_world(w)
    w.scheduler.tick()
    assert [state(w, j) for j in (head, long, short)] == ["pending", "placed", "pending"]


def post_prices(w: World) -> None:
    w.scheduler.heartbeat_timeout_ms = 100 * 24 * HOUR  # the clock jumps hours; no node should look lost
    # p1 (s1, core, yangtze-delta): a flat 900 fen/du; p2 (s2, hub, guizhou): 1000 at peak, 300 off-peak
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    assert w.call("prov2", "PUT", "/v1/prices/p2", json={
        "base_fen_per_du": 1000, "bands": [{"name": "peak", "start": "08:00", "end": "22:00"},
                                           {"name": "off-peak", "start": "22:00", "end": "08:00"}],
        "rules": [{"fen_per_du": 300, "band": "off-peak"}]}).status_code == 200


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def test_a_deferred_job_starts_in_the_cheap_band_at_the_hub(world: World) -> None:
    w = world
    post_prices(w)
    w.register_node("prov1", "s1", "n1", devices=t4(1))
    w.register_node("prov2", "s2", "n2", devices=t4(1))
    now = w.clock.now_ms()  # 16:00 at UTC+8; off-peak starts at 22:00, six hours on
    job = submit(w, time_limit="2h", deadline=iso(now + 24 * HOUR))
    w.scheduler.tick()
    shown = show(w, job)
    assert shown["state"] == "pending"
    assert "deferred to 2027-01-15 22:00 UTC+8 (off-peak) at s2" in shown["state_reason"]
    assert "must start by 2027-01-16 14:00 UTC+8" in shown["state_reason"]
    with w.db.sessions() as session:
        events = session.scalars(select(JobEvent.reason).where(JobEvent.job_id == job)).all()
    assert any(r.startswith("deferred to") for r in events)
    w.clock.advance(6 * HOUR - 60_000)
    w.scheduler.tick()
    assert state(w, job) == "pending"
    w.clock.advance(60_000)
    w.scheduler.tick()
    shown = show(w, job)
    assert shown["state"] == "placed" and shown["site"] == "s2"


def test_no_deferred_job_misses_its_deadline_when_capacity_exists(world: World) -> None:
    w = world
    post_prices(w)
    w.register_node("prov1", "s1", "n1", devices=t4(4))
    w.register_node("prov2", "s2", "n2", devices=t4(4))
    start = w.clock.now_ms()
    # (deadline after now, time limit): some wait for 22:00, some cannot, one uses a partial trough
    wants = [(24, "2h"), (5, "2h"), (7, "2h"), (30, "8h"), (14, "10h"), (40, "1h"), (6, "4h"), (9, "3h")]
    jobs = {submit(w, time_limit=limit, deadline=iso(start + hours * HOUR)): (hours, int(limit[:-1]))
            for hours, limit in wants}
    deferred: set[int] = set()
    for _ in range(41):  # every start a plan can choose falls on a whole hour here
        w.scheduler.tick()
        with w.db.sessions() as session:
            deferred.update(session.scalars(select(Job.id).where(Job.state_reason.startswith("deferred to"))))
        w.clock.advance(HOUR)
    assert len(deferred) >= 3
    with w.db.sessions() as session:
        rows = session.execute(select(Job.id, Job.placed_ms).where(Job.id.in_(jobs)))
        placed = {row.id: row.placed_ms for row in rows}
    for job, (hours, run_h) in jobs.items():
        assert placed[job] is not None, f"job {job} never started"
        assert placed[job] + run_h * HOUR <= start + hours * HOUR, f"job {job} would miss its deadline"


def test_fair_policy_puts_the_tenant_holding_fewer_devices_first(world: World) -> None:
    w = world
    w.scheduler.queue_policy = "fair"
    w.register_node("prov1", "s1", "n1", devices=t4(2))
    holding = submit(w, "alice")
    w.scheduler.tick()
    assert state(w, holding) == "placed"  # alpha now holds a device, beta none
    a, b = submit(w, "alice"), submit(w, "bob")
    w.scheduler.tick()
    assert (state(w, b), state(w, a)) == ("placed", "pending")


def test_an_unknown_queue_policy_is_refused() -> None:
    result = CliRunner().invoke(app, ["scheduler", "--queue-policy", "lifo"])
    assert result.exit_code == 2 and "unknown queue policy 'lifo'" in result.output
    with pytest.raises(ValueError, match="known: fifo, sjf, fair, multifactor"):
        Scheduler(db=None, policy=None, catalog=None, clock=ManualClock(), queue_policy="lifo")  # type: ignore[arg-type]
