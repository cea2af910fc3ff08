"""Preemption of interruptible work, end to end through the agent and the local engine: the attempt is
SIGTERM-signalled, stops, is requeued as a new attempt, and its usage covers only the time it ran."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from computegrid.agent.agent import Agent
from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.backends.local import LocalBackend
from computegrid.client import Client
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import bootstrap, jobs
from computegrid.services.clock import SystemClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database
from computegrid.store.models import Job, UsageRecord
from tests.backends.test_agent_reattach import in_process_client

TRAPS_TERM = ("trap 'echo checkpointed-on-term; exit 143' TERM; echo started-$COMPUTEGRID_ATTEMPT; "
              "sleep 60 & wait")


def platform(db: Database, tmp_path: Path) -> tuple[Client, Agent, Scheduler]:
    clock = SystemClock()
    with db.transaction() as session:
        bootstrap.ensure_platform(session=session, now_ms=clock.now_ms(), site=bootstrap.LocalSite())
        keys = {user: bootstrap.key_for(session=session, user_name=user, existing=None, now_ms=clock.now_ms())[0]
                for user in (bootstrap.OPERATOR, bootstrap.AGENT_USER)}
    app = create_app(AppState(db=db, catalog=default_catalog(), clock=clock))
    agent = Agent(in_process_client(app, keys[bootstrap.AGENT_USER]), LocalBackend(tmp_path / "work"), site="local",
                  node_name="n1")
    agent.register()
    scheduler = Scheduler(db=db, policy=get_policy("first-fit"), catalog=default_catalog(), clock=clock)
    return in_process_client(app, keys[bootstrap.OPERATOR]), agent, scheduler


def drive(agent: Agent, scheduler: Scheduler, user: Client, job_id: int, until: str, *, attempt: int,
          timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        scheduler.tick()
        agent.poll_once()
        shown = user.job(job_id)
        if shown["state"] == until and shown["attempt"] == attempt:
            return
        assert time.monotonic() < deadline, f"job never reached {until} on attempt {attempt}: {shown}"
        time.sleep(0.1)


def preempt(db: Database, job_id: int, notice_ms: int) -> None:
    with db.transaction() as session:
        job = session.get(Job, job_id)
        assert job is not None
        jobs.preempt(session, job, "an on-demand buyer takes the device", SystemClock().now_ms(), notice_ms)


def test_a_preempted_job_is_signalled_requeued_and_metered_only_while_it_ran(db: Database, tmp_path: Path) -> None:
    user, agent, scheduler = platform(db, tmp_path)
    job = user.submit({"name": "spot", "run": TRAPS_TERM, "interruptible": True, "resources": {"cpus": 0.5}})
    drive(agent, scheduler, user, job["id"], "running", attempt=1)
    time.sleep(1.0)
    preempt(db, job["id"], notice_ms=30_000)
    assert user.job(job["id"])["state"] == "preempting"
    stopped_at = time.time_ns() // 1_000_000
    drive(agent, scheduler, user, job["id"], "running", attempt=2)

    assert "checkpointed-on-term" in user.logs(job["id"], attempt=1)["data"]
    states = [e["to"] for e in user.events(job["id"])]
    assert states[:6] == ["pending", "placed", "running", "preempting", "pending", "placed"]
    with db.reading() as session:
        first = session.scalars(select(UsageRecord).where(UsageRecord.job_id == job["id"],
                                                          UsageRecord.attempt == 1)).all()
    assert len(first) == 1 and first[0].end_ms - first[0].start_ms >= 1000
    assert first[0].end_ms <= stopped_at + 5_000, "usage of the first attempt ends when it stopped"
    user.cancel(job["id"])
    drive(agent, scheduler, user, job["id"], "cancelled", attempt=2)


def test_an_attempt_that_outlives_its_notice_is_requeued_anyway(db: Database, tmp_path: Path) -> None:
    user, agent, scheduler = platform(db, tmp_path)
    job = user.submit({"name": "spot", "run": TRAPS_TERM, "interruptible": True, "resources": {"cpus": 0.5}})
    drive(agent, scheduler, user, job["id"], "running", attempt=1)
    preempt(db, job["id"], notice_ms=0)  # the agent does not hear of it before the notice ends
    time.sleep(0.01)
    scheduler.tick()
    shown = user.job(job["id"])
    assert shown["state"] in ("pending", "placed") and shown["attempt"] in (1, 2)
    assert "did not stop within its notice" in " ".join(e["reason"] for e in user.events(job["id"]))
    drive(agent, scheduler, user, job["id"], "running", attempt=2)
    assert "checkpointed-on-term" in user.logs(job["id"], attempt=1)["data"]  # the old attempt was stopped
    user.cancel(job["id"])
    drive(agent, scheduler, user, job["id"], "cancelled", attempt=2)


def test_a_finished_job_cannot_be_preempted(db: Database, tmp_path: Path) -> None:
    user, agent, scheduler = platform(db, tmp_path)
    job = user.submit({"name": "quick", "run": "true", "interruptible": True})
    drive(agent, scheduler, user, job["id"], "succeeded", attempt=1)
    try:
        preempt(db, job["id"], notice_ms=1000)
    except Exception as exc:  # InvalidTransition
        assert "succeeded" in str(exc)
    else:
        raise AssertionError("a finished job was preempted")
    assert user.job(job["id"])["state"] == "succeeded"
