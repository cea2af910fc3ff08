"""Hostile input to the money endpoints never produces a 500: every refusal is a 4xx with a reason,
and a refused request moves no money and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import World
from tests.api.test_money_catalog import A100_CARD
from tests.api.test_money_wallets import assert_nothing_moved, books, money_world

__all__ = ["money_world"]

HUGE = 10**20
PATHS = [
    ("GET", "/v1/wallet?tenant=a%00b"), ("GET", "/v1/wallet?as_of_ms=-1"), ("GET", f"/v1/wallet?as_of_ms={HUGE}"),
    ("GET", "/v1/tenants/a%00b/profile"), ("PUT", "/v1/tenants/a%00b/profile"),
    ("GET", "/v1/ledger/statement?account=wallet:a%00b"), ("GET", "/v1/ledger/statement?account=nope"),
    ("GET", f"/v1/ledger/statement?since_ms={HUGE}"), ("GET", "/v1/ledger/statement?since_ms=10&until_ms=5"),
    ("GET", "/v1/ledger/balances?as_of_ms=x"), ("GET", "/v1/prices/a%00b"), ("PUT", "/v1/prices/a%00b"),
    ("GET", "/v1/prices/" + "x" * 300), ("POST", "/v1/products/a%00b/retire"), ("POST", "/v1/holdings/a%00b/refund"),
    ("POST", "/v1/holdings/nope/refund"), ("POST", "/v1/voucher-programs/a%00b/fund"),
    ("GET", "/v1/voucher-programs/a%00b/report"), ("GET", "/v1/voucher-grants?tenant=a%00b"),
    ("GET", f"/v1/charges?job_id={HUGE}"), ("GET", "/v1/charges?status=weird"), ("GET", "/v1/charges?tenant=%00"),
    ("GET", f"/v1/invoices/{HUGE}"), ("GET", "/v1/invoices/0/csv"), ("GET", "/v1/invoices?period=2026-1%00"),
    ("POST", "/v1/payouts/a%00b/confirm"), ("POST", "/v1/payouts/nope/fail"), ("GET", "/v1/payouts?provider=%00"),
]


@pytest.mark.parametrize("method,path", PATHS, ids=[f"{m} {p}" for m, p in PATHS])
def test_hostile_paths_and_queries_get_a_4xx(money_world: World, method: str, path: str) -> None:
    w = money_world
    before = books(w)
    response = w.call("op", method, path, json={})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert_nothing_moved(w, before)


FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | FINITE
           | st.text(max_size=12) | st.sampled_from(["alpha", "card-a100", "p1", "sh", "2027-01", "a\x00b", "1.5"]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=8)
BODIES = {
    "/v1/topups": {"tenant": SCALARS, "amount_fen": SCALARS},
    "/v1/purchases": {"product_id": SCALARS, "quantity": SCALARS, "tenant": SCALARS},
    "/v1/products": {"product_id": SCALARS, "kind": st.sampled_from(["hour_card", "training_package"]) | SCALARS,
                     "name": SCALARS, "du": SCALARS, "price_fen": SCALARS, "validity_days": SCALARS,
                     "models": JSON, "accelerator_class": SCALARS, "storage_gb": SCALARS, "priority": SCALARS},
    "/v1/voucher-programs": {"program_id": SCALARS, "issuer": SCALARS, "budget_fen": SCALARS,
                             "coverage_ratio": SCALARS, "tenant_annual_cap_fen": SCALARS,
                             "eligible_regions": JSON, "year_start_month": SCALARS},
    "/v1/voucher-grants": {"program_id": SCALARS, "tenant": SCALARS, "amount_fen": SCALARS, "expires_ms": SCALARS},
    "/v1/payouts": {"provider": SCALARS, "amount_fen": SCALARS},
    "/v1/invoices/run": {"period": SCALARS},
    "/v1/voucher-programs/sh/fund": {"amount_fen": SCALARS},
}
REQUESTS = st.sampled_from(sorted(BODIES)).flatmap(
    lambda path: st.tuples(st.just(path), st.fixed_dictionaries({}, optional=BODIES[path]) | JSON))


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=REQUESTS, who=st.sampled_from(["op", "alice", "prov1"]))
def test_random_money_requests_never_fail_with_a_500(money_world: World, request: tuple[str, Any], who: str) -> None:
    path, body = request
    response = money_world.call(who, "POST", path, json=body)
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code >= 400:
        assert response.json()["detail"]


def test_random_prices_never_fail_with_a_500(money_world: World) -> None:
    w = money_world
    w.call("op", "POST", "/v1/products", json=A100_CARD)
    for body in ({"base_fen_per_du": HUGE}, {"base_fen_per_du": 1, "bands": [{"name": "\x00", "start": "08:00",
                                                                              "end": "09:00"}]},
                 {"base_fen_per_du": 1, "rules": [{"fen_per_du": 1, "model": "x" * 65}]},
                 {"base_fen_per_du": 1, "bands": [{"name": "a", "start": "8", "end": "9"}]},
                 {"base_fen_per_du": 1, "rules": [{"fen_per_du": 1}]}, {"base_fen_per_du": 1, "utc_offset_min": HUGE},
                 {"base_fen_per_du": 1, "bands": [{"name": "a", "start": "00:00", "end": "24:00"}]}):
        response = w.call("prov1", "PUT", "/v1/prices/p1", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
