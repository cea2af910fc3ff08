"""One full pass of the live scheduler over a large queue on PostgreSQL: queue order, backfill reservation,
placement and commits.

Builds a fresh schema (dropped at the end) with `--nodes` nodes of 8 devices (T4 and V100 in turn) over
10 sites, some of the pool busy with running jobs that have time limits, and `--jobs` pending jobs of
1, 2, 4 or 8 whole devices with time limits from 10 minutes to 8 hours, from 20 tenants of different
fair shares and a mix of priority classes. Then runs `Scheduler.place_pending()` once with the
`multifactor` queue (batch = every pending job), unbounded in time unless `--max-pass-s` is given, and
reports the time of each phase and of the pass.

    .venv/bin/python benchmarks/scheduler_pass.py                       # 100,000 jobs on 10,000 nodes
    .venv/bin/python benchmarks/scheduler_pass.py --jobs 2000 --nodes 200  # a quick run

Phases are timed by wrapping the scheduler's own steps (`load_queue_pass`, `load_pool`, the placement
policy, `_persist_many`, `_write_reasons`), so the figures add up to the pass. Output: a table, then one
JSON object per line ({"bench": "scheduler_pass", "metric": ..., "value": ...}).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine, insert, text

from computegrid.core import scheduling_pass
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import queue_state
from computegrid.services import scheduler as scheduler_module
from computegrid.services.clock import ManualClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database
from computegrid.store.migrate import upgrade
from computegrid.store.models import Device, Job, JobAllocation, Node, Provider, Site, Tenant, User

BENCH = "scheduler_pass"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
NOW = 1_800_000_000_000
DEVICES_PER_NODE = 8
MODELS = ("T4", "V100-32G")
LIMITS_S = (600, 1800, 3600, 4 * 3600, 8 * 3600)


def spec_json(devices: int, model: str, limit_s: int) -> str:
    return json.dumps({"name": "bench", "resources": {"cpus": 1.0, "memory_gb": 4.0,
                                                      "accelerators": f"{model}:{devices}"},
                       "nodes": 1, "interruptible": False, "requeue_on_lost": True, "max_attempts": 3,
                       "run": "true", "time_limit": limit_s})


def populate(db: Database, jobs: int, nodes: int, busy_fraction: float) -> None:
    """Tenants, sites, nodes, devices, running jobs on part of the pool, and the pending jobs, in bulk."""
    with db.engine.begin() as conn:
        conn.execute(insert(Provider), [{"id": 1, "name": "prov", "created_ms": NOW}])
        conn.execute(insert(Tenant), [{"id": t, "name": f"t{t}", "created_ms": NOW, "fair_share": 1 + t % 4}
                                      for t in range(1, 21)])
        conn.execute(insert(User), [{"id": 1, "name": "u", "role": "tenant", "tenant_id": 1, "created_ms": NOW}])
        conn.execute(insert(Site), [{"id": s, "provider_id": 1, "name": f"site{s}", "region": "guizhou",
                                     "tier": "hub", "backend": "local", "electricity_fen_per_kwh": 35,
                                     "created_ms": NOW, "capabilities": ""} for s in range(1, 11)])
        conn.execute(insert(Node), [{"id": n, "site_id": 1 + n % 10, "name": f"n{n}", "cpu_milli": 64_000,
                                     "memory_mb": 512 * 1024, "state": "up", "registered_ms": NOW,
                                     "last_heartbeat_ms": NOW} for n in range(1, nodes + 1)])
        conn.execute(insert(Device), [{"node_id": n, "index": i, "model": MODELS[n % 2], "memory_gb": 32,
                                       "source": "detected", "health": "ok", "updated_ms": NOW}
                                      for n in range(1, nodes + 1) for i in range(DEVICES_PER_NODE)])
        busy = int(nodes * busy_fraction)
        running = [{"id": n, "tenant_id": 1 + n % 20, "user_id": 1, "name": "busy", "state": "running",
                    "spec": spec_json(DEVICES_PER_NODE, MODELS[n % 2], LIMITS_S[n % len(LIMITS_S)]),
                    "state_reason": "", "attempt": 1, "submitted_ms": NOW - 3_600_000, "updated_ms": NOW,
                    "placed_ms": NOW - 600_000, "started_ms": NOW - 600_000, "priority_class": 1,
                    "package_priority": 0} for n in range(1, busy + 1)]
        if running:
            conn.execute(insert(Job), running)
            conn.execute(insert(JobAllocation), [
                {"job_id": n, "attempt": 1, "node_id": n, "rank": 0, "device_indices": "0,1,2,3,4,5,6,7",
                 "milli_per_device": 1000, "cpu_milli": 1000, "memory_mb": 4096, "active": True}
                for n in range(1, busy + 1)])
        rows = []
        for j in range(jobs):
            devices = (1, 2, 4, 8)[j % 4]
            rows.append({"id": busy + 1 + j, "tenant_id": 1 + j % 20, "user_id": 1, "name": "bench",
                         "state": "pending", "spec": spec_json(devices, MODELS[j % 2], LIMITS_S[j % len(LIMITS_S)]),
                         "state_reason": "", "attempt": 0, "submitted_ms": NOW - (jobs - j) * 10,
                         "updated_ms": NOW, "priority_class": (1, 1, 0, 2)[j % 4], "package_priority": 0})
            if len(rows) == 10_000:
                conn.execute(insert(Job), rows)
                rows = []
        if rows:
            conn.execute(insert(Job), rows)
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('jobs', 'id'), (SELECT max(id) FROM jobs))"))
            conn.execute(text("ANALYZE"))


class Phases:
    """Wall time per phase, by wrapping functions the pass calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1
        return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="pending jobs (default 100,000)")
    parser.add_argument("--nodes", type=int, default=10_000, help="nodes of 8 devices (default 10,000)")
    parser.add_argument("--busy", type=float, default=0.3, help="share of nodes held by running jobs (0.3)")
    parser.add_argument("--policy", default="first-fit", help="placement policy (default first-fit)")
    parser.add_argument("--max-pass-s", type=float, default=None,
                        help="bound the pass as the live scheduler does (Scheduler.max_pass_s); default: unbounded")
    parser.add_argument("--pg-url", default=os.environ.get("COMPUTEGRID_TEST_DATABASE_URL", PG_DEFAULT))
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.nodes < 1 or not 0 <= args.busy < 1:
        parser.error("--jobs and --nodes must be positive and --busy in [0, 1)")
    schema = f"cg_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(args.pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in args.pg_url else "?"
    db = Database(f"{args.pg_url}{sep}options=-csearch_path%3D{schema}")
    try:
        upgrade(db.engine)
        started = time.perf_counter()
        populate(db, args.jobs, args.nodes, args.busy)
        setup_s = time.perf_counter() - started
        print(f"setup: {args.nodes:,} nodes, {args.jobs:,} pending jobs in {setup_s:.1f} s", file=sys.stderr)
        phases = Phases()
        sched = Scheduler(db=db, policy=get_policy(args.policy), catalog=default_catalog(), clock=ManualClock(NOW),
                          batch=args.jobs, rtt_from_db=False, queue_policy="multifactor", max_pass_s=args.max_pass_s)
        sched.policy.place = phases.wrap("placement", sched.policy.place)  # type: ignore[method-assign]
        sched._persist_many = phases.wrap("commit", sched._persist_many)  # type: ignore[method-assign]
        sched._write_reasons = phases.wrap("reasons", sched._write_reasons)  # type: ignore[method-assign]
        patched = {(scheduler_module, "load_queue_pass"): "queue order", (scheduler_module, "load_pool"): "pool load",
                   (scheduling_pass, "head_reservation"): "reservation", (scheduler_module, "load_pass"): "market",
                   (scheduler_module, "plan_deferrals"): "deferral", (queue_state, "order_pending"): "order (core)"}
        saved = {key: getattr(*key) for key in patched}
        for (module, name), phase in patched.items():
            setattr(module, name, phases.wrap(phase, getattr(module, name)))
        try:
            started = time.perf_counter()
            result = sched.place_pending()
            pass_s = time.perf_counter() - started
        finally:
            for (module, name), fn in saved.items():
                setattr(module, name, fn)
        print(f"{'phase':<16}{'seconds':>10}{'calls':>10}")
        for name, secs in sorted(phases.seconds.items(), key=lambda kv: -kv[1]):
            print(f"{name:<16}{secs:>10.3f}{phases.calls[name]:>10,}")
        accounted = sum(s for n, s in phases.seconds.items() if n != "order (core)")
        print(f"{'other':<16}{pass_s - accounted:>10.3f}")
        print(f"{'pass':<16}{pass_s:>10.3f}   placed {result.placed:,}, waiting {result.waiting:,}")
        figures = {"pass_s": round(pass_s, 3), "placed": result.placed, "waiting": result.waiting,
                   "max_pass_s": args.max_pass_s,
                   "placements_per_s": round(result.placed / pass_s, 1) if pass_s > 0 else None,
                   "jobs": args.jobs, "nodes": args.nodes, "setup_s": round(setup_s, 1),
                   **{f"{name.replace(' ', '_').replace('(', '').replace(')', '')}_s": round(s, 3)
                      for name, s in phases.seconds.items()}}
        for metric, value in figures.items():
            print(json.dumps({"bench": BENCH, "db": "postgres", "metric": metric, "value": value}))
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
