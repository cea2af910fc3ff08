"""Shared pieces of the market tests: the API world with the market (and money) routes mounted, nodes,
offers and jobs made through the API, and a snapshot of every ledger balance and table row count, so a
refused request can be shown to have moved no money and stored nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from computegrid.api.routes import market
from tests.api.conftest import World
from tests.api.test_money_wallets import Books, books, ledger_total, with_money_routes

__all__ = ["Books", "books"]

HOUR_MS = 3_600_000
A100_DU_PER_HOUR = "0.312"  # rated FP16 312 TFLOPS: 0.312 du per device-hour


def with_market_routes(app: Any) -> None:
    """Mount the market router unless the app already has it (once registered in api/app.py)."""
    with_money_routes(app)
    if not any(getattr(r, "path", None) == "/v1/market/offers" for r in app.routes):
        app.include_router(market.router)


@pytest.fixture
def market_world(world: World) -> Iterator[World]:
    """The API world (s1: p1, yangtze-delta, core; s2: p2, guizhou, hub) with the market routes."""
    with_market_routes(world.app_client.app)
    yield world
    assert ledger_total(world) == 0, "all ledger balances together must always be 0"


def a100_node(w: World, who: str, site: str, name: str, devices: int = 2) -> int:
    return w.register_node(who, site, name, devices=[{"index": i, "model": "A100-80G"} for i in range(devices)])


def offer(w: World, who: str, **fields: Any) -> Any:
    body = {"site": "s1", "model": "A100-80G", "devices": 1, "floor_fen_per_du": 100, **fields}
    return w.call(who, "POST", "/v1/market/offers", json=body)


def submit(w: World, who: str, accelerators: str = "A100-80G:1", **fields: Any) -> int:
    body = {"name": "train", "run": "python train.py", "resources": {"accelerators": accelerators, "cpus": 1},
            **fields}
    response = w.call(who, "POST", "/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def job(w: World, job_id: int) -> dict[str, Any]:
    found: dict[str, Any] = w.call("op", "GET", f"/v1/jobs/{job_id}").json()
    return found


def market_round(w: World, notice_ms: int = 30_000) -> dict[str, Any]:
    response = w.call("op", "POST", "/v1/market/rounds", json={"notice_ms": notice_ms})
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def assert_unchanged(w: World, before: Books) -> None:
    after = books(w)
    assert after.balances == before.balances, "a refused request moved money"
    assert after.rows == before.rows, "a refused request stored rows"


def tick(w: World) -> None:
    """Every node heartbeats at the clock's time (none looks lost after a jump), then the scheduler runs."""
    for node in w.call("op", "GET", "/v1/nodes").json():
        who = {"s1": "prov1", "s2": "prov2"}[node["site"]]
        beat = w.call(who, "POST", "/v1/agent/heartbeat", json={"node_id": node["id"]})
        assert beat.status_code == 200, beat.text
    w.scheduler.tick()
