from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.market import (
    ClassPrice,
    MarketClass,
    OnDemandRequest,
    OrderError,
    SpotIndex,
    SpotLease,
    run_spot_round,
)
from tests.core._helpers import FAST
from tests.core.market._builders import CATALOG, HOUR, T0, bid, offer

NOTICE = 120_000
A100 = MarketClass("A100-80G", "wulanchabu")


def lease(id: str, *, devices: int = 4, limit: int = 150, offer_id: str = "o1", started: int = T0 - HOUR,
          tenant: str = "t9") -> SpotLease:
    return SpotLease(id=id, bid_id=f"bid-{id}", tenant=tenant, offer_id=offer_id, devices=devices,
                     limit_fen_per_du=limit, started_ms=started)


def spot_round(**kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"offers": [offer(on_demand_fen_per_du=300)], "leases": [], "bids": [],
                               "on_demand": [], "catalog": CATALOG, "at_ms": T0, "notice_ms": NOTICE}
    args.update(kw)
    return run_spot_round(**args)  # type: ignore[arg-type]


def test_on_demand_preempts_the_lowest_limit_lease_with_notice() -> None:
    result = spot_round(leases=[lease("hi", limit=150), lease("lo", limit=120)],
                        on_demand=[OnDemandRequest("od1", "t1", "o1", 3)])
    (p,) = result.preemptions
    assert (p.lease_id, p.reason, p.by, p.preempt_at_ms, p.devices) == ("lo", "on-demand", "od1", T0 + NOTICE, 4)
    (grant,) = result.on_demand
    assert (grant.devices, grant.price_fen_per_du, grant.start_ms) == (3, 300, T0 + NOTICE)
    # the lease that keeps running still has a class price within its limit
    (price,) = result.prices
    assert price.market_class == A100 and 100 <= price.price_fen_per_du <= 150 and price.devices == 4


def test_on_demand_outranks_any_spot_limit_and_starts_now_when_there_is_room() -> None:
    result = spot_round(leases=[lease("rich", limit=10_000, devices=4)],
                        on_demand=[OnDemandRequest("od1", "t1", "o1", 4)])
    assert result.preemptions == ()
    assert result.on_demand[0].start_ms == T0
    result = spot_round(leases=[lease("rich", limit=10_000, devices=4)],
                        on_demand=[OnDemandRequest("od1", "t1", "o1", 5)])
    assert [p.lease_id for p in result.preemptions] == ["rich"]


def test_on_demand_that_cannot_be_served_says_why() -> None:
    result = spot_round(offers=[offer("o1", on_demand_fen_per_du=300), offer("o2", floor=100)],
                        on_demand=[OnDemandRequest("big", "t1", "o1", 9), OnDemandRequest("np", "t1", "o2", 1),
                                   OnDemandRequest("nx", "t1", "o3", 1)])
    reasons = dict(result.unserved_on_demand)
    assert reasons["big"] == "offer 'o1' has 8 devices left for on-demand, 9 asked"
    assert reasons["np"] == "offer 'o2' posts no on-demand price"
    assert reasons["nx"] == "offer 'o3' is not open capacity now"


def test_equal_limits_preempt_the_most_recently_started_first() -> None:
    leases = [lease("old", limit=120, started=T0 - 5 * HOUR), lease("new", limit=120, started=T0 - HOUR)]
    result = spot_round(leases=leases, on_demand=[OnDemandRequest("od1", "t1", "o1", 1)])
    assert [p.lease_id for p in result.preemptions] == ["new"]


def test_a_higher_bid_outbids_a_running_lease_but_an_equal_one_does_not() -> None:
    full = [lease("l1", devices=8, limit=120)]
    result = spot_round(leases=full, bids=[bid("b1", devices=4, limit=200)])
    (p,) = result.preemptions
    assert (p.lease_id, p.reason, p.by, p.preempt_at_ms) == ("l1", "outbid", "b1", T0 + NOTICE)
    (alloc,) = result.allocations
    assert (alloc.bid_id, alloc.offer_id, alloc.start_ms) == ("b1", "o1", T0 + NOTICE)
    result = spot_round(leases=full, bids=[bid("b1", devices=4, limit=120)])
    assert result.preemptions == () and result.unmatched_bids == ("b1",)


