"""Model choice by posted price in the live scheduler: a job naming a workload and accepting several models runs
on the model with the lowest expected fen for its work (posted fen/du over measured throughput per du), and
the choice follows the prices when a provider changes them.

Gavel measures ResNet-50 (batch size 64) at about 2.6 steps/s on a P100 and about 4.4 on a V100; per du
(rated FP16: 18.7 vs 125 TFLOPS) the P100 delivers more, so at equal prices the P100 comes first.
"""

from __future__ import annotations

from typing import Any

from tests.api.conftest import World

RESNET = "ResNet-50 (batch size 64)"


def devices(model: str) -> list[dict[str, Any]]:
    return [{"index": i, "model": model} for i in range(2)]


def post(w: World, p100: int, v100: int) -> None:
    response = w.call("prov1", "PUT", "/v1/prices/p1", json={
        "base_fen_per_du": 1000, "rules": [{"fen_per_du": p100, "model": "P100-16G"},
                                           {"fen_per_du": v100, "model": "V100-16G"}]})
    assert response.status_code == 200, response.text


def placed_model(w: World) -> str:
    """Submit one ResNet-50 job that takes a P100 or a V100, run a scheduler pass, and say which it got."""
    spec = {"name": "train", "run": "true", "workload": RESNET,
            "resources": {"accelerators": "P100-16G|V100-16G:1"}}
    response = w.call("alice", "POST", "/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    w.scheduler.tick()
    job = w.call("alice", "GET", f"/v1/jobs/{response.json()['id']}").json()
    assert job["state"] == "placed", job
    models = {n["name"]: n["devices"][0]["model"] for n in w.call("alice", "GET", "/v1/nodes").json()}
    return models[job["node"]]


def test_the_cheapest_work_wins_and_follows_a_price_change(world: World) -> None:
    # P100 first in node order, so a choice that ignored prices would take it
    world.register_node("prov1", "s1", "p100", devices=devices("P100-16G"))
    world.register_node("prov1", "s1", "v100", devices=devices("V100-16G"))
    post(world, p100=100_000, v100=10)
    assert placed_model(world) == "V100-16G"
    post(world, p100=10, v100=100_000)  # flipped: one V100 is still free, but the P100 is now far cheaper
    assert placed_model(world) == "P100-16G"


def test_without_posted_prices_the_order_is_throughput_per_du(world: World) -> None:
    world.register_node("prov1", "s1", "v100", devices=devices("V100-16G"))
    world.register_node("prov1", "s1", "p100", devices=devices("P100-16G"))
    assert placed_model(world) == "P100-16G"  # V100 first in node order; the P100 does more per du
