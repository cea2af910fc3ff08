"""Gangs run by several local agents of one site: every rank's output is kept, a lost rank requeues the
whole gang, the requeued attempt starts whatever agent sees it first, and an agent that returns after its
node was declared down stops what is no longer its."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from computegrid.agent.agent import Agent
from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.backends.base import FINISHED, EngineState
from computegrid.backends.local import LocalBackend
from computegrid.client import ApiError, Client
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import bootstrap
from computegrid.services.clock import ManualClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database
from computegrid.store.models import JobAllocation
from tests.backends.test_agent_reattach import in_process_client

TIMEOUT_MS = 30_000


@dataclass
class Grid:
    db: Database
    clock: ManualClock
    scheduler: Scheduler
    app: Any  # the FastAPI app, served in-process
    user: Client
    agent_key: str
    tmp: Path

    def agent(self, node: str) -> Agent:
        """An agent for one node of site `local`, with its own work dir (a fresh object each call: a restart)."""
        agent = Agent(in_process_client(self.app, self.agent_key), LocalBackend(self.tmp / node), site="local",
                      node_name=node)
        agent.register()
        return agent

    def silence(self, *quiet: Agent) -> None:
        """Let the heartbeat timeout pass for the `quiet` agents only: the others heartbeat just before."""
        self.clock.advance(TIMEOUT_MS + 1)
        for node_id in self.node_ids() - {n for a in quiet for n in a.node_ids.values()}:
            self.agent_client().heartbeat(node_id)

    def node_ids(self) -> set[int]:
        return {int(n["id"]) for n in self.user.nodes()}

    def agent_client(self) -> Client:
        return in_process_client(self.app, self.agent_key)

    def rank_node(self, job_id: int, attempt: int, rank: int) -> int:
        with self.db.reading() as session:
            node_id = session.scalar(select(JobAllocation.node_id).where(
                JobAllocation.job_id == job_id, JobAllocation.attempt == attempt, JobAllocation.rank == rank))
        assert node_id is not None
        return int(node_id)


@pytest.fixture
def grid(db: Database, tmp_path: Path) -> Grid:
    clock = ManualClock(start_ms=time.time_ns() // 1_000_000)
    with db.transaction() as session:
        bootstrap.ensure_platform(session=session, now_ms=clock.now_ms(), site=bootstrap.LocalSite())
        keys = {user: bootstrap.key_for(session=session, user_name=user, existing=None, now_ms=clock.now_ms())[0]
                for user in (bootstrap.OPERATOR, bootstrap.AGENT_USER)}
    scheduler = Scheduler(db=db, policy=get_policy("first-fit"), catalog=default_catalog(), clock=clock,
                          heartbeat_timeout_ms=TIMEOUT_MS)
    app = create_app(AppState(db=db, catalog=default_catalog(), clock=clock))
    return Grid(db, clock, scheduler, app, in_process_client(app, keys[bootstrap.OPERATOR]),
                keys[bootstrap.AGENT_USER], tmp_path)


def poll_until(agents: list[Agent], done: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        for agent in agents:
            agent.poll_once()
        time.sleep(0.05)


def gang(run: str) -> dict[str, object]:
    return {"name": "gang", "nodes": 2, "run": run, "resources": {"cpus": 0.25, "memory_gb": 0.05}}


def test_every_rank_output_is_kept_and_merged(grid: Grid) -> None:
    a, b = grid.agent("n1"), grid.agent("n2")
    job = grid.user.submit(gang('echo "hello from rank $COMPUTEGRID_NODE_RANK"; '
                                'if [ "$COMPUTEGRID_NODE_RANK" = 0 ]; then sleep 0.5; fi; echo bye'))
    grid.scheduler.tick()
    poll_until([a, b], lambda: grid.user.job(job["id"])["state"] == "succeeded", "the gang to succeed")
    poll_until([a, b], lambda: "bye" in grid.user.logs(job["id"], rank=1)["data"], "rank 1's last output")
    assert grid.user.logs(job["id"], rank=0)["data"] == "hello from rank 0\nbye\n"
    assert grid.user.logs(job["id"], rank=1)["data"] == "hello from rank 1\nbye\n"
    merged = grid.user.logs(job["id"])
    assert merged["rank"] is None and merged["ranks"] == [0, 1]
    assert sorted(merged["data"].splitlines()) == ["[rank 0] bye", "[rank 0] hello from rank 0",
                                                   "[rank 1] bye", "[rank 1] hello from rank 1"]
    # A follower reads from where it stopped; a rank the job does not have is a clear 4xx.
    assert grid.user.logs(job["id"], offset=len(merged["data"]))["data"] == ""
    with pytest.raises(ApiError) as bad:
        grid.user.logs(job["id"], rank=2)
    assert bad.value.status == 422 and "no rank 2" in bad.value.detail


def test_agent_cannot_ship_another_ranks_output(grid: Grid) -> None:
    a, b = grid.agent("n1"), grid.agent("n2")
    job = grid.user.submit(gang("sleep 5"))
    grid.scheduler.tick()
    node0 = grid.rank_node(job["id"], 1, 0)
    with pytest.raises(ApiError) as wrong:
        grid.agent_client().append_log(job["id"], node_id=node0, attempt=1, rank=1, offset=0, data="forged\n")
    assert wrong.value.status == 422 and "holds rank 0" in wrong.value.detail
    assert grid.user.logs(job["id"], rank=1)["data"] == ""
    for agent in (a, b):
        agent.shutdown()


def test_lost_rank_requeues_the_whole_gang_and_the_new_attempt_starts(grid: Grid) -> None:
    a, b, c = grid.agent("n1"), grid.agent("n2"), grid.agent("n3")
    job = grid.user.submit(gang('echo "attempt $COMPUTEGRID_ATTEMPT rank $COMPUTEGRID_NODE_RANK"; sleep 1.5'))
    grid.scheduler.tick()
    holders = {grid.rank_node(job["id"], 1, r) for r in (0, 1)}
    running = [x for x in (a, b, c) if set(x.node_ids.values()) <= holders]
    idle = next(x for x in (a, b, c) if x not in running)
    poll_until(running, lambda: grid.user.job(job["id"])["state"] == "running", "the gang to run")
    lost, survivor = running

    # One rank's node goes silent: the whole attempt is lost and requeued, and every allocation released.
    grid.silence(lost)
    grid.scheduler.declare_lost()
    assert grid.user.job(job["id"])["state"] == "pending"
    with grid.db.reading() as session:
        assert not session.scalars(select(JobAllocation).where(JobAllocation.job_id == job["id"],
                                                               JobAllocation.active.is_(True))).all()
    # The surviving rank's agent no longer sees the attempt and stops its rank.
    survivor.poll_once()
    engine_id = survivor.backend.engine_id(job["id"], 1)
    poll_until([survivor], lambda: survivor.backend.status(engine_id).state in FINISHED, "rank to stop")
    assert survivor.backend.status(engine_id).state == EngineState.CANCELLED

    # Attempt 2 lands on the two live nodes. Its leader starts first and reports it running; the follower
    # then sees a running attempt its engine never heard of, and must start its rank, not fail the gang.
    grid.scheduler.tick()
    assert grid.user.job(job["id"])["attempt"] == 2
    leader_node = grid.rank_node(job["id"], 2, 0)
    leader, follower = sorted((survivor, idle), key=lambda x: leader_node not in x.node_ids.values())
    poll_until([leader], lambda: grid.user.job(job["id"])["state"] == "running", "the leader to run")
    poll_until([leader, follower], lambda: grid.user.job(job["id"])["state"] == "succeeded", "attempt 2")
    poll_until([leader, follower], lambda: "rank 1" in grid.user.logs(job["id"], rank=1)["data"], "rank 1 logs")
    assert grid.user.logs(job["id"], rank=1)["data"] == "attempt 2 rank 1\n"
    assert grid.user.logs(job["id"], rank=0)["data"] == "attempt 2 rank 0\n"


def test_returning_agent_stops_attempts_no_longer_its(grid: Grid) -> None:
    a = grid.agent("n1")
    job = grid.user.submit({"name": "long", "run": "sleep 60", "resources": {"cpus": 0.25}})
    grid.scheduler.tick()
    poll_until([a], lambda: grid.user.job(job["id"])["state"] == "running", "the job to run")
    engine_id = a.backend.engine_id(job["id"], 1)

    # The agent dies (no shutdown); its node is declared down and the job requeued (nowhere to go yet).
    grid.silence(a)
    grid.scheduler.declare_lost()
    assert grid.user.job(job["id"])["state"] == "pending"
    assert a.backend.status(engine_id).state == EngineState.RUNNING  # the runner outlived its agent

    # A new agent on the same work dir comes back: the attempt is no longer assigned, so it is stopped,
    # although the engine still runs it and would let the agent re-attach.
    back = grid.agent("n1")
    back.poll_once()
    back.reap_orphans()
    poll_until([back], lambda: back.backend.status(engine_id).state in FINISHED, "the orphan to stop")
    assert back.backend.status(engine_id).state == EngineState.CANCELLED


def test_attempt_stopped_by_its_lease_is_reported_lost_and_requeued(grid: Grid) -> None:
    a = grid.agent("n1")
    a.lease_s = 0.3  # the runner stops 0.3 s after the last answered heartbeat
    job = grid.user.submit({"name": "long", "run": "sleep 60", "resources": {"cpus": 0.25}})
    grid.scheduler.tick()
    poll_until([a], lambda: grid.user.job(job["id"])["state"] == "running", "the job to run")
    engine_id = a.backend.engine_id(job["id"], 1)
    # The agent stays silent (a pause, a partition) longer than its lease, not yet past the server's timeout.
    poll_until([], lambda: a.backend.status(engine_id).state in FINISHED, "the runner to stop itself")
    a.poll_once()
    shown = grid.user.job(job["id"])
    assert shown["state"] == "pending" and shown["attempt"] == 1
    reasons = [e["reason"] for e in grid.user.events(job["id"])]
    assert "stopped: lease expired" in reasons[-2] and "requeued" in reasons[-1]


def test_an_agent_without_a_lease_lifts_an_expired_one_left_in_its_folder(grid: Grid) -> None:
    first = grid.agent("n1")
    first.lease_s = 0.2
    first.poll_once()  # writes a lease that expires 0.2 s later
    time.sleep(0.3)
    a = Agent(in_process_client(grid.app, grid.agent_key), LocalBackend(grid.tmp / "n1"), site="local",
              node_name="n1")  # restarted without --lease, as `computegrid up` runs it, on the same folder
    a.register()
    job = grid.user.submit({"name": "short", "run": "sleep 1; echo finished", "resources": {"cpus": 0.25}})
    grid.scheduler.tick()
    poll_until([a], lambda: grid.user.job(job["id"])["state"] in ("succeeded", "failed", "pending"),
               "the job to end")
    assert grid.user.job(job["id"])["state"] == "succeeded", grid.user.events(job["id"])
