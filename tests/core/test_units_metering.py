"""core/units.py and core/metering.py: exact milli-devices and du."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.catalog import default_catalog
from computegrid.core.metering import Usage, UsageInterval, meter
from computegrid.core.units import (
    MILLI_PER_DEVICE,
    MS_PER_HOUR,
    device_seconds,
    du_from_usage,
    to_milli,
)
from tests.core._helpers import FAST, catalog_from_rows

HOUR = MS_PER_HOUR
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, in epoch ms


@pytest.mark.parametrize(
    ("count", "milli"),
    [(1, 1000), (2, 2000), (0.5, 500), ("0.25", 250), (Fraction(3, 4), 750), ("0.001", 1), (0.1, 100),
     (64, 64_000), (0, 0), ("1.5", 1500)],
)
def test_to_milli(count, milli):
    result = to_milli(count)
    assert result == milli
    assert type(result) is int


@pytest.mark.parametrize("count", [0.0005, "0.0005", Fraction(1, 3), "0.1234", Fraction(1, 2000)])
def test_to_milli_rejects_sub_milli(count):
    with pytest.raises(ValueError, match="not a whole number of milli-devices"):
        to_milli(count)


@pytest.mark.parametrize("count", ["abc", "", "1/0"])
def test_to_milli_rejects_non_numbers(count):
    with pytest.raises((ValueError, ZeroDivisionError)):
        to_milli(count)


def test_device_seconds_exact():
    assert device_seconds(1000 * 1000) == 1  # a whole device for one second
    assert device_seconds(500 * 1000) == Fraction(1, 2)
    assert device_seconds(1) == Fraction(1, 1_000_000)
    assert isinstance(device_seconds(7), Fraction)


def test_one_a100_for_one_hour_is_0_312_du():
    tflops = default_catalog().get("A100-80G").fp16_tflops
    assert tflops is not None
    du = du_from_usage(MILLI_PER_DEVICE * HOUR, tflops)
    assert du == Fraction(312, 1000)
    assert isinstance(du, Fraction)


def test_half_an_a100_for_two_hours_is_the_same_du():
    tflops = Fraction(312)
    assert du_from_usage(500 * 2 * HOUR, tflops) == du_from_usage(1000 * HOUR, tflops) == Fraction("0.312")


def test_du_of_h100_hour_is_exact():
    assert du_from_usage(1000 * HOUR, Fraction("989.5")) == Fraction(9895, 10_000)


@FAST
@given(milli=st.integers(1, 1000), ms=st.integers(0, 10 * HOUR), tflops=st.integers(1, 2000))
def test_du_is_linear_and_exact(milli, ms, tflops):
    du = du_from_usage(milli * ms, Fraction(tflops))
    assert du == Fraction(milli, 1000) * Fraction(ms, HOUR) * Fraction(tflops, 1000)
    assert du_from_usage(2 * milli * ms, Fraction(tflops)) == 2 * du


def test_usage_interval_basic():
    iv = UsageInterval(model="A100-80G", share_milli=500, start_ms=T0, end_ms=T0 + 2 * HOUR)
    assert iv.milli_device_ms == 500 * 2 * HOUR


def test_usage_interval_zero_length_is_allowed():
    iv = UsageInterval(model="T4", share_milli=1000, start_ms=T0, end_ms=T0)
    assert iv.milli_device_ms == 0


def test_usage_interval_rejects_end_before_start():
    with pytest.raises(ValueError, match="before it starts"):
        UsageInterval(model="T4", share_milli=1000, start_ms=T0, end_ms=T0 - 1)


@pytest.mark.parametrize("share", [0, -1, 1001, 2000])
def test_usage_interval_rejects_bad_share(share):
    with pytest.raises(ValueError, match="share must be 1..1000"):
        UsageInterval(model="T4", share_milli=share, start_ms=T0, end_ms=T0 + 1)


@pytest.mark.parametrize("share", [1, 1000])
def test_usage_interval_share_bounds_are_inclusive(share):
    assert UsageInterval(model="T4", share_milli=share, start_ms=T0, end_ms=T0 + 1).milli_device_ms == share


def test_meter_one_a100_hour():
    usage = meter([UsageInterval("A100-40G", 1000, T0, T0 + HOUR)], default_catalog())
    assert usage == Usage(device_seconds=Fraction(3600), du=Fraction("0.312"))


def test_meter_sums_models_exactly():
    intervals = [
        UsageInterval("A100-80G", 1000, T0, T0 + HOUR),
        UsageInterval("T4", 500, T0, T0 + HOUR // 2),  # a quarter of a T4-hour
        UsageInterval("V100M32", 250, T0, T0 + 4 * HOUR),  # alias; one V100-hour
    ]
    usage = meter(intervals, default_catalog())
    assert usage.device_seconds == 3600 + 900 + 3600
    assert usage.du == Fraction(312, 1000) + Fraction(65, 4000) + Fraction(125, 1000)


def test_meter_many_small_intervals_do_not_drift():
    # 3600 one-second intervals of an A100: a float sum would drift; the Fraction sum must not.
    intervals = [UsageInterval("A100-80G", 1000, T0 + i * 1000, T0 + (i + 1) * 1000) for i in range(3600)]
    usage = meter(intervals, default_catalog())
    assert usage.du == Fraction("0.312")
    assert usage.device_seconds == 3600


def test_meter_of_nothing_is_zero():
    assert meter([], default_catalog()) == Usage(device_seconds=Fraction(0), du=Fraction(0))


def test_meter_du_none_when_fp16_unknown():
    cat = catalog_from_rows(
        "X1-8G,,acme,alpha,8,,,,,,PCIe,cuda,Acme datasheet (no FP16 figure)",
        "Y2-8G,,acme,alpha,8,,100,,,,PCIe,cuda,Acme datasheet",
    )
    usage = meter([UsageInterval("Y2-8G", 1000, T0, T0 + HOUR), UsageInterval("X1-8G", 1000, T0, T0 + HOUR)], cat)
    assert usage.du is None
    assert usage.device_seconds == 7200  # still counted
    # and the unknown stays unknown whatever comes after it
    later = meter([UsageInterval("X1-8G", 1000, T0, T0 + HOUR), UsageInterval("Y2-8G", 1000, T0, T0 + HOUR)], cat)
    assert later.du is None
    known = meter([UsageInterval("Y2-8G", 1000, T0, T0 + HOUR)], cat)
    assert known.du == Fraction(1, 10)


def test_meter_du_none_when_model_is_none():
    usage = meter([UsageInterval("A100-80G", 1000, T0, T0 + HOUR), UsageInterval(None, 1000, T0, T0 + HOUR)],
                  default_catalog())
    assert usage.du is None
    assert usage.device_seconds == 7200


def test_meter_du_none_when_model_not_in_catalog():
    usage = meter([UsageInterval("B200", 1000, T0, T0 + HOUR)], default_catalog())
    assert usage.du is None
    assert usage.device_seconds == 3600


@FAST
@given(st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 3 * HOUR)), max_size=20))
def test_meter_equals_sum_of_parts(parts):
    cat = default_catalog()
    intervals = [UsageInterval("T4", share, T0, T0 + ms) for share, ms in parts]
    usage = meter(intervals, cat)
    assert usage.du == sum((du_from_usage(s * ms, Fraction(65)) for s, ms in parts), Fraction(0))
    assert usage.device_seconds == sum((Fraction(s * ms, 1_000_000) for s, ms in parts), Fraction(0))
