"""Reserved blocks: bought from a provider's offer and paid at once (to the fen), used by jobs only on
their site and model inside their window, held back from everyone else meanwhile, and resold.

Money (platform fee 10%, rounded half up): A100-80G is 0.312 du per device-hour.
- alpha buys 1 device for 1 h at 1000 fen/du: 0.312 x 1000 = 312 fen; fee 31.2 -> 31; p1 gets 281.
- beta buys alpha's resold half hour at 1200 fen/du: 0.156 x 1200 = 187.2 -> 187; fee 18.7 -> 19;
  alpha gets 168.
"""

from __future__ import annotations

from typing import Any

import pytest

from computegrid.store.models import Job
from tests.api.conftest import World
from tests.api.market_world import (
    HOUR_MS,
    a100_node,
    assert_unchanged,
    books,
    job,
    market_round,
    market_world,
    offer,
    submit,
    tick,
)
from tests.api.test_money_wallets import balances, top_up

__all__ = ["market_world"]


@pytest.fixture
def block_offer(market_world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[World, int, int]:
    """One A100 at s1 (p1) and one at s2 (p2); p1 sells its A100 as reserved blocks over [T+1h, T+3h)."""
    monkeypatch.delenv("COMPUTEGRID_PLATFORM_FEE", raising=False)
    w = market_world
    w.scheduler.market_interval_s = float("inf")
    a100_node(w, "prov1", "s1", "n1", devices=1)
    a100_node(w, "prov2", "s2", "m1", devices=1)
    t = w.clock.now_ms()
    made = offer(w, "prov1", kind="reserved", window_start_ms=t + HOUR_MS, window_end_ms=t + 3 * HOUR_MS,
                 floor_fen_per_du=1000)
    assert made.status_code == 201, made.text
    return w, int(made.json()["id"]), t


def buy(w: World, who: str, offer_id: int, start: int, end: int, *, devices: int = 1, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return w.call(who, "POST", "/v1/reservations", headers=headers,
                  json={"offer_id": offer_id, "devices": devices, "start_ms": start, "end_ms": end})


def test_a_block_is_paid_once_to_the_fen_and_bad_purchases_move_nothing(block_offer: tuple[World, int, int]) -> None:
    w, offer_id, t = block_offer
    assert top_up(w, "alpha", 1000).status_code == 201
    bought = buy(w, "alice", offer_id, t + HOUR_MS, t + 2 * HOUR_MS, key="k1")
    assert bought.status_code == 201, bought.text
    block = bought.json()
    assert (block["site"], block["model"], block["devices"], block["price_fen_per_du"]) == ("s1", "A100-80G", 1, 1000)
    assert (block["cost_fen"], block["wallet"]["balance_fen"], block["phase"]) == (312, 688, "upcoming")
    assert balances(w) == {"external": -1000, "wallet:alpha": 688, "receivable:p1": 281, "fee_revenue": 31}
    replay = buy(w, "alice", offer_id, t + HOUR_MS, t + 2 * HOUR_MS, key="k1")
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json()["id"] == block["id"]
    before = books(w)
    for who, args, status, reason in (
            ("alice", (t + HOUR_MS, t + 3 * HOUR_MS), 409, "Idempotency-Key 'k1' was already used"),
            ("bob", (t + 90 * 60_000, t + 150 * 60_000), 422, "has 0 devices free"),
            ("alice", (t + 2 * HOUR_MS, t + 4 * HOUR_MS), 422, "outside offer"),
            ("alice", (t - HOUR_MS, t + HOUR_MS), 422, "in the past"),
            ("bob", (t + 2 * HOUR_MS, t + 3 * HOUR_MS), 402, "wallet of beta holds 0 fen"),
            ("prov1", (t + 2 * HOUR_MS, t + 3 * HOUR_MS), 403, "providers do not buy")):
        response = buy(w, who, offer_id, *args, key="k1" if status == 409 else None)
        assert response.status_code == status and reason in response.text, (who, args, response.text)
    assert buy(w, "alice", offer_id, t + 2 * HOUR_MS, t + 3 * HOUR_MS, devices=2).status_code == 422
    assert buy(w, "alice", 999, t + 2 * HOUR_MS, t + 3 * HOUR_MS).status_code == 404
    spot = offer(w, "prov2", site="s2").json()["id"]
    assert "open spot capacity" in buy(w, "alice", spot, t + 2 * HOUR_MS, t + 3 * HOUR_MS).text
    after = books(w)  # nothing moved or stored but the spot offer made above
    assert after.balances == before.balances
    assert {k: v for k, v in after.rows.items() if k != "market_offers"} == \
        {k: v for k, v in before.rows.items() if k != "market_offers"}
    assert [r["id"] for r in w.call("alice", "GET", "/v1/reservations").json()] == [block["id"]]
    assert w.call("bob", "GET", "/v1/reservations").json() == []
    assert [r["id"] for r in w.call("prov1", "GET", "/v1/reservations").json()] == [block["id"]]
    assert w.call("prov2", "GET", "/v1/reservations").json() == []
    assert w.call("bob", "GET", f"/v1/reservations/{block['id']}").status_code == 404


def placed(w: World, job_id: int) -> tuple[str, str | None, int | None]:
    with w.db.reading() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return job(w, job_id)["site"], row.price_kind, row.price_fen_per_du


def test_jobs_run_on_their_block_inside_its_window_and_nobody_else_takes_it(
        block_offer: tuple[World, int, int]) -> None:
    w, offer_id, t = block_offer
    assert top_up(w, "alpha", 1000).status_code == 201
    block = buy(w, "alice", offer_id, t + HOUR_MS, t + 2 * HOUR_MS).json()["id"]
    mine = submit(w, "alice", reservation=block)
    theirs = submit(w, "bob", reservation=block)
    nowhere = submit(w, "alice", reservation=2**62)
    tick(w)
    assert f"no reservation {2**62} of this tenant" in job(w, nowhere)["state_reason"]
    assert job(w, mine)["state"] == "pending"
    assert "reservation" in job(w, mine)["state_reason"] and "starts at" in job(w, mine)["state_reason"]
    assert f"no reservation {block} of this tenant" in job(w, theirs)["state_reason"]
    assert w.call("op", "POST", f"/v1/jobs/{theirs}/cancel").status_code == 200

    w.clock.t = t + HOUR_MS  # the window opens; an on-demand A100 job arrives first
    ondemand = submit(w, "bob")
    tick(w)
    assert placed(w, mine) == ("s1", "reserved", 0)  # on the block's site and model, already paid
    assert placed(w, ondemand) == ("s2", "on-demand", None)  # s1's A100 is held back for the block
    second = submit(w, "alice", reservation=block)
    another = submit(w, "bob")
    tick(w)
    assert "has 0 of its 1 devices free now" in job(w, second)["state_reason"]
    assert "devices in use" in job(w, another)["state_reason"]
    assert w.call("op", "POST", f"/v1/jobs/{another}/cancel").status_code == 200

    # The window ends: a job still on the block is stopped (with notice) and requeued, and waits.
    w.call("op", "POST", f"/v1/jobs/{second}/cancel")
    w.clock.t = t + 2 * HOUR_MS
    ended = market_round(w, notice_ms=0)
    assert [(p["job_id"], p["reason"]) for p in ended["preemptions"]] == [(mine, "reservation-ended")]
    assert job(w, mine)["state"] == "preempting"
    w.clock.advance(1)
    tick(w)
    assert job(w, mine)["state"] == "pending" and "ended at" in job(w, mine)["state_reason"]


def test_unused_time_is_resold_and_the_proceeds_go_to_the_reseller(block_offer: tuple[World, int, int]) -> None:
    w, offer_id, t = block_offer
    assert top_up(w, "alpha", 1000).status_code == 201
    assert top_up(w, "beta", 500).status_code == 201
    block = buy(w, "alice", offer_id, t + HOUR_MS, t + 2 * HOUR_MS).json()["id"]
    w.clock.t = t + HOUR_MS
    running = submit(w, "alice", reservation=block)
    tick(w)
    assert placed(w, running)[0] == "s1"
    before = books(w)
    busy = w.call("alice", "POST", f"/v1/reservations/{block}/resell", json={"devices": 1, "floor_fen_per_du": 1200,
                                                                              "from_ms": t + 90 * 60_000})
    assert busy.status_code == 422 and "0 devices are unused" in busy.json()["detail"]
    for who, body, status in (("bob", {"devices": 1, "floor_fen_per_du": 1}, 404),
                              ("alice", {"devices": 1, "floor_fen_per_du": 1, "from_ms": t}, 422),
                              ("alice", {"devices": 2, "floor_fen_per_du": 1}, 422)):
        assert w.call(who, "POST", f"/v1/reservations/{block}/resell", json=body).status_code == status
    assert_unchanged(w, before)
    assert w.call("op", "POST", f"/v1/jobs/{running}/cancel").status_code == 200

    listed = w.call("alice", "POST", f"/v1/reservations/{block}/resell",
                    json={"devices": 1, "floor_fen_per_du": 1200, "from_ms": t + 90 * 60_000})
    assert listed.status_code == 201, listed.text
    resale = listed.json()
    assert (resale["kind"], resale["reseller"], resale["site"]) == ("resale", "alpha", "s1")
    assert (resale["window_start_ms"], resale["window_end_ms"]) == (t + 90 * 60_000, t + 2 * HOUR_MS)
    # Listed devices are no longer the holder's to start jobs on, even before the resale window.
    late = submit(w, "alice", reservation=block)
    tick(w)
    assert "has 0 of its 1 devices free now" in job(w, late)["state_reason"]
    assert "your own resale" in buy(w, "alice", resale["id"], t + 90 * 60_000, t + 2 * HOUR_MS).text
    bought = buy(w, "bob", resale["id"], t + 90 * 60_000, t + 2 * HOUR_MS)
    assert bought.status_code == 201, bought.text
    assert (bought.json()["cost_fen"], bought.json()["price_fen_per_du"]) == (187, 1200)
    assert balances(w) == {"external": -1500, "wallet:alpha": 688 + 168, "wallet:beta": 500 - 187,
                           "receivable:p1": 281, "fee_revenue": 31 + 19}
    shown = w.call("alice", "GET", f"/v1/reservations/{block}").json()
    assert (shown["resold_devices"], shown["resale_offers"]) == (1, [resale["id"]])
    # The buyer's job runs on the resold block inside its window, on the same device.
    theirs = submit(w, "bob", reservation=bought.json()["id"])
    tick(w)
    assert "starts at" in job(w, theirs)["state_reason"]
    w.clock.t = t + 90 * 60_000
    tick(w)
    assert placed(w, theirs) == ("s1", "reserved", 0)
    assert w.call("alice", "DELETE", f"/v1/market/offers/{resale['id']}").json()["state"] == "cancelled"


def test_reserved_bids_clear_in_a_round_at_one_price_and_are_paid_or_refused(
        block_offer: tuple[World, int, int]) -> None:
    w, offer_id, t = block_offer
    assert top_up(w, "alpha", 400).status_code == 201
    assert top_up(w, "beta", 400).status_code == 201

    def bid(who: str, start: int, limit: int) -> int:
        made = w.call(who, "POST", "/v1/market/bids", json={
            "kind": "reserved", "devices": 1, "limit_fen_per_du": limit, "models": ["A100-80G"],
            "window_start_ms": start, "window_end_ms": start + HOUR_MS})
        assert made.status_code == 201, made.text
        return int(made.json()["id"])

    first = bid("alice", t + HOUR_MS, 1200)
    rival = bid("bob", t + HOUR_MS, 1100)
    later = bid("bob", t + 2 * HOUR_MS, 1100)
    # beta spends its money before the round: the block it bids for later cannot be paid
    assert w.call("op", "POST", "/v1/products", json={"product_id": "card", "kind": "hour_card", "name": "card",
                                                     "du": "1", "price_fen": 300, "validity_days": 30}
                  ).status_code == 201
    assert w.call("bob", "POST", "/v1/purchases", json={"product_id": "card"}).status_code == 201
    report = market_round(w)
    # Over [T+1h, T+2h) one device, two bids: alpha's adds the most surplus (limit 1200 against 1100). beta's
    # later block, [T+2h, T+3h), is the only bid for its window. One price for the class: the midpoint of the
    # highest floor (1000) and the lowest matched limit (1100): 1050 fen/du.
    # alpha: 0.312 du x 1050 = 327.6 -> 328 fen; fee 32.8 -> 33; p1 gets 295. beta, with 100 fen left after
    # its card, cannot pay its 328: refused, nothing bought.
    outcomes = {r["bid_id"]: r for r in report["reserved"]}
    assert (outcomes[first]["outcome"], outcomes[first]["price_fen_per_du"], outcomes[first]["cost_fen"]) == (
        "filled", 1050, 328)
    assert outcomes[later]["outcome"] == "refused" and "wallet of beta holds 100 fen" in outcomes[later]["reason"]
    assert rival not in outcomes
    states = {b["id"]: b["state"] for b in w.call("op", "GET", "/v1/market/bids").json()}
    assert states == {first: "filled", rival: "open", later: "refused"}
    assert balances(w) == {"external": -800, "wallet:alpha": 400 - 328, "wallet:beta": 100, "prepaid:beta": 300,
                           "receivable:p1": 295, "fee_revenue": 33}
    (block,) = w.call("alice", "GET", "/v1/reservations").json()
    assert (block["devices"], block["price_fen_per_du"], block["cost_fen"], block["start_ms"]) == (
        1, 1050, 328, t + HOUR_MS)
    w.clock.advance(1000)
    assert market_round(w)["reserved"] == []  # the rival's window is sold out: it waits
    w.clock.t = t + 90 * 60_000  # its window has started: the bid closes
    assert [r["bid_id"] for r in market_round(w)["reserved"] if r["outcome"] == "closed"] == [rival]
