from __future__ import annotations

from fractions import Fraction

import pytest

from computegrid.core.market import OrderError, clear, free_devices, resell, reserve
from computegrid.core.market.reserved import peak_devices
from tests.core.market._builders import CATALOG, HOUR, T0, bid, offer

BLOCK = offer("r1", kind="reserved", devices=8, floor=120, window_start_ms=T0, window_end_ms=T0 + 24 * HOUR)


def book(id: str, devices: int, start_h: int, end_h: int, existing: list, tenant: str = "t1"):  # type: ignore[no-untyped-def,type-arg]
    return reserve(BLOCK, existing, reservation_id=id, tenant=tenant, devices=devices, start_ms=T0 + start_h * HOUR,
                   end_ms=T0 + end_h * HOUR, at_ms=T0, catalog=CATALOG)


def test_reservation_prices_the_block_at_the_offer_floor() -> None:
    r = book("a", 2, 1, 4, [])
    assert (r.devices, r.price_fen_per_du, r.market_class.model) == (2, 120, "A100-80G")
    assert r.du == 2 * Fraction(312, 1000) * 3
    assert r.cost_fen == r.du * 120


def test_overlapping_reservations_never_oversubscribe_but_disjoint_ones_reuse_devices() -> None:
    held = [book("a", 5, 0, 10, [])]
    held.append(book("b", 3, 5, 12, held))
    with pytest.raises(OrderError, match=r"has 0 devices free over .* 1 asked"):
        book("c", 1, 6, 7, held)
    held.append(book("d", 8, 12, 20, held))  # starts when b ends: no overlap
    held.append(book("e", 3, 0, 5, held))  # fits beside a before b starts
    assert free_devices(BLOCK, held, T0, T0 + 24 * HOUR) == 0
    assert free_devices(BLOCK, held, T0 + 20 * HOUR, T0 + 24 * HOUR) == 8
    assert peak_devices([(2, 0, 10), (3, 10, 20), (4, 5, 15)], 0, 20) == 7


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"start_ms": T0 - 1}, "in the past"),
    ({"end_ms": T0 + 25 * HOUR}, "outside offer 'r1'"),
    ({"devices": 0}, "devices must be a positive whole number"),
    ({"end_ms": T0 + HOUR, "start_ms": T0 + HOUR}, "empty window"),
])
def test_bad_reservations_are_rejected(kwargs: dict[str, int], message: str) -> None:
    args = {"reservation_id": "x", "tenant": "t", "devices": 1, "start_ms": T0, "end_ms": T0 + HOUR, "at_ms": T0,
            "catalog": CATALOG} | kwargs
    with pytest.raises(OrderError, match=message):
        reserve(BLOCK, [], **args)  # type: ignore[arg-type]
    with pytest.raises(OrderError, match="open spot capacity"):
        reserve(offer(), [], reservation_id="x", tenant="t", devices=1, start_ms=T0, end_ms=T0 + HOUR, at_ms=T0,
                catalog=CATALOG)


def test_unused_future_time_is_resold_once_and_can_be_bought() -> None:
    r = book("a", 4, 0, 10, [])
    now = T0 + 2 * HOUR
    first = resell(r, BLOCK, [], offer_id="rs1", devices=3, from_ms=T0 + 4 * HOUR, floor_fen_per_du=150, at_ms=now,
                   devices_in_use=1)
    assert (first.kind, first.reseller, first.reservation_id, first.window_start_ms, first.window_end_ms) == \
        ("resale", "t1", "a", T0 + 4 * HOUR, T0 + 10 * HOUR)
    assert (first.model, first.region, first.tier, first.site) == (BLOCK.model, BLOCK.region, BLOCK.tier, BLOCK.site)
    with pytest.raises(OrderError, match=r"0 devices are unused and not yet resold .* 1 asked"):
        resell(r, BLOCK, [first], offer_id="rs2", devices=1, from_ms=T0 + 4 * HOUR, floor_fen_per_du=150, at_ms=now,
               devices_in_use=1)
    with pytest.raises(OrderError, match="only future time can be resold"):
        resell(r, BLOCK, [], offer_id="rs3", devices=1, from_ms=T0 + HOUR, floor_fen_per_du=150, at_ms=now)
    with pytest.raises(OrderError, match="nothing left"):
        resell(r, BLOCK, [], offer_id="rs4", devices=1, from_ms=T0 + 10 * HOUR, floor_fen_per_du=150, at_ms=now)
    # another tenant buys part of the resale block, through the market or directly
    result = clear([bid("buy", devices=2, limit=200, kind="reserved", window_start_ms=T0 + 5 * HOUR,
                        window_end_ms=T0 + 7 * HOUR)], [first], CATALOG, at_ms=now)
    assert [m.offer_id for m in result.matches] == ["rs1"]
    bought = reserve(first, [], reservation_id="b", tenant="t2", devices=3, start_ms=T0 + 4 * HOUR,
                     end_ms=T0 + 10 * HOUR, at_ms=now, catalog=CATALOG)
    assert bought.price_fen_per_du == 150