def test_free_capacity_is_used_before_anyone_is_preempted() -> None:
    result = spot_round(offers=[offer("o1", floor=100), offer("o2", floor=110)],
                        leases=[lease("l1", devices=8, limit=120, offer_id="o1")],
                        bids=[bid("b1", devices=2, limit=500)])
    assert result.preemptions == ()
    assert [(a.bid_id, a.offer_id, a.start_ms) for a in result.allocations] == [("b1", "o2", T0)]
    (price,) = result.prices
    assert 110 <= price.price_fen_per_du <= 120 and price.devices == 10  # old and new share one price


def test_outbidding_takes_the_lowest_limits_first_and_only_what_it_needs() -> None:
    leases = [lease("a", devices=2, limit=130), lease("b", devices=2, limit=110), lease("c", devices=4, limit=140)]
    result = spot_round(leases=leases, bids=[bid("b1", devices=2, limit=135)])
    assert [p.lease_id for p in result.preemptions] == ["b"]


def test_leases_that_no_longer_fit_are_preempted() -> None:
    shrunk = offer("o1", devices=4, floor=100)
    result = spot_round(offers=[shrunk], leases=[lease("x", limit=130), lease("y", limit=125)])
    assert [(p.lease_id, p.reason) for p in result.preemptions] == [("y", "capacity")]
    result = spot_round(offers=[offer("o1", floor=140)], leases=[lease("x", limit=130, devices=2)])
    assert [(p.lease_id, p.reason) for p in result.preemptions] == [("x", "priced-out")]
    result = spot_round(offers=[], leases=[lease("x")])
    assert [(p.lease_id, p.reason, p.preempt_at_ms) for p in result.preemptions] == [("x", "capacity", T0 + NOTICE)]


def test_bad_round_input_is_rejected() -> None:
    with pytest.raises(OrderError, match="notice period must be a non-negative"):
        spot_round(notice_ms=-1)
    with pytest.raises(OrderError, match="takes open \\(spot\\) offers only"):
        spot_round(offers=[offer(kind="reserved", window_start_ms=T0, window_end_ms=T0 + HOUR)])
    with pytest.raises(OrderError, match="takes spot bids only"):
        spot_round(bids=[bid(kind="reserved", window_start_ms=T0, window_end_ms=T0 + HOUR)])
    with pytest.raises(OrderError, match="devices must be a positive whole number"):
        spot_round(on_demand=[OnDemandRequest("od", "t", "o1", 0)])


