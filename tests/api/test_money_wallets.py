"""Wallets, top-ups, tenant profiles, the ledger statement and balances; roles and idempotency.

Also the shared fixture of the money tests: `money` is the API world with the money routes,
and `Books` snapshots every ledger balance and every table's row count, so a refused
request can be shown to have moved no money and written nothing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from computegrid.api.routes import money
from tests.api.conftest import World


def with_money_routes(app: Any) -> None:
    """Mount the money router unless the app already has it (once registered in api/app.py)."""
    if not any(getattr(r, "path", None) == "/v1/wallet" for r in app.routes):
        app.include_router(money.router)


@pytest.fixture
def money_world(world: World) -> Iterator[World]:
    with_money_routes(world.app_client.app)
    yield world
    assert ledger_total(world) == 0, "all ledger balances together must always be 0"


@dataclass(frozen=True)
class Books:
    balances: dict[str, int]
    rows: dict[str, int]


def balances(world: World) -> dict[str, int]:
    response = world.call("op", "GET", "/v1/ledger/balances")
    assert response.status_code == 200, response.text
    found: dict[str, int] = response.json()["balances"]
    return found


def ledger_total(world: World) -> int:
    return sum(balances(world).values())


def books(world: World) -> Books:
    return Books(balances(world), world.counts())


def assert_nothing_moved(world: World, before: Books) -> None:
    after = books(world)
    assert after.balances == before.balances, "a refused request moved money"
    assert after.rows == before.rows, "a refused request wrote rows"


def top_up(world: World, tenant: str, fen: int, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return world.call("op", "POST", "/v1/topups", json={"tenant": tenant, "amount_fen": fen}, headers=headers)


def test_top_up_then_wallet_and_statement(money_world: World) -> None:
    w = money_world
    assert w.call("alice", "GET", "/v1/wallet").json()["balance_fen"] == 0
    first = top_up(w, "alpha", 12_345)
    assert first.status_code == 201, first.text
    assert first.json()["wallet"]["balance_fen"] == 12_345
    assert first.json()["key"].startswith("topup:")
    w.clock.advance(60_000)
    assert top_up(w, "alpha", 655).status_code == 201
    shown = w.call("alice", "GET", "/v1/wallet").json()
    assert shown == {"tenant": "alpha", "balance_fen": 13_000, "prepaid_fen": 0, "credit_limit_fen": 0,
                     "available_fen": 13_000, "as_of": None}
    # As of a time between the two top-ups, only the first counts.
    earlier = w.call("alice", "GET", "/v1/wallet", params={"as_of_ms": w.clock.now_ms() - 1}).json()
    assert earlier["balance_fen"] == 12_345
    assert balances(w) == {"external": -13_000, "wallet:alpha": 13_000}

    text = w.call("alice", "GET", "/v1/ledger/statement").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["amount_fen"] for r in rows] == ["12345", "655"]
    assert [r["running_balance_fen"] for r in rows] == ["12345", "13000"]
    assert rows[0]["time"].endswith("Z") and rows[0]["key"].startswith("topup:")
    # A statement for a later period starts from the balance before it.
    later = w.call("op", "GET", "/v1/ledger/statement",
                   params={"account": "wallet:alpha", "since_ms": w.clock.now_ms()}).text
    assert list(csv.DictReader(io.StringIO(later)))[0]["running_balance_fen"] == "13000"


def test_top_up_is_idempotent_by_key(money_world: World) -> None:
    w = money_world
    first = top_up(w, "beta", 500, key="bank-ref-1")
    assert first.status_code == 201
    before = books(w)
    again = top_up(w, "beta", 500, key="bank-ref-1")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert_nothing_moved(w, before)
    for body in ({"tenant": "beta", "amount_fen": 501}, {"tenant": "alpha", "amount_fen": 500}):
        conflict = w.call("op", "POST", "/v1/topups", json=body, headers={"Idempotency-Key": "bank-ref-1"})
        assert conflict.status_code == 409
        assert "'bank-ref-1'" in conflict.json()["detail"]
        assert_nothing_moved(w, before)
    assert w.call("bob", "GET", "/v1/wallet").json()["balance_fen"] == 500


BAD_AMOUNTS = [-100, 0, 12.5, 100.0, True, "100", None, 10**20]


@pytest.mark.parametrize("amount", BAD_AMOUNTS, ids=[repr(a) for a in BAD_AMOUNTS])
def test_bad_top_up_amounts_move_no_money(money_world: World, amount: object) -> None:
    w = money_world
    top_up(w, "alpha", 100)
    before = books(w)
    response = w.call("op", "POST", "/v1/topups", json={"tenant": "alpha", "amount_fen": amount})
    assert response.status_code == 422, response.text
    assert "amount_fen" in str(response.json()["detail"])
    assert_nothing_moved(w, before)


def test_roles_for_wallets_and_top_ups(money_world: World) -> None:
    w = money_world
    top_up(w, "beta", 700)
    before = books(w)
    refused = w.call("alice", "POST", "/v1/topups", json={"tenant": "alpha", "amount_fen": 100})
    assert refused.status_code == 403 and "operator" in refused.json()["detail"]
    assert w.call("prov1", "POST", "/v1/topups", json={"tenant": "alpha", "amount_fen": 100}).status_code == 403
    assert w.call("op", "POST", "/v1/topups", json={"tenant": "nobody", "amount_fen": 100}).status_code == 404
    assert_nothing_moved(w, before)
    hidden = w.call("alice", "GET", "/v1/wallet", params={"tenant": "beta"})
    assert hidden.status_code == 404 and "no tenant 'beta'" in hidden.json()["detail"]
    assert w.call("op", "GET", "/v1/wallet", params={"tenant": "beta"}).json()["balance_fen"] == 700
    other = w.call("alice", "GET", "/v1/ledger/statement", params={"account": "wallet:beta"})
    assert other.status_code == 403 and "your own accounts" in other.json()["detail"]
    assert w.call("alice", "GET", "/v1/ledger/balances").status_code == 403
    assert w.call("alice", "GET", "/v1/ledger/statement", params={"account": "bogus:x"}).status_code == 422
    assert w.call("op", "GET", "/v1/ledger/statement", params={"account": "bogus:x"}).status_code == 422


def test_tenant_profile_and_credit_limit(money_world: World) -> None:
    w = money_world
    body = {"region": "shanghai", "industry_tags": ["ai"], "credit_limit_fen": 5000, "affiliated_providers": ["p2"]}
    assert w.call("alice", "PUT", "/v1/tenants/alpha/profile", json=body).status_code == 403
    shown = w.call("op", "PUT", "/v1/tenants/alpha/profile", json=body)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"tenant": "alpha", **body}
    assert w.call("alice", "GET", "/v1/tenants/alpha/profile").json()["credit_limit_fen"] == 5000
    assert w.call("alice", "GET", "/v1/wallet").json()["available_fen"] == 5000
    assert w.call("bob", "GET", "/v1/tenants/alpha/profile").status_code == 404
    before = books(w)
    for bad, status in (({**body, "credit_limit_fen": -1}, 422), ({**body, "credit_limit_fen": 1.5}, 422),
                        ({**body, "affiliated_providers": ["ghost"]}, 404), ({**body, "extra": 1}, 422)):
        response = w.call("op", "PUT", "/v1/tenants/alpha/profile", json=bad)
        assert response.status_code == status, response.text
    assert_nothing_moved(w, before)


def test_idempotency_key_must_be_sane(money_world: World) -> None:
    w = money_world
    before = books(w)
    response = top_up(w, "alpha", 100, key=" spaced ")
    assert response.status_code == 422 and "Idempotency-Key" in response.json()["detail"]
    assert_nothing_moved(w, before)


def test_the_money_endpoints_are_in_the_openapi_schema(money_world: World) -> None:
    schema = money_world.app_client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/v1/wallet", "/v1/topups", "/v1/prices/{provider}", "/v1/purchases", "/v1/invoices/run",
                 "/v1/voucher-programs/{program_id}/report", "/v1/payouts/{payout_id}/confirm"):
        assert path in paths, path
    assert "Idempotency-Key" in str(paths["/v1/topups"]["post"]["parameters"])
