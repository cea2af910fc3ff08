"""The simulator and the live scheduler agree: one small trace, the same placements, start order and du.

The live side is the control plane as `computegrid up` assembles it (the FastAPI app over a migrated
database, `services.scheduler.Scheduler`, an agent registering its nodes and reporting through the agent
API), built in process as tests/backends/test_preemption.py builds it, with a `ManualClock`. A real
`computegrid up` subprocess cannot take a manual clock: it runs the scheduler and the agent on wall-clock
threads, so run times of minutes would take minutes and a start would land whenever a poll happens to
run. In process it is the same code path: `up` runs `Scheduler.run`, which calls `Scheduler.tick`
(`declare_lost`, `end_overdue_preemptions`, `place_pending`), the method called here once per event time;
the API app and the services are the same objects `up` creates.

Job completion is driven by the clock: the test plays the agent, reporting `running` when a job is placed
and, when the clock reaches start + run time, its usage intervals per device and `succeeded`. The agent
heartbeats at every step, so no node is ever declared lost. Events are handled as the simulator handles
them: at each event time, completions first, then arrivals (submissions), then one scheduler pass.

The simulator side is `sim.live_replay.replay_specs`: the same nodes and specs through the sim's event
engine and world, with requests built by the same core calls as the scheduler's.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.core.catalog import default_catalog
from computegrid.core.metering import UsageInterval, meter
from computegrid.core.placement import get_policy, typical_pods
from computegrid.services import bootstrap
from computegrid.services.clock import ManualClock
from computegrid.services.scheduler import Scheduler
from computegrid.sim.live_replay import LiveNode, SpecJob, replay_specs, request_for
from computegrid.store.db import Database
from computegrid.store.models import Job, UsageRecord
from tests.backends.test_agent_reattach import in_process_client

START_MS = 1_800_000_000_000
NODES = [
    LiveNode("n1", 16_000, 65_536, ("A100-80G",) * 4),
    LiveNode("n2", 8_000, 32_768, ("A10",) * 2),
]


def spec(name: str, accelerators: str, *, cpus: float = 1, workload: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "run": "true", "resources": {"accelerators": accelerators, "cpus": cpus,
                                                                      "memory_gb": 4}}
    if workload is not None:
        out["workload"] = workload
    return out


#: 6 jobs on 2 nodes: contention, a job that must wait for a completion, one that skips ahead of a waiting job,
#: and a job naming a workload (so the model preference applies)
TRACE = [
    SpecJob(0, 3_600_000, spec("a", "A100-80G|A10:2")),
    SpecJob(0, 1_800_000, spec("b", "A100-80G|A10:2", workload="ResNet-50 (batch size 64)")),
    SpecJob(60_000, 600_000, spec("c", "A100-80G:4")),
    SpecJob(120_000, 1_200_000, spec("d", "A10:1")),
    SpecJob(600_000, 300_000, spec("e", "A100-80G|A10:2")),
    SpecJob(700_000, 900_000, spec("f", "A100-80G|A10:1", cpus=2)),
]


def run_live(db: Database, policy_name: str) -> list[tuple[int, int, tuple[tuple[str, tuple[int, ...]], ...],
                                                             Fraction]]:
    """(job, start, placement, du) of every start through the live control plane, in start order."""
    catalog = default_catalog()
    clock = ManualClock(START_MS)
    with db.transaction() as session:
        bootstrap.ensure_platform(session=session, now_ms=clock.now_ms(), site=bootstrap.LocalSite())
        keys = {user: bootstrap.key_for(session=session, user_name=user, existing=None, now_ms=clock.now_ms())[0]
                for user in (bootstrap.OPERATOR, bootstrap.AGENT_USER)}
    app = create_app(AppState(db=db, catalog=catalog, clock=clock))
    user = in_process_client(app, keys[bootstrap.OPERATOR])
    agent = in_process_client(app, keys[bootstrap.AGENT_USER])
    node_ids = {n.name: agent.register_node(site="local", name=n.name, cpu_milli=n.cpu_milli, memory_mb=n.memory_mb,
                                            devices=[{"index": k, "model": m} for k, m in enumerate(n.models)])
                for n in NODES}
    name_of = {v: k for k, v in node_ids.items()}
    model_of = {(node_ids[n.name], k): m for n in NODES for k, m in enumerate(n.models)}
    policy = get_policy(policy_name, **({"typical": typical_pods([request_for(j.spec, catalog) for j in TRACE])}
                                        if policy_name == "default" else {}))
    scheduler = Scheduler(db=db, policy=policy, catalog=catalog, clock=clock)

    job_ids: list[int] = []
    running: dict[int, tuple[int, int, list[dict[str, Any]]]] = {}  # job id -> (end, attempt, assignments)
    starts = []
    arrivals = sorted({j.arrival_ms for j in TRACE})
    while arrivals or running:
        now = min(arrivals[:1] + [end for end, _, _ in running.values()])
        clock.t = START_MS + now
        for job_id in sorted(j for j, (end, _, _) in running.items() if end == now):  # completions first
            _, attempt, parts = running.pop(job_id)
            for part in parts:
                intervals = [{"device_index": k, "model": model_of[(part["node_id"], k)], "share_milli": 1000,
                              "start_ms": START_MS + now - TRACE[job_ids.index(job_id)].duration_ms,
                              "end_ms": START_MS + now} for k in part["device_indices"]]
                agent.report_usage(job_id, node_id=part["node_id"], attempt=attempt, intervals=intervals)
            agent.report_state(job_id, node_id=parts[0]["node_id"], attempt=attempt, state="succeeded", exit_code=0,
                               at_ms=START_MS + now)
        if arrivals and arrivals[0] == now:  # then arrivals, in trace order
            arrivals.pop(0)
            for job in TRACE:
                if job.arrival_ms == now:
                    job_ids.append(int(user.submit(job.spec)["id"]))
        for node_id in node_ids.values():
            agent.heartbeat(node_id)
        scheduler.tick()  # then one pass
        placed: dict[int, list[dict[str, Any]]] = {}
        for node_id in node_ids.values():
            for a in agent.heartbeat(node_id):
                if a["state"] == "placed":
                    placed.setdefault(a["job_id"], []).append(a)
        for job_id in sorted(placed):
            parts = sorted(placed[job_id], key=lambda a: a["rank"])
            agent.report_state(job_id, node_id=parts[0]["node_id"], attempt=parts[0]["attempt"], state="running",
                               at_ms=START_MS + now)
            index = job_ids.index(job_id)
            running[job_id] = (now + TRACE[index].duration_ms, parts[0]["attempt"], parts)
            starts.append((index, now, tuple((name_of[p["node_id"]], tuple(p["device_indices"])) for p in parts)))
    assert len(starts) == len(TRACE), "every job ran once"
    with db.reading() as session:
        usage = {job_id: meter([UsageInterval(u.model, u.share_milli, u.start_ms, u.end_ms) for u in
                                session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id))], catalog).du
                 for job_id in job_ids}
        states = {j.id: j.state for j in session.scalars(select(Job))}
    assert set(states.values()) == {"succeeded"}
    return [(index, start, where, usage[job_ids[index]] or Fraction(0)) for index, start, where in starts]


@pytest.mark.parametrize("policy", ["best-fit", "default"])
def test_sim_and_live_place_start_and_meter_alike(db: Database, tmp_path: Path, policy: str) -> None:
    live = run_live(db, policy)
    sim = [(r.job, r.start_ms, r.placement, r.du) for r in
           replay_specs(TRACE, NODES, policy=policy, typical=policy == "default")]
    assert [s[:2] for s in sim] == [s[:2] for s in live], "the same start order and start times"
    assert [s[2] for s in sim] == [s[2] for s in live], "the same nodes and device indices"
    assert [s[3] for s in sim] == [s[3] for s in live], "the same du"
    assert all(s[3] > 0 for s in sim)
    # the trace exercises waiting: some job starts after its arrival
    assert any(start > TRACE[job].arrival_ms for job, start, _, _ in sim)
