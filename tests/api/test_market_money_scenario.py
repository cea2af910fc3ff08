"""The issue's end-to-end scenario, through the API with real jobs run by in-process agents on the local
engine: two providers post prices and offers; a tenant holding a voucher buys an hour card and runs an
on-demand job, an interruptible job that is preempted once, and a job on a reserved block; the month is
invoiced and the providers are paid out. Every figure is checked against the hand calculation below.

The control plane runs on a manual clock, and the engine's start and end times are read from the same
clock (`ManualTimeBackend`), so every job runs for exactly the time the test says.

Set-up (2027-01-15, China Standard Time; platform fee 10%; rounding half up unless it says floor):
- p1 (s1, yangtze-delta): one A100-80G (0.312 du per device-hour); posts 1000 fen/du on demand; offers
  its A100 as spot capacity at a floor of 400 fen/du.
- p2 (s2, guizhou): one MLU370-X8 (0.096 du per device-hour, Cambricon, domestic); posts 500 fen/du;
  offers the MLU as reserved blocks over [14:00, 18:00) at 800 fen/du.
- alpha (Shanghai, AI): tops up 2000 fen; holds a voucher grant of program sh-2027 (20% of the cash part,
  30% on domestic chips, rounded down); buys an A100 hour card: 0.2 du for 150 fen.
- beta: tops up 1000 fen; no voucher.

What happens:
1. 10:00-11:00 alpha's on-demand A100 job (j1) at p1's 1000 fen/du.
2. 11:00 alpha's interruptible job (j2, max 600 fen/du) wins the spot round: one pair, floor 400 and limit 600,
   price 400 + (600 - 400) // 2 = 500 fen/du. 11:30 beta's on-demand job (jb) needs the A100: the round
   preempts j2 (SIGTERM, it stops at once), jb runs 11:30-12:00 at 1000. 12:00 j2 wins the next round at 500
   again and runs 12:00-13:00 (attempt 2).
3. 13:00 alpha buys a block of p2's MLU for [14:00, 15:00): 0.096 du x 800 = 76.8 -> 77 fen, paid now:
   fee 7.7 -> 8, p2's receivable 69. alpha's job on the block (j3) runs 14:00-15:00 at 0 fen/du.

alpha's January invoice, lines in the order they ended (card: du drawn, list value, card value, discount):
| line   | du    | gross              | card                     | cash | voucher    | net | fee        | p1/p2  |
| j1 / 1 | 0.312 | 0.312 x 1000 = 312 | 0.2, 200 (1), 150, 50    | 112  | 22.4 -> 22 | 90  | 31.2 -> 31 | 281    |
| j2 / 1 | 0.156 | 0.156 x 500 = 78   | -                        | 78   | 15.6 -> 15 | 63  | 7.8 -> 8   | 70     |
| j2 / 2 | 0.312 | 0.312 x 500 = 156  | -                        | 156  | 31.2 -> 31 | 125 | 15.6 -> 16 | 140    |
| j3 / 1 | 0.096 | 0 (block paid)     | - (the card is for A100) | 0    | 0          | 0   | 0          | -      |
| total  | 0.876 | 546                | value 150, discount 50   | 346  | 68         | 278 | 55         | p1 491 |
(1) the list value of the du the card covers: 312 x 0.2 / 0.312 = 200; the card's value is its price, 150.
(vouchers: 20% of the cash part, rounded down.)
beta's invoice: jb / 1, 0.156 du x 1000 = 156, no card or voucher, net 156, fee 15.6 -> 16, p1 140.

Providers: p1 = 491 + 140 = 631 fen, p2 = 69 fen; both paid out in full. Platform fee: 55 + 16 + 8 = 79 fen.
Voucher report: sh-2027, 2027, alpha, p1: 3 lines, eligible 112 + 78 + 156 = 346 fen, vouchers 68 fen.
Balances: alpha's wallet 2000 - 150 (card) - 77 (block) - 278 (invoice) = 1495; beta's 1000 - 156 = 844;
alpha's prepaid 150 - 150 = 0; discount expense -50; the program's budget 10000 - 68 = 9932; fee revenue 79;
receivables and payouts 0; external -(2000 + 1000 + 10000) + 631 + 69 = -12300. They sum to 0.
"""

from __future__ import annotations

