from __future__ import annotations

from fractions import Fraction

import pytest

from computegrid.core.market import ClassPrice, MarketClass, OrderError, QuoteRequest, SpotIndex, quote
from tests.core.market._builders import CATALOG, HOUR, T0, offer

A100 = MarketClass("A100-80G", "wulanchabu")
OFFERS = [
    offer("cheap", floor=100, on_demand_fen_per_du=250),
    offer("dear", floor=140, on_demand_fen_per_du=200, site="s2"),
    offer("t4", model="T4", region="guizhou", floor=60),
    offer("blk", kind="reserved", floor=120, window_start_ms=T0, window_end_ms=T0 + 48 * HOUR),
]


def test_quote_lists_each_way_to_buy_cheapest_first_with_du_and_total() -> None:
    index = SpotIndex().record(T0 - HOUR, [ClassPrice(A100, 130, 120, 140, 8)])
    q = quote(QuoteRequest(devices=2, models=frozenset({"A100-80G"}), duration_ms=3 * HOUR), OFFERS, index, CATALOG,
              at_ms=T0)
    assert q.explanation is None
    on_demand = q.cheapest("on-demand")
    assert on_demand is not None and (on_demand.offer_id, on_demand.price_fen_per_du) == ("dear", 200)
    assert on_demand.du_per_hour == 2 * Fraction(312, 1000)
    assert on_demand.estimated_total_fen == on_demand.du_per_hour * 3 * 200
    spot = q.cheapest("spot")
    # the index (130) where it is above the floor; the offer's floor (140) where that is higher
    assert spot is not None and (spot.offer_id, spot.price_fen_per_du) == ("cheap", 130)
    assert [o.price_fen_per_du for o in q.options if o.kind == "spot"] == [130, 140]
    reserved = q.cheapest("reserved")
    assert reserved is not None and (reserved.offer_id, reserved.price_fen_per_du) == ("blk", 120)


def test_spot_falls_back_to_the_floor_before_a_class_has_traded() -> None:
    q = quote(QuoteRequest(devices=1, models=frozenset({"T4"})), OFFERS, SpotIndex(), CATALOG, at_ms=T0)
    spot = q.cheapest("spot")
    assert spot is not None and spot.price_fen_per_du == 60 and "no spot price yet" in spot.note
    assert q.explanation == "no on-demand or reserved capacity matches"


def test_no_match_explains_what_each_constraint_excluded() -> None:
    q = quote(QuoteRequest(devices=1, models=frozenset({"H100-80G"}), regions=frozenset({"wulanchabu"})), OFFERS,
              SpotIndex(), CATALOG, at_ms=T0)
    assert q.options == ()
    assert q.explanation == "no capacity matches: model (accepts H100-80G) excluded 4 offers"
    q = quote(QuoteRequest(devices=16, regions=frozenset({"wulanchabu"}), start_ms=T0 + 47 * HOUR,
                           duration_ms=2 * HOUR), OFFERS, SpotIndex(), CATALOG, at_ms=T0)
    assert q.explanation == ("no capacity matches: region (accepts wulanchabu) excluded 1 offer; window (reserved "
                             f"offers must hold [{T0 + 47 * HOUR}, {T0 + 49 * HOUR}) ms) excluded 1 offer; "
                             "devices (needs 16 on one offer) excluded 2 offers")


def test_bad_quote_requests_are_rejected() -> None:
    with pytest.raises(OrderError, match="devices must be a positive whole number"):
        QuoteRequest(devices=0)
    with pytest.raises(OrderError, match="duration must be a positive"):
        QuoteRequest(devices=1, duration_ms=0)
    with pytest.raises(OrderError, match="before now"):
        quote(QuoteRequest(devices=1, start_ms=T0 - 1), OFFERS, SpotIndex(), CATALOG, at_ms=T0)
