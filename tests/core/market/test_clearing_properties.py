"""Property tests: on any small book, fast and exact clearing are feasible and individually rational."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.market import Bid, Offer, clear, clear_optimal
from computegrid.core.market.book import segment_of
from tests.core._helpers import FAST
from tests.core.market._builders import CATALOG, HOUR, T0, bid, check_feasible, offer

MODELS = ["T4", "A100-80G", "H100-80G"]
REGIONS = ["jingjinji", "guizhou"]
TIERS = ["core", "hub"]
WINDOWS = [(T0 + HOUR, T0 + 3 * HOUR), (T0 + 2 * HOUR, T0 + 5 * HOUR)]


@st.composite
def offers(draw: st.DrawFn) -> list[Offer]:
    count = draw(st.integers(0, 6))
    out = []
    for i in range(count):
        reserved = draw(st.booleans()) and draw(st.booleans())
        window = draw(st.sampled_from(WINDOWS)) if reserved else (None, None)
        out.append(offer(f"o{i}", model=draw(st.sampled_from(MODELS)), region=draw(st.sampled_from(REGIONS)),
                         tier=draw(st.sampled_from(TIERS)), devices=draw(st.integers(1, 8)),
                         floor=draw(st.integers(50, 150)), kind="reserved" if reserved else "spot",
                         window_start_ms=window[0], window_end_ms=window[1]))
    return out


@st.composite
def bids(draw: st.DrawFn) -> list[Bid]:
    count = draw(st.integers(0, 8))
    out = []
    for i in range(count):
        reserved = draw(st.booleans()) and draw(st.booleans())
        start, end = draw(st.sampled_from(WINDOWS)) if reserved else (None, None)
        if reserved and draw(st.booleans()):
            end = start + HOUR if start is not None else None  # a part of a window
        out.append(bid(f"b{i}", devices=draw(st.integers(1, 8)), limit=draw(st.integers(40, 200)),
                       models=set(draw(st.lists(st.sampled_from(MODELS), max_size=2))),
                       regions=set(draw(st.lists(st.sampled_from(REGIONS), max_size=1))),
                       tier=draw(st.sampled_from([None, *TIERS])),
                       min_device_memory_gb=Fraction(draw(st.sampled_from([0, 24, 80]))),
                       kind="reserved" if reserved else "spot", window_start_ms=start, window_end_ms=end))
    return out


@FAST
@given(bids(), offers())
def test_fast_and_exact_clearing_are_feasible_and_priced_within_every_pair(bs: list[Bid], os: list[Offer]) -> None:
    fast = clear(bs, os, CATALOG, at_ms=T0)
    best = clear_optimal(bs, os, CATALOG, at_ms=T0)
    check_feasible(fast, bs, os)
    check_feasible(best, bs, os)
    assert 0 <= fast.surplus_fen <= best.surplus_fen
    # the whole result is a function of the set of orders
    assert clear(list(reversed(bs)), list(reversed(os)), CATALOG, at_ms=T0) == fast


@FAST
@given(bids(), offers())
def test_no_bid_is_left_out_while_an_offer_could_take_it_at_no_loss(bs: list[Bid], os: list[Offer]) -> None:
    """After clearing, an unmatched bid cannot simply be added: the offers it accepts with room either
    cost more than its limit or would break its class's uniform price."""
    result = clear(bs, os, CATALOG, at_ms=T0)
    used = {o.id: 0 for o in os}
    for m in result.matches:
        used[m.offer_id] += m.devices
    bounds = {(p.market_class, p.segment): (p.highest_floor, p.lowest_limit) for p in result.prices}
    for b in bs:
        if b.id not in result.unmatched_bids:
            continue
        for o in os:
            if not b.accepts_offer_statically(o) or o.devices - used[o.id] < b.devices:
                continue
            lo, hi = bounds.get((o.market_class, segment_of(o)), (o.floor_fen_per_du, b.limit_fen_per_du))
            assert max(lo, o.floor_fen_per_du) > min(hi, b.limit_fen_per_du), (b, o)
