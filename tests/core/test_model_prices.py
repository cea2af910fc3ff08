"""Model choice by posted price (core.placement.preference): each model's cheapest price among the pool's
priced nodes, and the order by lowest expected fen for the job's work."""

from __future__ import annotations

from dataclasses import replace

from computegrid.core.catalog import default_catalog
from computegrid.core.placement import PlacementRequest
from computegrid.core.placement.preference import cheapest_model_prices, prefer_cheapest_work
from computegrid.core.throughput import default_throughputs

from ._helpers import devices, make_pool, node

WORKLOAD = "ResNet-50 (batch size 64)"  # Gavel: V100 4.39 steps/s, P100 2.62 steps/s, K80 0.62 steps/s
BOTH = PlacementRequest(models=frozenset({"V100-16G", "P100-16G"}), milli_per_node=1000, workload=WORKLOAD)


def order(req: PlacementRequest, prices: dict[str, int]) -> tuple[str, ...]:
    return prefer_cheapest_work(req, default_throughputs(), prices, default_catalog()).model_preference


def test_the_cheapest_posted_price_per_model_among_priced_nodes() -> None:
    pool = make_pool([node(1), node(2), node(3), node(4), node(5)],
                     devices(1, "V100-16G", 2) + devices(2, "V100-16G", 2) + devices(3, "P100-16G", 1)
                     + devices(4, "K80", 1))
    assert cheapest_model_prices(pool) == {}  # nothing priced yet
    pool.set_prices({1: 300, 2: 120, 3: 50, 5: 1})  # node 4 (K80) unpriced, node 5 has no devices
    assert cheapest_model_prices(pool) == {"V100-16G": 120, "P100-16G": 50}


def test_lowest_expected_fen_for_the_work_wins_and_follows_the_prices() -> None:
    assert order(BOTH, {"P100-16G": 100_000, "V100-16G": 10}) == ("V100-16G", "P100-16G")
    assert order(BOTH, {"P100-16G": 10, "V100-16G": 100_000}) == ("P100-16G", "V100-16G")
    # equal prices: per du the P100 does more ResNet-50 steps (2.62 / 18.7 TFLOPS > 4.39 / 125)
    assert order(BOTH, {"P100-16G": 100, "V100-16G": 100}) == ("P100-16G", "V100-16G")
    # the break-even: V100 fen/step = p_v * 125 / 4.39, P100's = p_p * 18.7 / 2.62, so V100 wins once p_p > 3.99 p_v
    assert order(BOTH, {"P100-16G": 400, "V100-16G": 100})[0] == "V100-16G"
    assert order(BOTH, {"P100-16G": 390, "V100-16G": 100})[0] == "P100-16G"


def test_unpriced_models_come_after_priced_ones_ordered_as_if_equally_priced() -> None:
    three = replace(BOTH, models=frozenset({"V100-16G", "P100-16G", "K80"}))
    none = order(three, {})
    assert none == ("P100-16G", "V100-16G", "K80")  # by steps per du; the K80 has no rated FP16, so last
    assert order(three, {"V100-16G": 100_000})[0] == "V100-16G"
    assert order(three, {"V100-16G": 100_000})[1:] == tuple(m for m in none if m != "V100-16G")
    assert order(BOTH, {"V100-16G": 0, "P100-16G": 1}) == order(BOTH, {"V100-16G": 1, "P100-16G": 1})


def test_requests_that_do_not_choose_are_unchanged() -> None:
    single = replace(BOTH, models=frozenset({"V100-16G"}))
    assert order(single, {"V100-16G": 5}) == ()
    assert order(replace(BOTH, workload=None), {"V100-16G": 5}) == ()
