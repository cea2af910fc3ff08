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

The second test is the live queue pass (queue policy `multifactor`, EASY backfill, deadline deferral over
posted prices, latency routing, whole gangs, price limits) against `sim.live_queue.replay_specs_queued`,
on a trace of three tenants with different fair shares at two sites in two regions, set up through the API
as an operator, tenants and providers would. Besides completions and arrivals, its event times are the
instants at which one of `up`'s periodic passes can start a job with nothing else changed: a deferred job's
planned start, and the moment a waiting job's deadline becomes due.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.core.backfill import DEADLINE_SLACK_MS
from computegrid.core.catalog import default_catalog
from computegrid.core.deferral import PostedTariff
from computegrid.core.jobs import parse_job_spec
from computegrid.core.metering import UsageInterval, meter
from computegrid.core.placement import get_policy, typical_pods
from computegrid.core.regions import default_rtt
from computegrid.services import bootstrap
from computegrid.services.billing.prices import DEFAULT_UTC_OFFSET_MIN, schedule_from_json
from computegrid.services.clock import ManualClock
from computegrid.services.scheduler import Scheduler
from computegrid.sim.live_queue import QueueSettings, replay_specs_queued
from computegrid.sim.live_replay import LiveNode, SpecJob, replay_specs, request_for
from computegrid.sim.pools import Site
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


# -- The second trace: the live queue pass (multifactor order, EASY backfill, deadline deferral, latency routing,
# whole gangs, price limits) on two sites in two regions, against sim.live_queue.replay_specs_queued.

MINUTE = 60_000
HOUR = 60 * MINUTE  # START_MS is 16:00 at UTC+8: the hub's off-peak band starts six hours on
EAST = Site("east", "yangtze-delta", "core", 60.0)  # provider p1, a flat 900 fen/du
HUB = Site("hub", "guizhou", "hub", 35.0)  # provider p2, 1000 fen/du from 08:00 to 22:00 (UTC+8), 300 off-peak
PROVIDERS = {"p1": (EAST, {"base_fen_per_du": 900}),
             "p2": (HUB, {"base_fen_per_du": 1000, "rules": [{"fen_per_du": 300, "band": "off-peak"}],
                          "bands": [{"name": "peak", "start": "08:00", "end": "22:00"},
                                    {"name": "off-peak", "start": "22:00", "end": "08:00"}]})}
QUEUE_POLICY = "default"  # the placement policy `computegrid up` runs by default
#: in registration order (the pool's order)
QUEUE_NODES = [(EAST, LiveNode(name, 16_000, 65_536, ("T4",) * 4)) for name in ("e1", "e2")] + \
              [(HUB, LiveNode(name, 16_000, 65_536, ("T4",) * 4)) for name in ("h1", "h2")]
#: tenant -> (fair-share weight, priority classes it may use), set through PATCH /v1/tenants/{name}
TENANTS = {"alpha": (1, ["low", "normal"]), "beta": (2, ["low", "normal", "high"]), "gamma": (8, ["low", "normal"])}
SHARES = {bootstrap.DEFAULT_TENANT: 1, **{name: share for name, (share, _) in TENANTS.items()}}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def queued(at_min: int, run_min: int, tenant: str, name: str, accelerators: str, *, limit_min: int,
           priority: str = "normal", **extra: Any) -> tuple[str, SpecJob]:
    spec = {"name": name, "run": "true", "priority": priority, "time_limit": f"{limit_min}m",
            "resources": {"accelerators": accelerators, "cpus": 1, "memory_gb": 4}, **extra}
    return tenant, SpecJob(START_MS + at_min * MINUTE, run_min * MINUTE, spec)


