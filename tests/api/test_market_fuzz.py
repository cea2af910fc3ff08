"""Hostile input to the market endpoints never produces a 500: every refusal is a 4xx with a reason, and a
refused request stores nothing and moves no money."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import World
from tests.api.market_world import HOUR_MS, a100_node, assert_unchanged, books, market_world, offer

__all__ = ["market_world"]

HUGE = 10**20
PATHS = [
    ("GET", "/v1/market/offers?site=a%00b"), ("GET", "/v1/market/offers?state=weird"),
    ("GET", "/v1/market/offers?limit=0"), ("GET", f"/v1/market/offers/{HUGE}"), ("DELETE", "/v1/market/offers/0"),
    ("DELETE", "/v1/market/offers/777"), ("GET", "/v1/market/bids?state=x"), ("GET", "/v1/market/bids?tenant=%00"),
    ("GET", "/v1/market/bids?tenant=nobody"), ("DELETE", f"/v1/market/bids/{HUGE}"),
    ("GET", f"/v1/market/spot-index?since={HUGE}"), ("GET", "/v1/market/spot-index?since=10&until=5"),
    ("GET", "/v1/market/spot-index?model=nope"), ("GET", "/v1/market/spot-index?region=a%00b"),
    ("GET", "/v1/reservations/0"), ("GET", "/v1/reservations?tenant=%00"), ("POST", "/v1/reservations/9/resell"),
    ("POST", f"/v1/reservations/{HUGE}/resell"), ("POST", "/v1/market/rounds?x=1"),
]


@pytest.mark.parametrize("method,path", PATHS, ids=[f"{m} {p}" for m, p in PATHS])
def test_hostile_paths_and_queries_get_a_4xx(market_world: World, method: str, path: str) -> None:
    w = market_world
    before = books(w)
    response = w.call("alice", method, path, json={"notice_ms": -1} if "rounds" in path else {})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert_unchanged(w, before)


FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | FINITE | st.text(max_size=12)
           | st.sampled_from(["s1", "A100-80G", "A100", "reserved", "spot", "core", "80", "a\x00b", "1.5", 1, 2]))
TIMES = st.integers(1_799_990_000_000, 1_800_020_000_000) | SCALARS
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)
JOB = st.fixed_dictionaries({"name": st.just("q"), "run": st.just("true")},
                            optional={"resources": st.fixed_dictionaries({}, optional={"accelerators": SCALARS,
                                                                                       "cpus": SCALARS}),
                                      "nodes": SCALARS, "time_limit": SCALARS, "placement": JSON,
                                      "interruptible": SCALARS, "reservation": SCALARS}) | JSON
BODIES: dict[str, dict[str, Any]] = {
    "/v1/market/offers": {"site": SCALARS, "model": SCALARS, "devices": SCALARS, "floor_fen_per_du": SCALARS,
                          "kind": SCALARS, "window_start_ms": TIMES, "window_end_ms": TIMES,
                          "interruptible": SCALARS, "device_memory_gb": SCALARS},
    "/v1/market/bids": {"job_id": SCALARS, "limit_fen_per_du": SCALARS, "kind": SCALARS, "devices": SCALARS,
                        "models": JSON, "min_device_memory_gb": SCALARS, "regions": JSON, "tier": SCALARS,
                        "window_start_ms": TIMES, "window_end_ms": TIMES},
    "/v1/market/quote": {"job": JOB, "devices": SCALARS, "models": JSON, "regions": JSON, "tier": SCALARS,
                         "duration_ms": SCALARS, "start_ms": TIMES, "min_device_memory_gb": SCALARS},
    "/v1/reservations": {"offer_id": SCALARS, "devices": SCALARS, "start_ms": TIMES, "end_ms": TIMES},
    "/v1/reservations/1/resell": {"devices": SCALARS, "floor_fen_per_du": SCALARS, "from_ms": TIMES},
    "/v1/market/rounds": {"notice_ms": SCALARS},
}
REQUESTS = st.sampled_from(sorted(BODIES)).flatmap(
    lambda path: st.tuples(st.just(path), st.fixed_dictionaries({}, optional=BODIES[path]) | JSON))


@pytest.fixture
def stocked(market_world: World) -> World:
    """Offers of both kinds, a block bought by alpha (reservation 1), an interruptible job (job 1)."""
    w = market_world
    a100_node(w, "prov1", "s1", "n1", devices=2)
    t = w.clock.now_ms()
    assert offer(w, "prov1").status_code == 201
    assert offer(w, "prov1", kind="reserved", window_start_ms=t + HOUR_MS, window_end_ms=t + 3 * HOUR_MS,
                 floor_fen_per_du=10).status_code == 201
    assert w.call("op", "POST", "/v1/topups", json={"tenant": "alpha", "amount_fen": 100_000}).status_code == 201
    assert w.call("alice", "POST", "/v1/reservations", json={"offer_id": 2, "devices": 1, "start_ms": t + HOUR_MS,
                                                             "end_ms": t + 2 * HOUR_MS}).status_code == 201
    assert w.call("alice", "POST", "/v1/jobs", json={"name": "s", "run": "true", "interruptible": True, "resources": {
        "accelerators": "A100-80G:1"}}).status_code == 201
    return w


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=REQUESTS, who=st.sampled_from(["op", "alice", "prov1"]))
def test_random_market_requests_never_fail_with_a_500(stocked: World, request: tuple[str, Any], who: str) -> None:
    path, body = request
    response = stocked.call(who, "POST", path, json=body)
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code >= 400:
        assert response.json()["detail"]
