"""Real jobs through the in-process agent and the local engine are charged for the du they ran.

The node declares one A100-80G (0.312 du per device-hour). The expected charge is worked
out here from the usage the agent reported, independently of the billing code.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

from sqlalchemy import select

from computegrid.agent.agent import Agent
from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.backends.base import InventoryDevice
from computegrid.backends.local import LocalBackend
from computegrid.client import Client
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import bootstrap, jobs
from computegrid.services.clock import SystemClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database
from computegrid.store.models import Job, UsageRecord
from tests.api.test_money_wallets import with_money_routes
from tests.backends.test_agent_reattach import in_process_client
from tests.backends.test_preemption import TRAPS_TERM, drive

A100_PFLOPS = Fraction(312, 1000)
MS_PER_HOUR = 3_600_000


def platform(db: Database, tmp_path: Path) -> tuple[Client, Agent, Scheduler]:
    clock = SystemClock()
    with db.transaction() as session:
        bootstrap.ensure_platform(session=session, now_ms=clock.now_ms(), site=bootstrap.LocalSite())
        keys = {user: bootstrap.key_for(session=session, user_name=user, existing=None, now_ms=clock.now_ms())[0]
                for user in (bootstrap.OPERATOR, bootstrap.AGENT_USER)}
    app = create_app(AppState(db=db, catalog=default_catalog(), clock=clock))
    with_money_routes(app)
    backend = LocalBackend(tmp_path / "work", declared=[InventoryDevice(0, "A100-80G", None, "declared")])
    agent = Agent(in_process_client(app, keys[bootstrap.AGENT_USER]), backend, site="local", node_name="n1")
    agent.register()
    scheduler = Scheduler(db=db, policy=get_policy("first-fit"), catalog=default_catalog(), clock=clock)
    return in_process_client(app, keys[bootstrap.OPERATOR]), agent, scheduler


def device_usage(db: Database, job_id: int, attempt: int) -> list[UsageRecord]:
    with db.reading() as session:
        return list(session.scalars(select(UsageRecord).where(UsageRecord.job_id == job_id,
                                                              UsageRecord.attempt == attempt,
                                                              UsageRecord.device_index >= 0)))


def expected(records: list[UsageRecord], fen_per_du: int, *, until_ms: int | None = None) -> tuple[Fraction, int]:
    """du = device-hours x 0.312 PFLOP/s x share; fen = du x price, rounded half up once."""
    du = Fraction(0)
    for r in records:
        end = r.end_ms if until_ms is None else min(r.end_ms, until_ms)
        du += Fraction(max(0, end - r.start_ms) * r.share_milli, 1000 * MS_PER_HOUR) * A100_PFLOPS
    return du, int(du * fen_per_du + Fraction(1, 2))  # floor(x + 1/2): half up


def fmt(du: Fraction) -> str:
    scaled = int(du * 10**6 + Fraction(1, 2))
    return f"{scaled // 10**6}.{scaled % 10**6:06d}"


def test_a_finished_real_job_is_charged_du_times_the_posted_price(db: Database, tmp_path: Path) -> None:
    user, agent, scheduler = platform(db, tmp_path)
    user.set_prices("local", {"base_fen_per_du": 1_000_000})  # a big price so a second's run costs whole fen
    job = user.submit({"name": "train", "run": "sleep 1", "resources": {"accelerators": "A100-80G:1", "cpus": 0.5}})
    drive(agent, scheduler, user, job["id"], "succeeded", attempt=1)
    (charge,) = user.charges(job_id=job["id"])
    records = device_usage(db, job["id"], 1)
    assert len(records) == 1 and records[0].end_ms - records[0].start_ms >= 1000
    du, fen = expected(records, 1_000_000)
    (line,) = charge["lines"]
    assert (line["model"], line["du"], line["gross_fen"]) == ("A100-80G", fmt(du), fen)
    assert fen >= 86  # at least 1 s: 0.312 / 3600 du x 1,000,000 fen/du = 86.7
    assert (charge["price_kind"], charge["status"], charge["tenant"]) == ("on-demand", "pending", "default")


def test_a_preempted_real_job_pays_its_spot_price_only_for_the_time_it_ran(db: Database, tmp_path: Path) -> None:
    user, agent, scheduler = platform(db, tmp_path)
    user.set_prices("local", {"base_fen_per_du": 2_000_000})
    job = user.submit({"name": "spot", "run": TRAPS_TERM, "interruptible": True,
                       "resources": {"accelerators": "A100-80G:1", "cpus": 0.5}})
    drive(agent, scheduler, user, job["id"], "running", attempt=1)
    with db.transaction() as session:  # as the market does when the spot auction clears
        row = session.get(Job, job["id"])
        assert row is not None
        row.price_kind, row.price_fen_per_du = "spot", 500_000
    time.sleep(1.0)
    with db.transaction() as session:
        row = session.get(Job, job["id"])
        assert row is not None
        jobs.preempt(session, row, "an on-demand buyer takes the device", SystemClock().now_ms(), 30_000)
    drive(agent, scheduler, user, job["id"], "running", attempt=2)
    user.cancel(job["id"])
    drive(agent, scheduler, user, job["id"], "cancelled", attempt=2)
    deadline = time.monotonic() + 10
    while not device_usage(db, job["id"], 2) and time.monotonic() < deadline:
        agent.poll_once()  # the cancelled attempt is drained: its usage arrives after the transition
        time.sleep(0.1)

    first, second = sorted(user.charges(job_id=job["id"]), key=lambda c: c["attempt"])
    assert (first["attempt"], first["price_kind"], first["fixed_fen_per_du"]) == (1, "spot", 500_000)
    records = device_usage(db, job["id"], 1)
    du, fen = expected(records, 500_000)
    assert (first["lines"][0]["du"], first["lines"][0]["gross_fen"]) == (fmt(du), fen)
    assert fen >= 43  # it ran at least the second before the notice
    # The second attempt was placed on demand at the posted price, and charged only until it was cancelled.
    assert (second["attempt"], second["price_kind"], second["fixed_fen_per_du"]) == (2, "on-demand", None)
    with db.reading() as session:
        ended = session.get(Job, job["id"])
        assert ended is not None and ended.ended_ms is not None
        cancelled_at = ended.ended_ms
    _, fen2 = expected(device_usage(db, job["id"], 2), 2_000_000, until_ms=cancelled_at)
    gross2 = sum(ln["gross_fen"] for ln in second["lines"])
    assert gross2 == fen2
