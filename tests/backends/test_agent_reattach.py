"""A killed agent loses nothing: a new agent re-attaches to the running attempt instead of rerunning it."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from computegrid.agent.agent import Agent
from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.backends.local import LocalBackend
from computegrid.client import Client
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import bootstrap
from computegrid.services.clock import SystemClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database


def in_process_client(app: object, key: str) -> Client:
    client = Client("http://testserver", key)
    client.http = TestClient(app, headers={"Authorization": f"Bearer {key}"})  # type: ignore[arg-type]
    return client


def test_new_agent_reattaches_and_reports_once(db: Database, tmp_path: Path) -> None:
    clock = SystemClock()
    with db.transaction() as session:
        bootstrap.ensure_platform(session=session, now_ms=clock.now_ms(), site=bootstrap.LocalSite())
        keys = {user: bootstrap.key_for(session=session, user_name=user, existing=None, now_ms=clock.now_ms())[0]
                for user in (bootstrap.OPERATOR, bootstrap.AGENT_USER)}
    scheduler = Scheduler(db=db, policy=get_policy("first-fit"), catalog=default_catalog(), clock=clock)
    app = create_app(AppState(db=db, catalog=default_catalog(), clock=clock))
    user = in_process_client(app, keys[bootstrap.OPERATOR])
    runs, work = tmp_path / "runs", tmp_path / "work"

    first = Agent(in_process_client(app, keys[bootstrap.AGENT_USER]), LocalBackend(work), site="local",
                  node_name="n1")
    first.register()
    job = user.submit({"name": "long", "run": f"echo $COMPUTEGRID_JOB_ID >> {runs}; sleep 2; echo finished",
                       "resources": {"cpus": 0.5}})
    scheduler.tick()
    first.poll_once()
    deadline = time.monotonic() + 20
    while not runs.exists() or not runs.read_text().strip():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    first.poll_once()
    assert user.job(job["id"])["state"] == "running"

    # The first agent dies here, without shutdown. A new one starts with nothing but the work dir.
    second = Agent(in_process_client(app, keys[bootstrap.AGENT_USER]), LocalBackend(work), site="local",
                   node_name="n1")
    second.register()
    deadline = time.monotonic() + 30
    while user.job(job["id"])["state"] != "succeeded" and time.monotonic() < deadline:
        second.poll_once()
        time.sleep(0.2)
    shown = user.job(job["id"])
    assert shown["state"] == "succeeded" and shown["attempt"] == 1
    assert runs.read_text().split() == [str(job["id"])]
    assert "finished" in user.logs(job["id"])["data"]
    assert float(shown["usage"]["cpu_seconds"]) >= 1.0
