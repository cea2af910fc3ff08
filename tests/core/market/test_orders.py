from __future__ import annotations

from fractions import Fraction

import pytest

from computegrid.core.market import (
    MarketClass,
    OrderError,
    check_bid,
    check_offer,
    check_spot_bid_floor,
    class_floors,
    clear,
    du_per_device_hour,
    parse_models,
)
from tests.core.market._builders import CATALOG, T0, bid, offer


def test_du_rate_comes_from_the_catalog_fp16_rating() -> None:
    assert du_per_device_hour("A100-80G", CATALOG) == Fraction(312, 1000)
    assert du_per_device_hour("H100-80G", CATALOG) == Fraction(9895, 10000)
    with pytest.raises(OrderError, match="no rated FP16"):
        du_per_device_hour("Ascend910B", CATALOG)
    with pytest.raises(OrderError, match="unknown accelerator model 'B300'"):
        du_per_device_hour("B300", CATALOG)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"devices": 0}, "devices must be a positive whole number, got 0"),
    ({"devices": -2}, "devices must be a positive whole number"),
    ({"floor": -1}, "floor must be a non-negative integer fen/du, got -1"),
    ({"tier": "orbit"}, "tier must be one of core, hub, edge"),
    ({"kind": "reserved"}, "a reserved order needs a window"),
    ({"window_start_ms": T0, "window_end_ms": T0 + 1}, "a spot order is for capacity now and takes no window"),
    ({"kind": "reserved", "window_start_ms": T0, "window_end_ms": T0}, "empty window"),
    ({"kind": "reserved", "window_start_ms": T0 + 5, "window_end_ms": T0}, "empty window"),
    ({"on_demand_fen_per_du": -5}, "on-demand price must be a non-negative integer"),
    ({"device_memory_gb": Fraction(0)}, "device memory must be positive"),
    ({"kind": "resale", "window_start_ms": T0, "window_end_ms": T0 + 1}, "names its reseller and reservation"),
])
def test_bad_offers_are_rejected_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OrderError, match=message):
        offer(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"devices": 0}, "devices must be a positive whole number, got 0"),
    ({"limit": -80}, "limit must be a non-negative integer fen/du, got -80"),
    ({"tier": "moon"}, "tier must be one of core, hub, edge or unset"),
    ({"kind": "reserved"}, "a reserved order needs a window"),
    ({"kind": "reserved", "window_start_ms": T0, "window_end_ms": T0 - 1}, "empty window"),
    ({"kind": "auction"}, "kind must be one of spot, reserved"),
    ({"min_device_memory_gb": Fraction(-1)}, "minimum device memory must not be negative"),
])
def test_bad_bids_are_rejected_with_a_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(OrderError, match=message):
        bid(**kwargs)  # type: ignore[arg-type]


def test_catalog_checks_name_the_order_and_the_model() -> None:
    with pytest.raises(OrderError, match="offer 'o1': unknown accelerator model 'Z9'"):
        check_offer(offer(model="Z9", device_memory_gb=Fraction(80)), CATALOG)
    with pytest.raises(OrderError, match="more than A100-40G has"):
        check_offer(offer(model="A100-40G", device_memory_gb=Fraction(80)), CATALOG)
    with pytest.raises(OrderError, match="canonical model name 'H100-80G'"):
        check_offer(offer(model="H100", device_memory_gb=Fraction(80)), CATALOG)
    with pytest.raises(OrderError, match="bid 'b1': unknown accelerator model 'A100'"):
        check_bid(bid(models={"A100"}), CATALOG)
    assert check_offer(offer(), CATALOG) == Fraction(312, 1000)


def test_parse_models_resolves_groups_and_rejects_unknown_names() -> None:
    assert parse_models("A100|H100", CATALOG) == {"A100-40G", "A100-80G", "H100-80G"}
    assert parse_models("", CATALOG) == frozenset()
    assert parse_models("*", CATALOG) == frozenset()
    assert "MI300X" in parse_models("amd", CATALOG)
    with pytest.raises(OrderError, match="unknown accelerator 'B300'"):
        parse_models("A100|B300", CATALOG)


def test_spot_bid_below_the_class_floor_is_rejected() -> None:
    floors = class_floors([offer("o1", floor=120), offer("o2", floor=150),
                           offer("o3", model="T4", region="guizhou", floor=60)])
    assert floors == {MarketClass("A100-80G", "wulanchabu"): 120, MarketClass("T4", "guizhou"): 60}
    with pytest.raises(OrderError) as err:
        check_spot_bid_floor(bid(limit=80, models={"A100-80G"}, regions={"wulanchabu"}), floors)
    assert str(err.value) == "bid 80 fen/du is below the floor 120 fen/du for A100-80G in wulanchabu"
    with pytest.raises(OrderError, match=r"below the floor of every class it accepts \(lowest: 60 fen/du for T4"):
        check_spot_bid_floor(bid(limit=50), floors)
    check_spot_bid_floor(bid(limit=80), floors)  # T4 in guizhou is within reach
    check_spot_bid_floor(bid(limit=120, models={"A100-80G"}), floors)  # equal to the floor is fine
    check_spot_bid_floor(bid(limit=1, models={"H100-80G"}), floors)  # no open capacity: waits, no error


def test_clear_rejects_duplicate_ids_and_unknown_models() -> None:
    with pytest.raises(OrderError, match="two bids share the id 'b1'"):
        clear([bid("b1"), bid("b1")], [offer()], CATALOG, at_ms=T0)
    with pytest.raises(OrderError, match="two offers share the id 'o1'"):
        clear([bid()], [offer("o1"), offer("o1")], CATALOG, at_ms=T0)
    with pytest.raises(OrderError, match="unknown accelerator model 'B300'"):
        clear([bid(models={"B300"})], [offer()], CATALOG, at_ms=T0)
