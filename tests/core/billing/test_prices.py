"""core/billing/prices.py: fen per du by model, tier and time-of-day band; clear errors for bad schedules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.billing import (
    PriceError,
    PriceRule,
    PriceSchedule,
    TimeBand,
    band_at,
    check_interruptible_price,
    price_fen_per_du,
)
from computegrid.core.billing.prices import next_band_change_ms, parse_hhmm
from tests.core._helpers import FAST
from tests.core.billing._builders import CST, banded_schedule, flat_schedule
from tests.core.billing._builders import at as t


def test_bands_follow_local_time_at_the_site():
    s = banded_schedule()
    assert band_at(s, t("2026-03-02T07:59:59.999+08:00"), CST) == "off-peak"
    assert band_at(s, t("2026-03-02T08:00+08:00"), CST) == "peak"
    assert band_at(s, t("2026-03-02T21:59+08:00"), CST) == "peak"
    assert band_at(s, t("2026-03-02T22:00+08:00"), CST) == "off-peak"
    assert band_at(s, t("2026-03-02T03:00+08:00"), CST) == "off-peak"
    # 10:00 UTC is 18:00 in Beijing (peak) but 10:00 at a UTC site (peak) and 02:00 at UTC-8 (off-peak)
    assert band_at(s, t("2026-03-02T10:00+00:00"), -480) == "off-peak"


def test_price_by_band_model_and_tier():
    s = PriceSchedule(
        provider="p1", base_fen_per_du=1000,
        rules=(PriceRule(1200, band="peak"), PriceRule(600, band="off-peak"), PriceRule(900, tier="edge"),
               PriceRule(2000, model="H100-80G"), PriceRule(1500, model="H100-80G", band="off-peak"),
               PriceRule(1800, model="H100-80G", tier="core")),
        bands=(TimeBand.of("peak", "08:00", "22:00"), TimeBand.of("off-peak", "22:00", "08:00")))
    noon, night = t("2026-03-02T12:00+08:00"), t("2026-03-02T23:00+08:00")
    assert price_fen_per_du(s, "A100-80G", "hub", noon, CST) == 1200
    assert price_fen_per_du(s, "A100-80G", "hub", night, CST) == 600
    assert price_fen_per_du(s, "A100-80G", "edge", noon, CST) == 900  # tier beats band
    assert price_fen_per_du(s, "H100-80G", "hub", noon, CST) == 2000  # model beats tier and band
    assert price_fen_per_du(s, "H100-80G", "hub", night, CST) == 1500  # model+band beats model
    assert price_fen_per_du(s, "H100-80G", "core", night, CST) == 1800  # model+tier beats model+band


def test_uncovered_hours_use_the_base_price():
    s = PriceSchedule(provider="p", base_fen_per_du=1000, rules=(PriceRule(700, band="night"),),
                      bands=(TimeBand.of("night", "01:00", "05:00"),))
    assert price_fen_per_du(s, "T4", "hub", t("2026-03-02T02:00+08:00"), CST) == 700
    assert price_fen_per_du(s, "T4", "hub", t("2026-03-02T06:00+08:00"), CST) == 1000
    assert band_at(s, t("2026-03-02T06:00+08:00"), CST) is None
    assert next_band_change_ms(flat_schedule(), 0, CST) is None


def test_next_band_change():
    s = banded_schedule()
    assert next_band_change_ms(s, t("2026-03-02T21:00+08:00"), CST) == t("2026-03-02T22:00+08:00")
    assert next_band_change_ms(s, t("2026-03-02T22:00+08:00"), CST) == t("2026-03-03T00:00+08:00")  # midnight
    assert next_band_change_ms(s, t("2026-03-03T00:00+08:00"), CST) == t("2026-03-03T08:00+08:00")


@pytest.mark.parametrize(("make", "message"), [
    (lambda: PriceSchedule("p", -1), "base price must not be negative"),
    (lambda: PriceSchedule("p", 10.5), "whole number of fen per du"),
    (lambda: PriceSchedule("p", 10, interruptible_floor_fen_per_du=-2), "floor must not be negative"),
    (lambda: PriceRule(-5, model="T4"), "must not be negative"),
    (lambda: PriceRule(5), "must name a model, a tier or a band"),
    (lambda: PriceRule(5, tier="moon"), "tier must be one of core, hub, edge"),
    (lambda: PriceSchedule("p", 10, bands=(TimeBand.of("a", "08:00", "12:00"), TimeBand.of("b", "11:00", "13:00"))),
     "time bands 'a' and 'b' overlap"),
    (lambda: PriceSchedule("p", 10, bands=(TimeBand.of("a", "20:00", "02:00"), TimeBand.of("b", "01:00", "03:00"))),
     "overlap"),
    (lambda: PriceSchedule("p", 10, bands=(TimeBand.of("a", "08:00", "12:00"), TimeBand.of("a", "13:00", "14:00"))),
     "band names must be unique"),
    (lambda: PriceSchedule("p", 10, rules=(PriceRule(5, band="peak"),)), "unknown band 'peak'"),
    (lambda: PriceSchedule("p", 10, rules=(PriceRule(5, model="T4"), PriceRule(6, model="T4"))),
     r"two price rules for \(model=T4\)"),
    (lambda: PriceSchedule("", 10), "needs a provider"),
    (lambda: TimeBand.of("a", "08:00", "08:00"), "empty or covers the whole day"),
    (lambda: TimeBand.of("a", "00:00", "24:00"), "empty or covers the whole day"),
    (lambda: TimeBand.of("a", "8:00", "09:00"), "HH:MM"),
    (lambda: TimeBand.of("a", "24:30", "09:00"), "HH:MM"),
    (lambda: TimeBand("a", -1, 60), "minute of the day"),
    (lambda: TimeBand("", 0, 60), "needs a name"),
])
def test_ill_formed_schedules_are_refused(make, message):
    with pytest.raises(PriceError, match=message):
        make()


def test_bad_tier_and_offset_are_refused():
    with pytest.raises(PriceError, match="tier must be one of"):
        price_fen_per_du(banded_schedule(), "T4", "orbit", 0, CST)
    with pytest.raises(PriceError, match="UTC offset"):
        price_fen_per_du(banded_schedule(), "T4", "hub", 0, 900)


def test_interruptible_floor():
    assert check_interruptible_price(banded_schedule(), 300) == 300
    with pytest.raises(PriceError, match="below the floor of 300 fen/du"):
        check_interruptible_price(banded_schedule(), 299)


def test_parse_hhmm():
    assert parse_hhmm("00:00") == 0
    assert parse_hhmm("08:30") == 510
    assert parse_hhmm("24:00") == 1440


@FAST
@given(st.integers(0, 10**13), st.sampled_from([CST, 0, -300, 330, 840]))
def test_band_is_constant_until_the_next_change(at_ms, offset):
    s = banded_schedule()
    change = next_band_change_ms(s, at_ms, offset)
    assert change is not None and at_ms < change <= at_ms + 86_400_000
    assert band_at(s, change - 1, offset) == band_at(s, at_ms, offset)