#: 13 jobs of three tenants on 16 T4s (four nodes, two sites), times in minutes from 16:00 UTC+8:
QUEUE_TRACE = [
    # near: may run only within 16 ms of greater-bay, so at the hub (guizhou, 15 ms), not east (17 ms)
    queued(0, 90, "beta", "near", "T4:2", limit_min=120,
           placement={"user_region": "greater-bay", "max_rtt_ms": 16}),
    queued(0, 120, "alpha", "j0", "T4:4", limit_min=120),
    queued(0, 180, "alpha", "j1", "T4:4", limit_min=180),
    queued(0, 60, "gamma", "gang", "T4:2", limit_min=60, nodes=2),  # east is full by then: both members at the hub
    # a day to finish a 2 h run: waits for 22:00, off-peak at the hub (300 fen/du against 900 east)
    queued(0, 120, "beta", "cheap", "T4:1", limit_min=120, deadline=iso(START_MS + 24 * HOUR)),
    queued(5, 60, "alpha", "low4", "T4:4", limit_min=60, priority="low"),
    # the hub's free devices cost 1000 fen/du until 22:00: capped waits for east
    queued(5, 60, "beta", "capped", "T4:1", limit_min=60, max_price_fen_per_du=950),
    # at 00:10 nothing has 4 free: high4 heads the queue with a reservation for 01:00 (when the gang ends);
    # long2 would fit now but hold h2 past then (refused); short2 ends by then (backfills)
    queued(10, 90, "beta", "high4", "T4:4", limit_min=90, priority="high"),
    queued(10, 120, "alpha", "long2", "T4:2", limit_min=120),
    queued(10, 30, "alpha", "short2", "T4:2", limit_min=30, priority="low"),
    # refused at 00:41 (it would delay high4); must start by 01:10, so due at 00:55, when it outranks high4
    queued(41, 30, "gamma", "due", "T4:2", limit_min=30, deadline=iso(START_MS + 100 * MINUTE)),
    # both wait for near's 2 devices (01:30); gamma has used more than alpha, but its share is 8 to alpha's 1
    queued(70, 60, "alpha", "a2", "T4:2", limit_min=60),
    queued(71, 60, "gamma", "g2", "T4:2", limit_min=60),
]
NAMES = [job.spec["name"] for _, job in QUEUE_TRACE]
Start = tuple[int, int, tuple[tuple[str, tuple[int, ...]], ...], Fraction]
Trace = list[tuple[str, SpecJob]]


