"""Offers: a provider posts and withdraws its own; bad offers get a 4xx with the reason and store nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import World
from tests.api.market_world import HOUR_MS, a100_node, assert_unchanged, books, market_world, offer

__all__ = ["market_world"]


def test_a_provider_offers_its_own_sites_capacity_and_anyone_lists_it(market_world: World) -> None:
    w = market_world
    a100_node(w, "prov1", "s1", "n1", devices=2)
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    made = offer(w, "prov1", devices=2, floor_fen_per_du=120, model="a100-80g")
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["provider"], shown["site"], shown["region"], shown["tier"]) == ("p1", "s1", "yangtze-delta", "core")
    assert (shown["model"], shown["device_memory_gb"], shown["devices"]) == ("A100-80G", "80", 2)
    assert (shown["kind"], shown["state"], shown["floor_fen_per_du"]) == ("spot", "open", 120)
    assert shown["on_demand_fen_per_du"] == 900  # the provider's posted price is the on-demand price
    start = w.clock.now_ms() + HOUR_MS
    block = offer(w, "op", kind="reserved", window_start_ms=start, window_end_ms=start + 4 * HOUR_MS,
                  floor_fen_per_du=1000)
    assert block.status_code == 201, block.text
    assert block.json()["on_demand_fen_per_du"] is None
    for who in ("alice", "bob", "prov2", "op"):
        listed = w.call(who, "GET", "/v1/market/offers").json()
        assert [o["id"] for o in listed] == [shown["id"], block.json()["id"]]
    assert [o["id"] for o in w.call("bob", "GET", "/v1/market/offers", params={"kind": "reserved"}).json()] == [
        block.json()["id"]]
    assert w.call("bob", "GET", "/v1/market/offers", params={"region": "guizhou"}).json() == []


@pytest.mark.parametrize("who,body,status,reason", [
    ("alice", {}, 403, "this needs the role provider"),
    ("prov2", {}, 403, "not your provider's"),
    ("prov1", {"site": "nowhere"}, 404, "no site 'nowhere'"),
    ("prov1", {"model": "B200"}, 422, "unknown accelerator model 'B200'"),
    ("prov1", {"model": "Ascend910B"}, 422, "no rated FP16"),
    ("prov1", {"devices": 3}, 422, "has 2 A100-80G devices registered; an offer cannot sell 3"),
    ("prov1", {"devices": 0}, 422, "devices"),
    ("prov1", {"floor_fen_per_du": -1}, 422, "floor_fen_per_du"),
    ("prov1", {"floor_fen_per_du": 1.5}, 422, "floor_fen_per_du"),
    ("prov1", {"floor_fen_per_du": "100"}, 422, "floor_fen_per_du"),
    ("prov1", {"floor_fen_per_du": 250}, 422, "below p1's posted interruptible floor of 300 fen/du"),
    ("prov1", {"kind": "reserved"}, 422, "a reserved order needs a window"),
    ("prov1", {"window_start_ms": 1, "window_end_ms": 2}, 422, "takes no window"),
    ("prov1", {"kind": "reserved", "window_start_ms": 2_000_000_000_000, "window_end_ms": 1_999_000_000_000}, 422,
     "empty window"),
    ("prov1", {"kind": "reserved", "window_start_ms": 1, "window_end_ms": 2}, 422, "not in the future"),
    ("prov1", {"kind": "resale"}, 422, "kind"),
    ("prov1", {"device_memory_gb": "81"}, 422, "more than A100-80G has"),
    ("prov1", {"device_memory_gb": "8e1"}, 422, "decimal number of GB"),
    ("prov1", {"extra": 1}, 422, "extra"),
])
def test_bad_offers_are_refused_with_the_reason_and_store_nothing(market_world: World, who: str,
                                                                  body: dict[str, Any], status: int,
                                                                  reason: str) -> None:
    w = market_world
    a100_node(w, "prov1", "s1", "n1", devices=2)
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900,
                                                         "interruptible_floor_fen_per_du": 300}).status_code == 200
    before = books(w)
    response = offer(w, who, **{"floor_fen_per_du": 400, **body})
    assert response.status_code == status, response.text
    assert reason in response.text
    assert_unchanged(w, before)


def test_an_offer_is_withdrawn_by_its_provider_only_and_once(market_world: World) -> None:
    w = market_world
    a100_node(w, "prov1", "s1", "n1")
    offer_id = offer(w, "prov1").json()["id"]
    for who in ("prov2", "alice"):
        refused = w.call(who, "DELETE", f"/v1/market/offers/{offer_id}")
        assert refused.status_code == 403 and "not yours" in refused.json()["detail"]
    withdrawn = w.call("prov1", "DELETE", f"/v1/market/offers/{offer_id}")
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "cancelled"
    again = w.call("prov1", "DELETE", f"/v1/market/offers/{offer_id}")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert w.call("alice", "GET", "/v1/market/offers").json() == []
    assert [o["id"] for o in w.call("alice", "GET", "/v1/market/offers", params={"state": "cancelled"}).json()] == [
        offer_id]
    assert w.call("alice", "GET", "/v1/market/offers/99").status_code == 404
    assert w.call("alice", "GET", f"/v1/market/offers/{2**40}").status_code == 422
    assert w.call("alice", "GET", "/v1/market/offers", params={"kind": "x"}).status_code == 422
    assert w.call("alice", "GET", "/v1/market/offers", params={"model": "nope"}).status_code == 422
    assert w.call("alice", "GET", "/v1/market/offers", params={"site": "a\x00b"}).status_code == 422
