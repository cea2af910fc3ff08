"""Quotes: anyone authenticated asks what a job (or a request) would cost, before buying anything.

A100-80G is 0.312 du per device-hour. p1 posts 900 fen/du, p2 500. s2 (p2) offers two spot devices at
a floor of 300; s1 (p1) sells reserved blocks of up to two devices over [T+1h, T+5h) at 1000.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import World
from tests.api.market_world import HOUR_MS, a100_node, assert_unchanged, books, market_world, offer

__all__ = ["market_world"]
JOB = {"name": "train", "run": "python train.py", "time_limit": "2h", "resources": {"accelerators": "A100-80G:1"}}


@pytest.fixture
def priced(market_world: World) -> tuple[World, int]:
    w = market_world
    a100_node(w, "prov1", "s1", "n1", devices=2)
    a100_node(w, "prov2", "s2", "m1", devices=2)
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    assert w.call("prov2", "PUT", "/v1/prices/p2", json={"base_fen_per_du": 500}).status_code == 200
    assert offer(w, "prov2", site="s2", devices=2, floor_fen_per_du=300).status_code == 201
    t = w.clock.now_ms()
    assert offer(w, "prov1", kind="reserved", devices=2, window_start_ms=t + HOUR_MS, window_end_ms=t + 5 * HOUR_MS,
                 floor_fen_per_du=1000).status_code == 201
    return w, t


def options(answer: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return [(o["kind"], o["site"], o["price_fen_per_du"], o["estimated_total_fen"]) for o in answer["options"]]


def test_a_job_spec_is_quoted_on_demand_spot_and_reserved(priced: tuple[World, int]) -> None:
    w, t = priced
    before = books(w)
    now = w.call("bob", "POST", "/v1/market/quote", json={"job": JOB})
    assert now.status_code == 200, now.text
    answer = now.json()
    assert answer["request"]["devices"] == 1 and answer["request"]["hours"] == "2"
    # 2 h of one A100 = 0.624 du: on demand at p2 500 -> 312, at p1 900 -> 561.6 -> 562; spot at s2's floor
    # 300 (the class has no spot price yet) -> 187.2 -> 187. No block covers [now, now + 2 h).
    assert options(answer) == [("on-demand", "s2", 500, 312), ("on-demand", "s1", 900, 562), ("spot", "s2", 300, 187)]
    assert answer["explanation"] == "no reserved capacity matches"
    assert answer["cheapest"]["spot"]["estimated_total_exact"] == "936/5"
    later = w.call("alice", "POST", "/v1/market/quote", json={"job": JOB, "start_ms": t + HOUR_MS}).json()
    assert ("reserved", "s1", 1000, 624) in options(later)
    assert w.call("prov1", "POST", "/v1/market/quote", json={"job": JOB}).status_code == 200
    assert_unchanged(w, before)


def test_a_request_is_quoted_and_nothing_matching_says_why(priced: tuple[World, int]) -> None:
    w, _ = priced
    asked = w.call("alice", "POST", "/v1/market/quote", json={"devices": 2, "models": "A100", "regions": ["guizhou"]})
    assert asked.status_code == 200, asked.text
    # 2 devices for 1 h = 0.624 du: on demand at s2 500 -> 312; spot at 300 -> 187
    assert options(asked.json()) == [("on-demand", "s2", 500, 312), ("spot", "s2", 300, 187)]
    none = w.call("alice", "POST", "/v1/market/quote", json={"devices": 3, "models": ["A100-80G"]}).json()
    assert none["options"] == []
    assert "devices (needs 3 on one offer) excluded" in none["explanation"]


@pytest.mark.parametrize("body,reason", [
    ({}, "give a job spec"),
    ({"job": JOB, "devices": 1}, "leave out devices"),
    ({"job": {"name": "cpu", "run": "true"}}, "asks for no accelerators"),
    ({"job": {"name": "bad", "run": "true", "resources": {"accelerators": "B200:1"}}}, "unknown accelerator"),
    ({"devices": 1, "models": "B200"}, "unknown accelerator 'B200'"),
    ({"devices": 0}, "devices"),
    ({"devices": 1, "duration_ms": 0}, "duration_ms"),
    ({"devices": 1, "start_ms": 1}, "before now"),
    ({"devices": 1, "tier": "moon"}, "tier"),
    ({"devices": 1, "min_device_memory_gb": "-1"}, "decimal number of GB"),
])
def test_bad_quotes_are_refused_with_the_reason(priced: tuple[World, int], body: dict[str, Any],
                                                reason: str) -> None:
    w, _ = priced
    response = w.call("alice", "POST", "/v1/market/quote", json=body)
    assert response.status_code == 422 and reason in response.text, response.text
    assert w.app_client.post("/v1/market/quote", json={"devices": 1}).status_code == 401