def run_live_queue(db: Database, trace: Trace, policy: str) -> tuple[list[Start], dict[int, list[str]]]:
    """(job, start, placement, du) of every start through the live control plane, in start order (the jobs of
    one pass by job), and per job the reasons it was given (events, and why it waited after each pass, with
    other jobs named by trace index as `job #i`). Everything is set up through the API as an operator,
    tenants and providers would; the scheduler runs with its defaults (queue policy `multifactor`)."""
    catalog = default_catalog()
    clock = ManualClock(START_MS)
    with db.transaction() as session:
        bootstrap.ensure_platform(session=session, now_ms=clock.now_ms(), site=bootstrap.LocalSite())
        key = bootstrap.key_for(session=session, user_name=bootstrap.OPERATOR, existing=None, now_ms=clock.now_ms())[0]
    app = create_app(AppState(db=db, catalog=catalog, clock=clock))
    operator = in_process_client(app, key)
    users = {}
    for tenant, (share, classes) in TENANTS.items():
        operator.create_tenant(tenant)
        operator.set_tenant_limits(tenant, fair_share=share, priority_classes=classes)
        users[tenant] = in_process_client(app, operator.create_user(f"{tenant}-user", "tenant",
                                                                     tenant=tenant)["api_key"])
    assert {t["name"]: t["fair_share"] for t in operator.tenants()} == SHARES  # the sim's share table
    agents = {}
    for provider, (site, schedule) in PROVIDERS.items():
        operator.create_provider(provider)
        operator.create_site(site.name, region=site.region, tier=site.tier,
                             electricity_fen_per_kwh=site.electricity_fen_per_kwh, provider=provider)
        agents[site.name] = in_process_client(app, operator.create_user(f"{provider}-agent", "provider",
                                                                          provider=provider)["api_key"])
        agents[site.name].set_prices(provider, schedule)
    node_ids = {n.name: agents[site.name].register_node(
        site=site.name, name=n.name, cpu_milli=n.cpu_milli, memory_mb=n.memory_mb,
        devices=[{"index": k, "model": m} for k, m in enumerate(n.models)]) for site, n in QUEUE_NODES}
    agent_of = {node_ids[n.name]: agents[site.name] for site, n in QUEUE_NODES}
    name_of = {v: k for k, v in node_ids.items()}
    model_of = {(node_ids[n.name], k): m for _, n in QUEUE_NODES for k, m in enumerate(n.models)}
    scheduler = Scheduler(db=db, policy=get_policy(policy), catalog=catalog, clock=clock)
    assert scheduler.queue_policy == "multifactor"
    jobs = [job for _, job in trace]

    job_ids: list[int] = []
    running: dict[int, tuple[int, int, list[dict[str, Any]]]] = {}  # job id -> (end, attempt, assignments)
    starts: list[tuple[int, int, tuple[tuple[str, tuple[int, ...]], ...]]] = []
    arrivals = sorted({j.arrival_ms for j in jobs})
    # `up` passes every few seconds; with nothing else changed, a pass can start a deferred job (at its planned
    # start) or a job whose deadline became due (see core.backfill.deadline_due): the loop wakes at those times
    wakes: set[int] = set()
    due = {i: spec.deadline_ms - spec.time_limit_s * 1000 - DEADLINE_SLACK_MS for i, job in enumerate(jobs)
           if (spec := parse_job_spec(job.spec, catalog)).deadline_ms is not None and spec.time_limit_s is not None}
    waits: dict[int, set[str]] = {}
    while arrivals or running or wakes:
        now = min(arrivals[:1] + [end for end, _, _ in running.values()] + list(wakes))
        clock.t = now
        wakes.discard(now)
        for job_id in sorted(j for j, (end, _, _) in running.items() if end == now):  # completions first
            _, attempt, parts = running.pop(job_id)
            for part in parts:
                node = part["node_id"]
                intervals = [{"device_index": k, "model": model_of[(node, k)], "share_milli": 1000,
                              "start_ms": now - jobs[job_ids.index(job_id)].duration_ms, "end_ms": now}
                             for k in part["device_indices"]]
                agent_of[node].report_usage(job_id, node_id=node, attempt=attempt, intervals=intervals)
            agent_of[parts[0]["node_id"]].report_state(job_id, node_id=parts[0]["node_id"], attempt=attempt,
                                                       state="succeeded", exit_code=0, at_ms=now)
        if arrivals and arrivals[0] == now:  # then arrivals, in trace order
            arrivals.pop(0)
            for tenant, job in trace:
                if job.arrival_ms == now:
                    job_ids.append(int(users[tenant].submit(job.spec)["id"]))
        for node_id, agent in agent_of.items():
            agent.heartbeat(node_id)
        scheduler.tick()  # then one pass
        wakes.update(p.start_ms for p in scheduler._queue_cache.plans.values() if p is not None and p.start_ms > now)
        started = {index for index, _, _ in starts}
        wakes.update(at for i, at in due.items() if at > now and i < len(job_ids) and i not in started)
        for shown in operator.jobs(state="pending"):
            waits.setdefault(int(shown["id"]), set()).add(shown["state_reason"])
        placed: dict[int, list[dict[str, Any]]] = {}
        for node_id, agent in agent_of.items():
            for a in agent.heartbeat(node_id):
                if a["state"] == "placed":
                    placed.setdefault(a["job_id"], []).append(a)
        for job_id in sorted(placed):
            parts = sorted(placed[job_id], key=lambda a: a["rank"])
            agent_of[parts[0]["node_id"]].report_state(job_id, node_id=parts[0]["node_id"],
                                                       attempt=parts[0]["attempt"], state="running", at_ms=now)
            index = job_ids.index(job_id)
            running[job_id] = (now + jobs[index].duration_ms, parts[0]["attempt"], parts)
            starts.append((index, now, tuple((name_of[p["node_id"]], tuple(p["device_indices"])) for p in parts)))
    assert len(starts) == len(jobs), "every job ran once"
    with db.reading() as session:
        usage = {job_id: meter([UsageInterval(u.model, u.share_milli, u.start_ms, u.end_ms) for u in
                                session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id))], catalog).du
                 for job_id in job_ids}
        assert {j.state for j in session.scalars(select(Job))} == {"succeeded"}
    def by_index(reason: str) -> str:
        return re.sub(r"job (\d+)", lambda m: f"job #{job_ids.index(int(m.group(1)))}", reason)

    reasons = {i: [by_index(r) for r in [*(e["reason"] for e in operator.events(job_id)), *waits.get(job_id, ())]]
               for i, job_id in enumerate(job_ids)}
    return [(index, start, where, usage[job_ids[index]] or Fraction(0)) for index, start, where in starts], reasons


