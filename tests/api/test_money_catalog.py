"""Prices, products, purchases and holdings: happy paths, roles, and bad input that moves no money."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from computegrid.services.billing import products, wallets
from computegrid.services.errors import ServiceError
from computegrid.services.principal import Principal
from computegrid.store.models import User
from tests.api.conftest import World
from tests.api.test_money_wallets import assert_nothing_moved, balances, books, money_world, top_up

__all__ = ["money_world"]

DAY_MS = 86_400_000
BANDED = {"base_fen_per_du": 1000, "interruptible_floor_fen_per_du": 300,
          "bands": [{"name": "peak", "start": "08:00", "end": "22:00"},
                    {"name": "off-peak", "start": "22:00", "end": "08:00"}],
          "rules": [{"fen_per_du": 1200, "band": "peak"}, {"fen_per_du": 600, "band": "off-peak"}]}
A100_CARD = {"product_id": "card-a100", "kind": "hour_card", "name": "A100 hour card", "du": "1", "price_fen": 800,
             "validity_days": 30, "models": ["A100"]}
PACKAGE = {"product_id": "pkg-a100", "kind": "training_package", "name": "A100 training pack", "du": "10",
           "price_fen": 7000, "validity_days": 90, "accelerator_class": "A100", "priority": 5}


def buy(world: World, who: str, product: str, quantity: int = 1, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return world.call(who, "POST", "/v1/purchases", json={"product_id": product, "quantity": quantity},
                      headers=headers)


def test_provider_posts_its_own_prices_and_everyone_reads_them(money_world: World) -> None:
    w = money_world
    posted = w.call("prov1", "PUT", "/v1/prices/p1", json={
        **BANDED, "rules": [*BANDED["rules"], {"fen_per_du": 1500, "model": "H100", "tier": "core"}]})
    assert posted.status_code == 200, posted.text
    assert posted.json()["utc_offset_min"] == 480
    assert {"fen_per_du": 1500, "model": "H100-80G", "tier": "core"} in posted.json()["rules"]  # canonical name
    assert w.call("op", "PUT", "/v1/prices/p2", json={"base_fen_per_du": 500}).status_code == 200
    assert [p["provider"] for p in w.call("alice", "GET", "/v1/prices").json()] == ["p1", "p2"]
    assert w.call("bob", "GET", "/v1/prices/p2").json()["base_fen_per_du"] == 500
    before = books(w)
    other = w.call("prov1", "PUT", "/v1/prices/p2", json={"base_fen_per_du": 1})
    assert other.status_code == 403 and "'p2'" in other.json()["detail"]
    assert w.call("alice", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 1}).status_code == 403
    assert_nothing_moved(w, before)
    assert w.call("alice", "GET", "/v1/prices/p2").json()["base_fen_per_du"] == 500


BAD_SCHEDULES = [
    ({"base_fen_per_du": -1}, "base_fen_per_du"),
    ({"base_fen_per_du": 10.5}, "base_fen_per_du"),
    ({**BANDED, "bands": [{"name": "a", "start": "08:00", "end": "22:00"},
                          {"name": "b", "start": "21:00", "end": "23:00"}], "rules": []}, "overlap"),
    ({"base_fen_per_du": 100, "rules": [{"fen_per_du": 5, "band": "night"}]}, "unknown band 'night'"),
    ({"base_fen_per_du": 100, "rules": [{"fen_per_du": 5, "model": "Z900"}]}, "Z900"),
    ({"base_fen_per_du": 100, "rules": [{"fen_per_du": 5, "tier": "moon"}]}, "tier"),
    ({"base_fen_per_du": 100, "bands": [{"name": "x", "start": "25:00", "end": "02:00"}]}, "HH:MM"),
    ({"base_fen_per_du": 100, "utc_offset_min": 2000}, "utc_offset_min"),
]


@pytest.mark.parametrize("body,reason", BAD_SCHEDULES, ids=[r for _, r in BAD_SCHEDULES])
def test_bad_price_schedules_are_refused(money_world: World, body: dict[str, Any], reason: str) -> None:
    w = money_world
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 700}).status_code == 200
    before = books(w)
    response = w.call("prov1", "PUT", "/v1/prices/p1", json=body)
    assert response.status_code == 422, response.text
    assert reason in str(response.json()["detail"])
    assert_nothing_moved(w, before)
    assert w.call("alice", "GET", "/v1/prices/p1").json()["base_fen_per_du"] == 700


def test_products_are_defined_by_operators_and_bought_from_the_wallet(money_world: World) -> None:
    w = money_world
    assert w.call("alice", "POST", "/v1/products", json=A100_CARD).status_code == 403
    card = w.call("op", "POST", "/v1/products", json=A100_CARD)
    assert card.status_code == 201, card.text
    assert card.json()["models"] == ["A100-40G", "A100-80G"] and card.json()["fen_per_du"] == "800.00"
    assert w.call("op", "POST", "/v1/products", json=PACKAGE).json()["priority"] == 5
    assert w.call("op", "POST", "/v1/products", json=A100_CARD).status_code == 409
    assert [p["product_id"] for p in w.call("bob", "GET", "/v1/products").json()] == ["card-a100", "pkg-a100"]

    top_up(w, "alpha", 10_000)
    bought = buy(w, "alice", "card-a100", quantity=2)
    assert bought.status_code == 201, bought.text
    assert bought.json()["amount_fen"] == 1600
    assert bought.json()["wallet"] == {"tenant": "alpha", "balance_fen": 8400, "prepaid_fen": 1600,
                                       "credit_limit_fen": 0, "available_fen": 8400, "as_of": None}
    holdings = w.call("alice", "GET", "/v1/holdings").json()
    assert len(holdings) == 2 and {h["du_left"] for h in holdings} == {"1.000000"}
    assert holdings[0]["expires"] is not None and holdings[0]["value_left_fen"] == 800
    assert w.call("bob", "GET", "/v1/holdings").json() == []
    assert w.call("bob", "GET", "/v1/holdings", params={"tenant": "alpha"}).status_code == 404
    assert balances(w) == {"external": -10_000, "prepaid:alpha": 1600, "wallet:alpha": 8400}


def test_buying_is_idempotent_by_key(money_world: World) -> None:
    w = money_world
    w.call("op", "POST", "/v1/products", json=A100_CARD)
    w.call("op", "POST", "/v1/products", json={**A100_CARD, "product_id": "card-b"})
    top_up(w, "alpha", 5000)
    first = buy(w, "alice", "card-a100", key="order-7")
    assert first.status_code == 201
    before = books(w)
    again = buy(w, "alice", "card-a100", key="order-7")
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    # The same money for a different product is still a different request.
    conflict = buy(w, "alice", "card-b", key="order-7")
    assert conflict.status_code == 409 and "'order-7'" in conflict.json()["detail"]
    assert_nothing_moved(w, before)


BAD_PURCHASES = [
    ({"product_id": "nope"}, 404, "no product 'nope'"),
    ({"product_id": "card-a100", "quantity": 0}, 422, "quantity"),
    ({"product_id": "card-a100", "quantity": -3}, 422, "quantity"),
    ({"product_id": "card-a100", "quantity": 1.0}, 422, "quantity"),
    ({"product_id": "card-a100", "quantity": 7}, 402, "short"),
    ({"product_id": "retired"}, 409, "no longer sold"),
]


@pytest.mark.parametrize("body,status,reason", BAD_PURCHASES, ids=[r for *_, r in BAD_PURCHASES])
def test_bad_purchases_move_no_money(money_world: World, body: dict[str, Any], status: int, reason: str) -> None:
    w = money_world
    w.call("op", "POST", "/v1/products", json=A100_CARD)
    w.call("op", "POST", "/v1/products", json={**A100_CARD, "product_id": "retired"})
    assert w.call("op", "POST", "/v1/products/retired/retire").json()["active"] is False
    top_up(w, "alpha", 5000)
    before = books(w)
    response = w.call("alice", "POST", "/v1/purchases", json=body)
    assert response.status_code == status, response.text
    assert reason in str(response.json()["detail"])
    assert_nothing_moved(w, before)


def test_credit_limit_lets_a_wallet_go_negative_but_no_further(money_world: World) -> None:
    w = money_world
    w.call("op", "POST", "/v1/products", json=A100_CARD)
    w.call("op", "PUT", "/v1/tenants/beta/profile", json={"credit_limit_fen": 1000})
    assert buy(w, "bob", "card-a100").json()["wallet"]["balance_fen"] == -800
    before = books(w)
    refused = buy(w, "bob", "card-a100")
    assert refused.status_code == 402
    assert "credit limit of 1000 fen" in refused.json()["detail"]
    assert_nothing_moved(w, before)


def test_providers_cannot_buy_and_bad_products_are_refused(money_world: World) -> None:
    w = money_world
    before = books(w)
    assert buy(w, "prov1", "card-a100").status_code == 403
    for body, reason in (({**A100_CARD, "du": "0"}, "positive"), ({**A100_CARD, "du": 1.5}, "du"),
                         ({**A100_CARD, "du": "-1"}, "du"), ({**A100_CARD, "price_fen": 0}, "price_fen"),
                         ({**A100_CARD, "models": ["Z900"]}, "Z900"), ({**A100_CARD, "validity_days": 0}, "validity"),
                         ({**PACKAGE, "accelerator_class": None}, "accelerator_class"),
                         ({**A100_CARD, "product_id": "Bad Id"}, "product_id")):
        response = w.call("op", "POST", "/v1/products", json=body)
        assert response.status_code == 422, (body, response.text)
        assert reason in str(response.json()["detail"]), response.text
    assert_nothing_moved(w, before)


def test_refund_of_a_valid_card_and_refusal_of_an_expired_one(money_world: World) -> None:
    w = money_world
    w.call("op", "POST", "/v1/products", json={**A100_CARD, "validity_days": 1})
    top_up(w, "alpha", 2000)
    ids = [h["holding_id"] for h in buy(w, "alice", "card-a100", quantity=2).json()["holdings"]]
    assert all("#" in i for i in ids)  # holding ids are <purchase>#<n>: quote them in a URL
    first, second = (quote(i, safe="") for i in ids)
    assert w.call("bob", "POST", f"/v1/holdings/{first}/refund").status_code == 404
    refunded = w.call("alice", "POST", f"/v1/holdings/{first}/refund")
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["refunded_fen"] == 800 and refunded.json()["holding"]["state"] == "refunded"
    assert w.call("alice", "POST", f"/v1/holdings/{first}/refund").status_code == 409  # already refunded

    w.clock.advance(DAY_MS)  # the second card has now expired
    before = books(w)
    expired = w.call("alice", "POST", f"/v1/holdings/{second}/refund")
    assert expired.status_code == 409 and "expired" in expired.json()["detail"]
    assert_nothing_moved(w, before)
    assert w.call("alice", "POST", "/v1/holdings/expire").status_code == 403
    written_off = w.call("op", "POST", "/v1/holdings/expire").json()["expired"]
    assert written_off == [{"holding_id": ids[1], "tenant": "alpha", "breakage_fen": 800}]
    assert balances(w) == {"breakage_revenue": 800, "external": -2000, "prepaid:alpha": 0, "wallet:alpha": 1200}
    assert w.call("op", "POST", "/v1/holdings/expire").json()["expired"] == []


def test_concurrent_purchases_never_overdraw_and_a_key_is_used_once(money_world: World) -> None:
    w = money_world
    w.call("op", "POST", "/v1/products", json=A100_CARD)
    top_up(w, "alpha", 2000)  # room for two cards, not three
    with w.db.reading() as session:
        alice = session.scalar(select(User).where(User.name == "alice"))
        op = session.scalar(select(User).where(User.name == "op"))
        assert alice is not None and op is not None
    buyer = Principal(alice.id, "alice", "tenant", alice.tenant_id, None, "alpha")
    operator = Principal(op.id, "op", "operator", op.tenant_id, None, "alpha")

    def attempt_buy(n: int) -> str:
        try:
            with w.db.transaction() as session:
                products.purchase(session=session, principal=buyer, tenant=None, product_id="card-a100", quantity=1,
                                  key=f"order-{n}", now_ms=w.clock.now_ms())
            return "bought"
        except ServiceError as exc:
            return str(exc.status)

    def same_key_top_up(_: int) -> str:
        try:
            with w.db.transaction() as session:
                wallets.top_up(session=session, principal=operator, tenant="beta", amount_fen=100, key="wire-9",
                               now_ms=w.clock.now_ms())
            return "ok"
        except ServiceError as exc:
            return str(exc.status)

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt_buy, range(6)))
        assert sorted(outcomes) == ["402"] * 4 + ["bought"] * 2
        assert set(pool.map(same_key_top_up, range(6))) == {"ok"}
    assert balances(w) == {"external": -2100, "prepaid:alpha": 1600, "wallet:alpha": 400, "wallet:beta": 100}
