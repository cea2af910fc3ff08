"""core/billing/products.py and holdings.py: buying prepaid products, drawing them down, refunds and expiry."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.billing import (
    BREAKAGE_REVENUE,
    BillingError,
    CardExpired,
    CardNotApplicable,
    HoldingState,
    HourCard,
    InsufficientFunds,
    InvalidAmount,
    Ledger,
    ProductInactive,
    TrainingPackage,
    UnknownProduct,
    draw_down,
    draw_from,
    expire_holding,
    prepaid,
    purchase_product,
    refund_holding,
    resolve_accelerator_class,
    top_up,
    wallet,
)
from computegrid.core.billing.holdings import Holding
from computegrid.core.catalog import default_catalog
from tests.core._helpers import FAST
from tests.core.billing._builders import A100_CARD, A100_PACKAGE, ANY_CARD, DAY_MS, PRODUCTS

T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def _buy(product_id="card-a100", *, balance=10_000, limit=0, quantity=1, purchase_id="b1", at_ms=T0):
    return purchase_product(products=PRODUCTS, product_id=product_id, tenant="acme", purchase_id=purchase_id,
                            at_ms=at_ms, wallet_balance_fen=balance, credit_limit_fen=limit, quantity=quantity)


def test_buying_moves_the_price_from_wallet_to_prepaid():
    bought = _buy("card-any", quantity=2)
    assert bought.posting.key == "purchase:b1"
    assert bought.posting.effect == {wallet("acme"): -3000, prepaid("acme"): 3000}
    assert [h.holding_id for h in bought.holdings] == ["b1#1", "b1#2"]
    h = bought.holdings[0]
    assert (h.du_total, h.price_fen, h.valid_from_ms, h.expires_ms) == (Fraction(2), 1500, T0, T0 + 7 * DAY_MS)
    assert h.allowed_models is None and h.value_left_fen == 1500


def test_a_package_carries_its_priority():
    h = _buy("pkg-a100").holdings[0]
    assert (h.priority, h.du_total, h.price_fen) == (5, Fraction(10), 7000)
    assert not hasattr(h, "storage_gb")  # storage is not sold
    assert h.covers("A100-40G") and not h.covers("H100-80G")


def test_buying_on_credit_up_to_the_limit():
    assert _buy(balance=300, limit=500).posting.effect[wallet("acme")] == -800
    with pytest.raises(InsufficientFunds, match="would leave -501 fen, 1 fen short"):
        _buy(balance=299, limit=500)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"product_id": "card-nope"}, UnknownProduct, "no product 'card-nope'"),
    ({"product_id": "card-old"}, ProductInactive, "no longer sold"),
    ({"quantity": 0}, InvalidAmount, "quantity must be a positive whole number"),
    ({"quantity": -1}, InvalidAmount, "quantity"),
    ({"balance": 100}, InsufficientFunds, "wallet of acme holds 100 fen"),
    ({"limit": -5}, InvalidAmount, "credit limit of acme must be zero or more"),
    ({"purchase_id": ""}, BillingError, "purchase id"),
])
def test_bad_purchases_are_refused_and_move_nothing(kwargs, error, message):
    ledger = Ledger()
    ledger.post(top_up(tenant="acme", amount_fen=10_000, topup_id="t", at_ms=T0))
    before = ledger.balances()
    with pytest.raises(error, match=message):
        ledger.post(_buy(**kwargs).posting)
    assert ledger.balances() == before


@pytest.mark.parametrize(("make", "message"), [
    (lambda: HourCard("c", "c", Fraction(-1), 10, 1), "du must be positive"),
    (lambda: HourCard("c", "c", 1.5, 10, 1), "exact du amount"),  # type: ignore[arg-type]
    (lambda: HourCard("c", "c", Fraction(1), -10, 1), "price must be positive"),
    (lambda: HourCard("c", "c", Fraction(1), 10, 0), "validity in days must be a positive"),
    (lambda: HourCard("c", "c", Fraction(1), 10, 1, allowed_models=frozenset()), "allowed_models is empty"),
    (lambda: HourCard("", "c", Fraction(1), 10, 1), "product id"),
    (lambda: TrainingPackage("p", "p", "A100", frozenset(), Fraction(1), 0, 10, 1), "covers no accelerator"),
    (lambda: TrainingPackage("p", "p", "A100", frozenset({"A100-80G"}), Fraction(1), 1.5, 10, 1),  # type: ignore[arg-type]
     "priority must be an int"),
])
def test_ill_formed_products_are_refused(make, message):
    with pytest.raises(BillingError, match=message):
        make()


def test_accelerator_classes_resolve_through_the_catalog():
    assert resolve_accelerator_class("A100", default_catalog()) == frozenset({"A100-40G", "A100-80G"})
    with pytest.raises(BillingError, match="unknown accelerator 'Z9'"):
        resolve_accelerator_class("Z9", default_catalog())


def _holding(hid, expires_days, du=1, price=800, models=None, valid_from=T0):
    return Holding(holding_id=hid, tenant="acme", product_id="c", du_total=Fraction(du), price_fen=price,
                   valid_from_ms=valid_from, expires_ms=T0 + expires_days * DAY_MS, allowed_models=models)


def test_draw_down_uses_the_soonest_expiring_valid_card_first():
    late, soon, a100_only = _holding("late", 20), _holding("soon", 5), _holding("a100", 1, models=frozenset({"A100"}))
    dd = draw_down([late, soon, a100_only], Fraction(3, 2), "T4", T0 + DAY_MS)
    assert dd.covered_du == Fraction(3, 2)
    assert [(d.holding_id, d.du, d.value_fen) for d in dd.draws] == [("soon", 1, 800), ("late", Fraction(1, 2), 400)]
    assert [h.du_left for h in dd.holdings] == [Fraction(1, 2), 0, 1]  # same order as given


def test_draw_down_never_draws_expired_or_not_yet_valid_cards():
    expired, future = _holding("old", 1), _holding("new", 30, valid_from=T0 + 10 * DAY_MS)
    dd = draw_down([expired, future], Fraction(1), "T4", T0 + 2 * DAY_MS)
    assert dd.covered_du == 0 and dd.draws == () and dd.holdings == (expired, future)


def test_draw_down_covers_what_it_can_and_leaves_the_rest():
    dd = draw_down([_holding("a", 5)], Fraction(5, 2), "T4", T0)
    assert dd.covered_du == 1 and dd.value_fen == 800


def test_released_value_adds_up_to_the_price_whatever_the_draws():
    h = _holding("h", 5, du=3, price=1000)  # 333.33 fen per du
    values = []
    for _ in range(3):
        h, draw = draw_from(h, Fraction(1), "T4", T0)
        values.append(draw.value_fen)
    assert values == [333, 334, 333] and sum(values) == 1000 and h.value_left_fen == 0


@FAST
@given(st.lists(st.fractions(min_value=Fraction(1, 1000), max_value=2, max_denominator=1000), max_size=12),
       st.integers(1, 10**6), st.integers(1, 5))
def test_draws_release_exactly_the_price_when_used_up(draws, price, du_total):
    h = _holding("h", 5, du=du_total, price=price)
    released = 0
    for want in draws:
        left_before = h.du_left
        dd = draw_down([h], want, "T4", T0)
        (h,) = dd.holdings
        assert dd.covered_du == min(want, left_before)
        released += dd.value_fen
        assert released + h.value_left_fen == price
    rest = draw_down([h], h.du_left, "T4", T0)
    assert released + rest.value_fen == price


def test_explicit_use_of_an_expired_card_is_refused():
    h = _holding("h", 5)
    with pytest.raises(CardExpired, match="expired"):
        draw_from(h, Fraction(1, 2), "T4", T0 + 5 * DAY_MS)
    with pytest.raises(CardExpired, match="not valid until"):
        draw_from(_holding("f", 30, valid_from=T0 + DAY_MS), Fraction(1, 2), "T4", T0)
    with pytest.raises(CardNotApplicable, match="does not cover T4"):
        draw_from(_holding("a", 5, models=frozenset({"A100-80G"})), Fraction(1, 2), "T4", T0)
    with pytest.raises(CardNotApplicable, match="has 1 du left, not 2"):
        draw_from(h, Fraction(2), "T4", T0)
    with pytest.raises(InvalidAmount, match="must be positive"):
        draw_from(h, Fraction(0), "T4", T0)


def test_refund_returns_the_unused_value_at_the_card_price():
    h, _ = draw_from(_holding("h", 5, du=4, price=1000), Fraction(1), "T4", T0)
    closed, posting = refund_holding(h, T0 + DAY_MS)
    assert posting is not None and posting.key == "refund:h"
    assert posting.effect == {wallet("acme"): 750, prepaid("acme"): -750}
    assert closed.state is HoldingState.REFUNDED and closed.du_left == 0 and closed.value_left_fen == 0
    with pytest.raises(BillingError, match="is refunded and cannot be refunded"):
        refund_holding(closed, T0 + DAY_MS)
    with pytest.raises(CardExpired, match="expired"):
        refund_holding(_holding("x", 1), T0 + DAY_MS)


def test_expiry_turns_unused_value_into_breakage():
    h, _ = draw_from(_holding("h", 5, du=4, price=1000), Fraction(3), "T4", T0)
    with pytest.raises(BillingError, match="does not expire until"):
        expire_holding(h, T0)
    closed, posting = expire_holding(h, T0 + 5 * DAY_MS)
    assert posting is not None and posting.effect == {prepaid("acme"): -250, BREAKAGE_REVENUE: 250}
    assert closed.state is HoldingState.EXPIRED
    used_up, _ = draw_from(_holding("u", 5), Fraction(1), "T4", T0)
    assert expire_holding(used_up, T0 + 5 * DAY_MS)[1] is None
    with pytest.raises(BillingError, match="already expired"):
        expire_holding(closed, T0 + 6 * DAY_MS)


def test_products_fen_per_du():
    assert A100_CARD.fen_per_du == 800 and ANY_CARD.fen_per_du == 750 and A100_PACKAGE.fen_per_du == 700