def test_spot_index_history_average_and_charges() -> None:
    index = SpotIndex()
    index = index.record(T0, [ClassPrice(A100, 100, 90, 110, 8)])
    index = index.record(T0 + HOUR, [ClassPrice(A100, 130, 120, 140, 8)])
    assert index.latest(A100).price_fen_per_du == 130  # type: ignore[union-attr]
    assert index.latest(MarketClass("T4", "guizhou")) is None
    assert index.price_at(A100, T0 - 1) is None
    assert index.price_at(A100, T0 + HOUR - 1) == 100
    assert [p.price_fen_per_du for p in index.between(A100, T0, T0 + HOUR)] == [100]
    # 1 h at 100 then 30 min at 130
    assert index.time_weighted_average(A100, T0, T0 + 3 * HOUR // 2) == Fraction(100 * 2 + 130, 3)
    rate = Fraction(312, 1000)
    # a lease preempted 90 minutes in is charged for those 90 minutes only, at the price in force
    charged = index.charge_fen(A100, devices=4, du_per_device_hour=rate, start_ms=T0, end_ms=T0 + 3 * HOUR // 2)
    assert charged == 4 * rate * (1 * 100 + Fraction(1, 2) * 130)
    with pytest.raises(OrderError, match="no price for A100-80G in wulanchabu"):
        index.charge_fen(A100, devices=1, du_per_device_hour=rate, start_ms=T0 - HOUR, end_ms=T0)
    with pytest.raises(OrderError, match="already has a point"):
        index.record(T0 + HOUR, [ClassPrice(A100, 1, 1, 1, 1)])


def test_a_round_feeds_the_index() -> None:
    result = spot_round(bids=[bid("b1", devices=2, limit=200)])
    index = SpotIndex().record(result.at_ms, result.prices)
    assert index.latest(A100) is not None and index.latest(A100).price_fen_per_du == 150  # type: ignore[union-attr]


@st.composite
def spot_books(draw: st.DrawFn) -> dict[str, object]:
    offers = [offer(f"o{i}", model=draw(st.sampled_from(["T4", "A100-80G"])), devices=draw(st.integers(1, 8)),
                    floor=draw(st.integers(50, 150)),
                    on_demand_fen_per_du=draw(st.sampled_from([None, 300])))
              for i in range(draw(st.integers(0, 4)))]
    offer_ids = [o.id for o in offers] + ["gone"]
    leases = [lease(f"l{i}", devices=draw(st.integers(1, 6)), limit=draw(st.integers(40, 200)),
                    offer_id=draw(st.sampled_from(offer_ids)), started=T0 - draw(st.integers(1, 10)) * HOUR)
              for i in range(draw(st.integers(0, 6)))]
    bids = [bid(f"b{i}", devices=draw(st.integers(1, 6)), limit=draw(st.integers(40, 250)),
                models=set(draw(st.lists(st.sampled_from(["T4", "A100-80G"]), max_size=1))))
            for i in range(draw(st.integers(0, 5)))]
    on_demand = [OnDemandRequest(f"d{i}", "t1", draw(st.sampled_from(offer_ids)), draw(st.integers(1, 6)))
                 for i in range(draw(st.integers(0, 3)))]
    return {"offers": offers, "leases": leases, "bids": bids, "on_demand": on_demand}


@FAST
@given(spot_books())
def test_a_spot_round_never_oversells_and_prices_every_running_lease_within_its_limit(
        book: dict[str, list]) -> None:  # type: ignore[type-arg]
    result = spot_round(**book)
    offers = {o.id: o for o in book["offers"]}
    preempted = {p.lease_id: p for p in result.preemptions}
    assert all(p.preempt_at_ms == T0 + NOTICE for p in result.preemptions)
    running = [(x.offer_id, x.devices, x.limit_fen_per_du) for x in book["leases"] if x.id not in preempted]
    running += [(a.offer_id, a.devices, a.limit_fen_per_du) for a in result.allocations]
    used = {o: sum(g.devices for g in result.on_demand if g.offer_id == o) for o in offers}
    for offer_id, devices, _ in running:
        used[offer_id] += devices
    assert all(used[o] <= offers[o].devices for o in offers)
    prices = {p.market_class: p.price_fen_per_du for p in result.prices}
    for offer_id, _, limit in running:
        assert offers[offer_id].floor_fen_per_du <= prices[offers[offer_id].market_class] <= limit
    limits = {b.id: b.limit_fen_per_du for b in book["bids"]}
    for x in book["leases"]:
        p = preempted.get(x.id)
        if p is not None and p.reason == "outbid":
            assert x.limit_fen_per_du < limits[p.by]  # type: ignore[index]
        if p is not None and p.reason == "on-demand":
            # every lease that keeps running on that offer ranks above the preempted one
            for y in book["leases"]:
                if y.offer_id == x.offer_id and y.id not in preempted:
                    assert (y.limit_fen_per_du, -y.started_ms, y.id) > (x.limit_fen_per_du, -x.started_ms, x.id)