import csv
import io
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from computegrid.agent.agent import Agent
from computegrid.backends.base import FINISHED, ExecStatus, InventoryDevice, RunRequest, UsageSlice
from computegrid.backends.local import LocalBackend
from computegrid.services.clock import ManualClock
from tests.api.conftest import World
from tests.api.market_world import job, market_round, with_market_routes
from tests.api.test_money_wallets import balances, top_up
from tests.backends.test_agent_reattach import in_process_client


def at(text: str) -> int:
    """Epoch ms of a time on 2027-01-15 in China Standard Time, e.g. at('11:30')."""
    return int(datetime.fromisoformat(f"2027-01-15T{text}+08:00").timestamp() * 1000)


class ManualTimeBackend:
    """The local engine with its times read from the manual clock: an attempt starts when the agent hands
    it over and ends when the agent first sees it finished, and its usage spans exactly that."""

    def __init__(self, inner: LocalBackend, clock: ManualClock) -> None:
        self.inner = inner
        self.clock = clock
        self.started: dict[str, int] = {}
        self.ended: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit(self, request: RunRequest) -> str:
        engine_id = self.inner.submit(request)
        self.started.setdefault(engine_id, self.clock.now_ms())
        return engine_id

    def status(self, engine_id: str) -> ExecStatus:
        found = self.inner.status(engine_id)
        if found.state in FINISHED:
            self.ended.setdefault(engine_id, self.clock.now_ms())
        return replace(found, started_ms=self.started.get(engine_id) if found.started_ms else None,
                       ended_ms=self.ended.get(engine_id) if found.ended_ms else None)

    def usage(self, engine_id: str) -> list[UsageSlice]:
        end = self.ended.get(engine_id, self.clock.now_ms())
        return [replace(s, start_ms=self.started[engine_id], end_ms=end) for s in self.inner.usage(engine_id)]