def replay_queue_trace(trace: Trace, policy: str, shares: dict[str, int]) -> list[Start]:
    posted = {site.name: PostedTariff(site.tier, schedule_from_json(provider, schedule), DEFAULT_UTC_OFFSET_MIN)
              for provider, (site, schedule) in PROVIDERS.items()}
    runs = replay_specs_queued([job for _, job in trace], [n for _, n in QUEUE_NODES], policy=policy,
                               settings=QueueSettings(shares=shares, posted=posted, rtt=default_rtt()),
                               tenants=[tenant for tenant, _ in trace],
                               node_sites=[site for site, _ in QUEUE_NODES])
    return [(r.job, r.start_ms, r.placement, r.du) for r in runs]


def test_the_live_queue_and_its_replay_order_defer_route_and_place_gangs_alike(db: Database) -> None:
    live, reasons = run_live_queue(db, QUEUE_TRACE, QUEUE_POLICY)
    sim = replay_queue_trace(QUEUE_TRACE, QUEUE_POLICY, SHARES)
    assert [s[:2] for s in sim] == [s[:2] for s in live], "the same start order and start times"
    assert [s[2] for s in sim] == [s[2] for s in live], "the same nodes and device indices"
    assert [s[3] for s in sim] == [s[3] for s in live], "the same du"
    assert all(s[3] > 0 for s in sim)

    # the trace exercised each feature
    start = {NAMES[job]: at - START_MS for job, at, _, _ in live}
    where = {NAMES[job]: placement for job, _, placement, _ in live}
    site_of = {n.name: site for site, n in QUEUE_NODES}

    def sites(name: str) -> set[Site]:
        return {site_of[node] for node, _ in where[name]}

    def said(name: str, text: str) -> bool:
        return any(text in reason for reason in reasons[NAMES.index(name)])

    # latency: the hub, though east had room when near was placed (j0 took east in the same pass)
    assert sites("near") == {HUB} and start["j0"] == start["near"] == 0 and sites("j0") == {EAST}
    # the gang's two members on two nodes of one site
    assert len(where["gang"]) == 2 and len({node for node, _ in where["gang"]}) == 2 and len(sites("gang")) == 1
    # deferral: the 2 h job with a day to go waited for 22:00 off-peak at the hub (so met its deadline)
    assert start["cheap"] == 6 * HOUR and sites("cheap") == {HUB}
    assert said("cheap", "(off-peak) at hub, where the run costs least")
    # class: high4 (00:10) started before low4 (00:05), which came earlier
    assert start["high4"] < start["low4"]
    # EASY backfill: short2 ran at once behind high4's reservation; long2 was refused, not to delay high4
    assert start["short2"] == 10 * MINUTE and start["short2"] + 30 * MINUTE <= start["high4"]
    assert start["long2"] > 10 * MINUTE
    assert said("long2", f"waiting: job #{NAMES.index('high4')} is next, reserved to start by 2027-01-15 17:00 UTC+8; "
                         "starting this job now would delay it")
    # a deadline due outranks the head: due (refused at 00:41) started at its latest start - 15 min
    assert said("due", f"job #{NAMES.index('high4')} is next")
    assert start["due"] == 70 * MINUTE - DEADLINE_SLACK_MS and start["due"] < start["high4"]
    # price limit: capped waited for east, though a hub device (1000 fen/du at peak) was free when it came
    assert sites("capped") == {EAST} and start["capped"] > start["short2"] > 5 * MINUTE
    assert said("capped", "price (want <= 950 fen/du) excluded 2 nodes")
    # fair share: g2 came after a2, with the same class, and went first: gamma's weight of 8 outweighs its
    # larger usage; with equal weights alpha, which had used less, goes first
    assert start["g2"] < start["a2"]
    equal_shares = replay_queue_trace(QUEUE_TRACE, QUEUE_POLICY, dict.fromkeys(SHARES, 1))
    equal = {NAMES[job]: at for job, at, _, _ in equal_shares}
    assert equal["a2"] < equal["g2"]
