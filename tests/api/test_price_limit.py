"""A job's price limit (`max_price_fen_per_du`) in the live scheduler: nodes carry their provider's posted
on-demand price for their model, tier and time band; a node priced above the limit is not used, and a
job that no node's price admits waits with a reason that says so."""

from __future__ import annotations

from tests.api.conftest import World
from tests.api.test_money_wallets import money_world

__all__ = ["money_world"]

T4 = [{"index": i, "model": "T4"} for i in range(2)]


def submit(w: World, limit: int | None) -> int:
    spec = {"name": "priced", "run": "true", "resources": {"accelerators": "T4:1"}}
    if limit is not None:
        spec["max_price_fen_per_du"] = limit
    response = w.call("alice", "POST", "/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_jobs_go_only_where_the_posted_price_is_within_their_limit(money_world: World) -> None:
    w = money_world
    w.register_node("prov1", "s1", "n1", devices=T4)  # p1 posts 900 fen/du
    w.register_node("prov2", "s2", "n2", devices=T4)  # p2 posts 400 fen/du
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    assert w.call("prov2", "PUT", "/v1/prices/p2", json={"base_fen_per_du": 400}).status_code == 200
    cheap = [submit(w, 500) for _ in range(3)]
    free = submit(w, None)
    w.scheduler.tick()
    sites = {j: w.call("alice", "GET", f"/v1/jobs/{j}").json() for j in [*cheap, free]}
    assert [sites[j]["site"] for j in cheap[:2]] == ["s2", "s2"]
    third = sites[cheap[2]]
    assert third["state"] == "pending" and "price (want <= 500 fen/du) excluded 1 node" in third["state_reason"]
    assert sites[free]["site"] == "s1"  # no limit: the first-fit node by order, whatever its price


def test_a_limit_below_every_price_waits_and_says_why(money_world: World) -> None:
    w = money_world
    w.register_node("prov1", "s1", "n1", devices=T4)
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    job = submit(w, 100)
    w.scheduler.tick()
    shown = w.call("alice", "GET", f"/v1/jobs/{job}").json()
    assert shown["state"] == "pending" and "price (want <= 100 fen/du)" in shown["state_reason"]
