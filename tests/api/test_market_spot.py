"""Spot rounds live, through the real in-process agent and the local engine: the auction gives an
interruptible job the offer's device at the class price; a higher bid outbids it (it gets SIGTERM,
stops within its notice and is requeued); an on-demand job then takes the device back from the spot
job. The spot index keeps each class price with its history."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from computegrid.agent.agent import Agent
from computegrid.backends.base import InventoryDevice
from computegrid.backends.local import LocalBackend
from computegrid.store.models import Job
from computegrid.store.models_market import MarketLease
from tests.api.conftest import World
from tests.api.market_world import a100_node, job, market_round, market_world, offer
from tests.api.market_world import submit as api_submit
from tests.backends.test_agent_reattach import in_process_client
from tests.backends.test_preemption import TRAPS_TERM

__all__ = ["market_world"]


@pytest.fixture
def site_agent(market_world: World, tmp_path: Path) -> Iterator[Agent]:
    """s1's agent: one node `n1` with one declared A100-80G; rounds run only when a test calls them."""
    w = market_world
    w.scheduler.market_interval_s = float("inf")
    backend = LocalBackend(tmp_path / "work", declared=[InventoryDevice(0, "A100-80G", None, "declared")])
    agent = Agent(in_process_client(w.app_client.app, w.keys["prov1"]), backend, site="s1", node_name="n1")
    agent.register()
    yield agent
    for engine_id in backend.active_ids():
        backend.cancel(engine_id)
    subprocess.run(["pkill", "-9", "-f", str(tmp_path)], check=False)


def drive(w: World, agent: Agent, job_id: int, state: str, *, attempt: int, timeout: float = 30) -> dict[str, Any]:
    """Tick the scheduler and poll the agent until the job reaches `state` on `attempt`."""
    deadline = time.monotonic() + timeout
    while True:
        w.scheduler.tick()
        agent.poll_once()
        shown = job(w, job_id)
        if shown["state"] == state and shown["attempt"] == attempt:
            return shown
        assert time.monotonic() < deadline, f"job {job_id} never reached {state} on attempt {attempt}: {shown}"
        time.sleep(0.05)


def price_of(w: World, job_id: int) -> tuple[str | None, int | None]:
    with w.db.reading() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row.price_kind, row.price_fen_per_du


def submit(w: World, who: str, *, interruptible: bool, limit: int | None = None, run: str = TRAPS_TERM) -> int:
    body: dict[str, Any] = {"name": "spot" if interruptible else "od", "run": run, "interruptible": interruptible,
                            "resources": {"accelerators": "A100-80G:1", "cpus": 0.5, "memory_gb": 0.25}}
    if limit is not None:
        body["max_price_fen_per_du"] = limit
    response = w.call(who, "POST", "/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_spot_auction_outbid_and_on_demand_preemption_with_the_real_agent(market_world: World,
                                                                          site_agent: Agent) -> None:
    w, agent = market_world, site_agent
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    offer_id = offer(w, "prov1", floor_fen_per_du=100).json()["id"]

    # 1. alpha's interruptible job bids up to 150 fen/du; it waits for a round, then wins the device.
    low = submit(w, "alice", interruptible=True, limit=150)
    w.scheduler.tick()
    assert job(w, low)["state"] == "pending"
    assert job(w, low)["state_reason"].startswith("waiting for a spot round")
    first = market_round(w)
    (alloc,) = first["allocations"]
    # one pair: floor 100, limit 150 -> the midpoint, 125 fen/du
    assert (alloc["job_id"], alloc["offer_id"], alloc["price_fen_per_du"]) == (low, offer_id, 125)
    assert [(p["model"], p["region"], p["price_fen_per_du"]) for p in first["prices"]] == [
        ("A100-80G", "yangtze-delta", 125)]
    drive(w, agent, low, "running", attempt=1)
    assert price_of(w, low) == ("spot", 125)
    assert any("on spot lease" in e["reason"] for e in w.call("alice", "GET", f"/v1/jobs/{low}/events").json())

    # 2. beta bids 300: it outbids alpha, which is told to stop (SIGTERM) within the notice and is requeued.
    high = submit(w, "bob", interruptible=True, limit=300)
    w.clock.advance(1000)
    second = market_round(w, notice_ms=30_000)
    (victim,) = second["preemptions"]
    bidder = str(second["allocations"][0]["bid_id"])
    assert (victim["job_id"], victim["reason"], victim["by"]) == (low, "outbid", bidder)
    assert victim["preempt_at_ms"] == second["at_ms"] + 30_000
    assert job(w, low)["state"] == "preempting"
    assert [p["price_fen_per_du"] for p in second["prices"]] == [200]  # floor 100, limit 300
    drive(w, agent, high, "running", attempt=1)
    assert price_of(w, high) == ("spot", 200)
    shown = job(w, low)
    assert shown["state"] == "pending" and shown["attempt"] == 1
    user = in_process_client(w.app_client.app, w.keys["alice"])
    assert "checkpointed-on-term" in user.logs(low, attempt=1)["data"]
    states = [e["to"] for e in user.events(low)]
    assert states[:5] == ["pending", "placed", "running", "preempting", "pending"]

    # 3. An on-demand job finds the device busy; the round takes it back from the spot job (on demand
    #    outranks spot), and the on-demand job runs at the posted price. alpha, still bidding 150, waits.
    ondemand = submit(w, "bob", interruptible=False, run="sleep 60")
    w.scheduler.tick()
    assert "devices in use" in job(w, ondemand)["state_reason"]
    w.clock.advance(1000)
    third = market_round(w, notice_ms=30_000)
    assert [(p["job_id"], p["reason"], p["by"]) for p in third["preemptions"]] == [(high, "on-demand", f"J{ondemand}")]
    assert [g["job_id"] for g in third["on_demand"]] == [ondemand]
    assert third["allocations"] == [] and [u["job_id"] for u in third["unmatched_bids"]] == [low]
    drive(w, agent, ondemand, "running", attempt=1)
    assert price_of(w, ondemand) == ("on-demand", None)
    assert job(w, high)["state"] == "pending"
    w.clock.advance(1000)
    fourth = market_round(w)
    assert fourth["allocations"] == [] and fourth["preemptions"] == []
    with w.db.reading() as session:
        live = session.scalars(select(MarketLease).where(MarketLease.state != "ended")).all()
    assert live == []  # the on-demand hold ended once its job was placed; both spot leases ended

    # The spot index: 125 from the first round, 200 from the second (the price holds until it changes).
    series = w.call("bob", "GET", "/v1/market/spot-index", params={"model": "A100-80G"}).json()
    assert [(s["model"], s["region"]) for s in series] == [("A100-80G", "yangtze-delta")]
    assert [(p["at_ms"], p["price_fen_per_du"]) for p in series[0]["points"]] == [
        (first["at_ms"], 125), (second["at_ms"], 200)]
    assert series[0]["latest"]["price_fen_per_du"] == 200
    later = w.call("bob", "GET", "/v1/market/spot-index", params={"since": second["at_ms"] + 1}).json()
    assert [p["price_fen_per_du"] for p in later[0]["points"]] == [200]  # the price in force then
    assert w.call("bob", "GET", "/v1/market/spot-index", params={"region": "guizhou"}).json() == []

    for job_id in (low, high, ondemand):
        assert w.call("op", "POST", f"/v1/jobs/{job_id}/cancel").status_code == 200