@dataclass
class Grid:
    w: World
    agents: list[Agent]
    done: Path

    def step(self) -> None:
        self.w.scheduler.tick()
        for agent in self.agents:
            agent.poll_once()

    def until(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"never happened: {what}"
            self.step()
            time.sleep(0.05)

    def reach(self, job_id: int, state: str, attempt: int = 1) -> None:
        def there() -> bool:
            shown = job(self.w, job_id)
            return bool(shown["state"] == state and shown["attempt"] == attempt)
        self.until(f"job {job_id} {state} on attempt {attempt}", there)

    def finish(self, name: str) -> None:
        (self.done / name).touch()

    def script(self, name: str) -> str:
        """Runs until the test touches its file; SIGTERM (preemption) ends it at once."""
        return (f"trap 'echo checkpointed; exit 143' TERM; echo started; "
                f"while [ ! -f {self.done / name} ]; do sleep 0.05 & wait $!; done; echo finished")


@pytest.fixture
def grid(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Grid]:
    monkeypatch.delenv("COMPUTEGRID_PLATFORM_FEE", raising=False)
    w = world
    with_market_routes(w.app_client.app)
    w.clock.t = at("09:00")
    w.scheduler.market_interval_s = float("inf")  # rounds run when the test (as the operator) calls them
    w.scheduler.heartbeat_timeout_ms = 10 * 86_400_000  # the clock jumps by hours between polls
    done = tmp_path / "done"
    done.mkdir()
    agents, backends = [], []
    for who, site, node, model in (("prov1", "s1", "n1", "A100-80G"), ("prov2", "s2", "m1", "MLU370-X8")):
        local = LocalBackend(tmp_path / site, declared=[InventoryDevice(0, model, None, "declared")])
        backends.append(local)
        agent = Agent(in_process_client(w.app_client.app, w.keys[who]), ManualTimeBackend(local, w.clock),  # type: ignore[arg-type]
                      site=site, node_name=node)
        agent.register()
        agents.append(agent)
    yield Grid(w, agents, done)
    for local in backends:
        for engine_id in local.active_ids():
            local.cancel(engine_id)
    subprocess.run(["pkill", "-9", "-f", str(tmp_path)], check=False)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if "json" in response.headers.get("content-type", "") else response.text


def submit(g: Grid, who: str, name: str, accelerators: str, **fields: Any) -> int:
    body = {"name": name, "run": g.script(name), "resources": {"accelerators": accelerators, "cpus": 0.25,
                                                               "memory_gb": 0.25}, **fields}
    return int(ok(g.w.call(who, "POST", "/v1/jobs", json=body), 201)["id"])


def test_two_providers_a_voucher_an_hour_card_and_three_ways_to_buy_agree_to_the_fen(grid: Grid) -> None:
    g, w = grid, grid.w
    # Providers post prices and offers.
    ok(w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 1000, "interruptible_floor_fen_per_du": 300}))
    ok(w.call("prov2", "PUT", "/v1/prices/p2", json={"base_fen_per_du": 500}))
    ok(w.call("prov1", "POST", "/v1/market/offers", json={"site": "s1", "model": "A100-80G", "devices": 1,
                                                          "floor_fen_per_du": 400}), 201)
    block_offer = ok(w.call("prov2", "POST", "/v1/market/offers", json={
        "site": "s2", "model": "MLU370-X8", "devices": 1, "floor_fen_per_du": 800, "kind": "reserved",
        "window_start_ms": at("14:00"), "window_end_ms": at("18:00")}), 201)["id"]
    # The operator sets up a voucher program and an hour card; alpha gets a grant and buys a card.
    ok(w.call("op", "PUT", "/v1/tenants/alpha/profile", json={"region": "shanghai", "industry_tags": ["ai"]}))
    ok(top_up(w, "alpha", 2000), 201)
    ok(top_up(w, "beta", 1000), 201)
    ok(w.call("op", "POST", "/v1/voucher-programs", json={
        "program_id": "sh-2027", "issuer": "Shanghai issuer", "budget_fen": 100_000, "coverage_ratio": "0.2",
        "domestic_coverage_ratio": "0.3", "tenant_annual_cap_fen": 1_000_000, "eligible_regions": ["shanghai"],
        "eligible_industries": ["ai"]}), 201)
    ok(w.call("op", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": 10_000}), 201)
    ok(w.call("op", "POST", "/v1/voucher-grants", json={"program_id": "sh-2027", "tenant": "alpha"}), 201)
    ok(w.call("op", "POST", "/v1/products", json={"product_id": "card-a100", "kind": "hour_card",
                                                 "name": "A100 hour card", "du": "0.2", "price_fen": 150,
                                                 "validity_days": 30, "models": ["A100"]}), 201)
    ok(w.call("alice", "POST", "/v1/purchases", json={"product_id": "card-a100"}), 201)

    # 1. On demand: 10:00-11:00 on p1's A100 at the posted price.
    w.clock.t = at("10:00")
    j1 = submit(g, "alice", "j1", "A100-80G:1")
    g.reach(j1, "running")
    w.clock.t = at("11:00")
    g.finish("j1")
    g.reach(j1, "succeeded")

    # 2. Spot: j2 wins the 11:00 round at 500; beta's on-demand job takes the A100 back at 11:30.
    j2 = submit(g, "alice", "j2", "A100-80G:1", interruptible=True, max_price_fen_per_du=600)
    g.step()
    first = market_round(w, notice_ms=60_000)
    assert [(a["job_id"], a["price_fen_per_du"]) for a in first["allocations"]] == [(j2, 500)]
    g.reach(j2, "running")
    w.clock.t = at("11:30")
    jb = submit(g, "bob", "jb", "A100-80G:1")
    g.step()
    assert "devices in use" in job(w, jb)["state_reason"]
    second = market_round(w, notice_ms=60_000)
    assert [(p["job_id"], p["reason"]) for p in second["preemptions"]] == [(j2, "on-demand")]
    g.reach(jb, "running")
    assert job(w, j2)["state"] == "pending"  # stopped (SIGTERM) and requeued at 11:30
    assert "checkpointed" in ok(w.call("alice", "GET", f"/v1/jobs/{j2}/logs", params={"attempt": 1}))["data"]
    w.clock.t = at("12:00")
    g.finish("jb")
    g.reach(jb, "succeeded")
    third = market_round(w, notice_ms=60_000)
    assert [(a["job_id"], a["price_fen_per_du"]) for a in third["allocations"]] == [(j2, 500)]
    g.reach(j2, "running", attempt=2)
    w.clock.t = at("13:00")
    g.finish("j2")
    g.reach(j2, "succeeded", attempt=2)

    # 3. Reserved: a block of p2's MLU for [14:00, 15:00), paid now; j3 runs on it then.
    block = ok(w.call("alice", "POST", "/v1/reservations", headers={"Idempotency-Key": "block-1"}, json={
        "offer_id": block_offer, "devices": 1, "start_ms": at("14:00"), "end_ms": at("15:00")}), 201)
    assert (block["cost_fen"], block["wallet"]["balance_fen"]) == (77, 2000 - 150 - 77)
    j3 = submit(g, "alice", "j3", "MLU370-X8:1", reservation=block["id"])
    g.step()
    assert "starts at" in job(w, j3)["state_reason"]
    w.clock.t = at("14:00")
    g.reach(j3, "running")
    assert job(w, j3)["site"] == "s2"
    w.clock.t = at("15:00")
    g.finish("j3")
    g.reach(j3, "succeeded")

    # The month is invoiced on February 1st.
    w.clock.t = int(datetime.fromisoformat("2027-02-01T09:00+08:00").timestamp() * 1000)
    run = ok(w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"}))
    issued = {r["tenant"]: r for r in run["tenants"]}
    assert {t: r["status"] for t, r in issued.items()} == {"alpha": "issued", "beta": "issued"}
    alpha = ok(w.call("alice", "GET", f"/v1/invoices/{issued['alpha']['invoice_id']}"))
    lines = [(ln["job_id"], ln["attempt"], ln["provider"], ln["model"], ln["du"], ln["gross_fen"], ln["card_du"],
              ln["card_list_fen"], ln["card_value_fen"], ln["discount_fen"], ln["voucher_eligible_fen"],
              ln["voucher_fen"], ln["net_fen"], ln["fee_fen"], ln["provider_fen"]) for ln in alpha["lines"]]
    assert lines == [
        (str(j1), 1, "p1", "A100-80G", "0.312000", 312, "0.200000", 200, 150, 50, 112, 22, 90, 31, 281),
        (str(j2), 1, "p1", "A100-80G", "0.156000", 78, "0.000000", 0, 0, 0, 78, 15, 63, 8, 70),
        (str(j2), 2, "p1", "A100-80G", "0.312000", 156, "0.000000", 0, 0, 0, 156, 31, 125, 16, 140),
        (str(j3), 1, "p2", "MLU370-X8", "0.096000", 0, "0.000000", 0, 0, 0, 0, 0, 0, 0, 0),
    ]
    assert (alpha["gross_fen"], alpha["card_value_fen"], alpha["discount_fen"], alpha["voucher_fen"],
            alpha["net_fen"], alpha["fee_fen"], alpha["du"]) == (546, 150, 50, 68, 278, 55, "0.876000")
    beta = ok(w.call("bob", "GET", f"/v1/invoices/{issued['beta']['invoice_id']}"))
    assert [(ln["job_id"], ln["du"], ln["gross_fen"], ln["voucher_fen"], ln["net_fen"], ln["fee_fen"])
            for ln in beta["lines"]] == [(str(jb), "0.156000", 156, 0, 156, 16)]

    # Providers are owed their share net of the fee, and are paid out in full.
    owed = {r["provider"]: r["receivable_fen"] for r in ok(w.call("op", "GET", "/v1/receivables"))}
    assert owed == {"p1": 281 + 70 + 140 + 140, "p2": 69}
    for provider, amount in owed.items():
        sent = ok(w.call("op", "POST", "/v1/payouts", json={"provider": provider, "amount_fen": amount}), 201)
        ok(w.call("op", "POST", f"/v1/payouts/{sent['payout_id']}/confirm"))
    report = ok(w.call("op", "GET", "/v1/voucher-programs/sh-2027/report"))
    assert list(csv.DictReader(io.StringIO(report))) == [
        {"program_id": "sh-2027", "year": "2027", "tenant": "alpha", "provider": "p1", "lines": "3",
         "eligible_fen": "346", "voucher_fen": "68"}]
    assert balances(w) == {
        "wallet:alpha": 1495, "wallet:beta": 844, "prepaid:alpha": 0, "discount_expense": -50,
        "voucher_budget:sh-2027": 9932, "fee_revenue": 55 + 16 + 8, "receivable:p1": 0, "receivable:p2": 0,
        "payout:p1": 0, "payout:p2": 0, "external": -12_300}
    assert sum(balances(w).values()) == 0
