"""Bids: an interruptible job's spot bid (set or raised through the API) and bids for reserved blocks.

A bid below the floor is refused with the floor in the message, and nothing is stored or moved.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import World
from tests.api.market_world import HOUR_MS, a100_node, assert_unchanged, books, market_world, offer, submit
from tests.api.test_money_wallets import top_up

__all__ = ["market_world"]


@pytest.fixture
def book(market_world: World) -> World:
    """s1 (p1, yangtze-delta) has two A100s: one spot device at a floor of 120 fen/du, and a reserved
    block offer of two devices over [now + 1 h, now + 5 h) at 1000 fen/du."""
    w = market_world
    a100_node(w, "prov1", "s1", "n1", devices=2)
    assert offer(w, "prov1", floor_fen_per_du=120).status_code == 201
    start = w.clock.now_ms() + HOUR_MS
    made = offer(w, "prov1", kind="reserved", devices=2, window_start_ms=start, window_end_ms=start + 4 * HOUR_MS,
                 floor_fen_per_du=1000)
    assert made.status_code == 201, made.text
    return w


def test_a_spot_bid_below_the_floor_is_refused_and_nothing_is_stored(book: World) -> None:
    w = book
    job = submit(w, "alice", interruptible=True)
    before = books(w)
    low = w.call("alice", "POST", "/v1/market/bids", json={"job_id": job, "limit_fen_per_du": 80})
    assert low.status_code == 422
    assert low.json()["detail"] == "bid 80 fen/du is below the floor 120 fen/du for A100-80G in yangtze-delta"
    assert_unchanged(w, before)
    ok = w.call("alice", "POST", "/v1/market/bids", json={"job_id": job, "limit_fen_per_du": 150})
    assert ok.status_code == 201, ok.text
    shown = ok.json()
    assert (shown["job_id"], shown["kind"], shown["devices"], shown["limit_fen_per_du"]) == (job, "spot", 1, 150)
    assert (shown["models"], shown["state"], shown["tenant"]) == (["A100-80G"], "open", "alpha")
    raised = w.call("alice", "POST", "/v1/market/bids", json={"job_id": job, "limit_fen_per_du": 200})
    assert raised.status_code == 201 and raised.json()["id"] == shown["id"]  # one bid per job, its limit raised
    assert [b["limit_fen_per_du"] for b in w.call("alice", "GET", "/v1/market/bids").json()] == [200]
    assert w.call("bob", "GET", "/v1/market/bids").json() == []
    assert len(w.call("op", "GET", "/v1/market/bids").json()) == 1
    assert w.call("prov1", "GET", "/v1/market/bids").status_code == 403


@pytest.mark.parametrize("who,body,status,reason", [
    ("alice", {"limit_fen_per_du": 150}, 422, "give its job_id"),
    ("alice", {"job_id": "ondemand", "limit_fen_per_du": 150}, 422, "is not interruptible"),
    ("alice", {"job_id": "cpu", "limit_fen_per_du": 150}, 422, "asks for no accelerators"),
    ("bob", {"job_id": "spot", "limit_fen_per_du": 150}, 404, "no job"),
    ("alice", {"job_id": 999, "limit_fen_per_du": 150}, 404, "no job 999"),
    ("alice", {"job_id": "spot", "limit_fen_per_du": 150, "devices": 2}, 422, "leave out devices"),
    ("alice", {"job_id": "spot", "limit_fen_per_du": -5}, 422, "limit_fen_per_du"),
    ("alice", {"job_id": "spot", "limit_fen_per_du": 150.0}, 422, "limit_fen_per_du"),
    ("alice", {"job_id": "spot"}, 422, "limit_fen_per_du"),
])
def test_bad_spot_bids_are_refused(book: World, who: str, body: dict[str, Any], status: int, reason: str) -> None:
    w = book
    ids = {"spot": submit(w, "alice", interruptible=True), "ondemand": submit(w, "alice"),
           "cpu": int(w.call("alice", "POST", "/v1/jobs", json={"name": "cpu", "run": "true", "interruptible": True}
                             ).json()["id"])}
    before = books(w)
    response = w.call(who, "POST", "/v1/market/bids", json={**body, **(
        {"job_id": ids[body["job_id"]]} if isinstance(body.get("job_id"), str) else {})})
    assert response.status_code == status, response.text
    assert reason in response.text
    assert_unchanged(w, before)


def reserved_bid(w: World, who: str, **fields: Any) -> Any:
    start = w.clock.now_ms() + 2 * HOUR_MS
    body = {"kind": "reserved", "devices": 1, "limit_fen_per_du": 1200, "models": "A100",
            "window_start_ms": start, "window_end_ms": start + HOUR_MS, **fields}
    return w.call(who, "POST", "/v1/market/bids", json=body)


def test_reserved_bids_check_floor_window_and_funds_before_anything_is_stored(book: World) -> None:
    w = book
    before = books(w)
    low = reserved_bid(w, "alice", limit_fen_per_du=900)
    assert low.status_code == 422
    assert "bid 900 fen/du is below the floor 1000 fen/du of every reserved offer it accepts" in low.json()["detail"]
    poor = reserved_bid(w, "alice")
    assert poor.status_code == 402  # 1 x 0.312 du x 1 h x 1200 = 374.4 fen at its limit; the wallet is empty
    assert "wallet of alpha holds 0 fen" in poor.json()["detail"]
    for fields, reason in (({"window_start_ms": None, "window_end_ms": None}, "needs a window"),
                           ({"window_start_ms": 1, "window_end_ms": 2}, "future window"),
                           ({"models": "B200"}, "unknown accelerator 'B200'"),
                           ({"tier": "space"}, "tier"), ({"devices": 0}, "devices"),
                           ({"min_device_memory_gb": "lots"}, "decimal number of GB"),
                           ({"kind": "futures"}, "kind")):
        response = reserved_bid(w, "alice", **fields)
        assert response.status_code == 422 and reason in response.text, (fields, response.text)
    assert reserved_bid(w, "prov1").status_code == 403
    assert_unchanged(w, before)
    assert top_up(w, "alpha", 375).status_code == 201
    made = reserved_bid(w, "alice")
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["kind"], shown["models"], shown["state"]) == ("reserved", ["A100-40G", "A100-80G"], "open")
    other = w.call("bob", "DELETE", f"/v1/market/bids/{shown['id']}")
    assert other.status_code == 404
    cancelled = w.call("alice", "DELETE", f"/v1/market/bids/{shown['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert w.call("alice", "DELETE", f"/v1/market/bids/{shown['id']}").status_code == 409