def test_rounds_are_for_operators_and_an_idle_market_records_nothing(market_world: World) -> None:
    w = market_world
    assert w.call("alice", "POST", "/v1/market/rounds").status_code == 403
    assert w.call("prov1", "GET", "/v1/market/rounds").status_code == 403
    forced = w.call("op", "POST", "/v1/market/rounds")
    assert forced.status_code == 200 and forced.json()["allocations"] == []
    assert w.call("op", "POST", "/v1/market/rounds", json={"notice_ms": -1}).status_code == 422
    assert w.scheduler.run_market_round() is None  # nothing on the market: no round, no record
    assert len(w.call("op", "GET", "/v1/market/rounds").json()) == 1  # the forced one only


def test_the_scheduler_runs_rounds_and_a_bid_without_a_limit_pays_up_to_the_posted_price(
        market_world: World) -> None:
    w = market_world
    w.scheduler.market_interval_s = 0  # a round on every tick
    a100_node(w, "prov1", "s1", "n1", devices=1)
    a100_node(w, "prov2", "s2", "m1", devices=1)
    offer(w, "prov1", floor_fen_per_du=100)
    capped = api_submit(w, "alice", interruptible=True, placement={"tier": "core"})
    w.scheduler.tick()
    assert "no price limit" in job(w, capped)["state_reason"]  # and p1 posts no on-demand price to go by
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    w.clock.advance(1000)
    w.scheduler.tick()
    assert job(w, capped)["state"] == "placed" and job(w, capped)["site"] == "s1"
    assert price_of(w, capped) == ("spot", 500)  # floor 100, limit 900 (the posted price): 100 + 800 // 2
    # An interruptible job no spot offer could serve (it wants the hub tier) is placed like any other job.
    elsewhere = api_submit(w, "bob", interruptible=True, placement={"tier": "hub"})
    w.clock.advance(1000)
    w.scheduler.tick()
    assert job(w, elsewhere)["site"] == "s2" and price_of(w, elsewhere) == ("on-demand", None)
    # The provider withdraws its offer: the spot job is told to stop, with notice.
    assert w.call("prov1", "DELETE", "/v1/market/offers/1").status_code == 200
    w.clock.advance(1000)
    w.scheduler.tick()
    assert job(w, capped)["state"] == "preempting"
    assert "withdrew or cut its spot offer" in job(w, capped)["state_reason"]
    bids = w.call("alice", "GET", "/v1/market/bids").json()
    assert [(b["job_id"], b["state"], b["limit_fen_per_du"]) for b in bids] == [(capped, "leased", None)]
