"""core/billing/charges.py: du x fen/du, split at band edges, rounded once half up; preempted jobs pay for time run."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.billing import ChargeError, charge_usage, ran_until, round_half_up
from computegrid.core.catalog import default_catalog
from computegrid.core.metering import UsageInterval
from tests.core._helpers import FAST
from tests.core.billing._builders import CST, HOUR_MS, at, banded_schedule, flat_schedule

CATALOG = default_catalog()


def _charge(intervals, schedule=None):
    return charge_usage(intervals, schedule=schedule or banded_schedule(), tier="hub", utc_offset_min=CST,
                        catalog=CATALOG)


def test_usage_across_the_peak_edge_is_split_by_time():
    # 1 x A100-80G (0.312 du/h) 21:00-23:00 Beijing time: 1 h peak at 1200 + 1 h off-peak at 600
    c = _charge([UsageInterval("A100-80G", 1000, at("2026-03-02T21:00+08:00"), at("2026-03-02T23:00+08:00"))])
    assert [(s.band, s.fen_per_du, s.du) for s in c.slices] == [
        ("peak", 1200, Fraction(312, 1000)), ("off-peak", 600, Fraction(312, 1000))]
    assert c.du == Fraction(624, 1000)
    assert c.exact_fen == Fraction(5616, 10)  # 374.4 + 187.2
    assert c.amount_fen == 562  # rounded once, half up


def test_a_night_run_past_midnight_stays_one_slice():
    c = _charge([UsageInterval("A100-80G", 500, at("2026-03-02T23:00+08:00"), at("2026-03-03T02:00+08:00"))])
    assert len(c.slices) == 1 and c.slices[0].band == "off-peak"
    assert c.du == Fraction(312, 1000) * 3 / 2
    assert c.amount_fen == round_half_up(Fraction(468, 1000) * 600) == 281  # 280.8


def test_rounding_happens_once_per_charge_not_per_slice():
    # three separate hours of a V100 (0.125 du each) at 4 fen/du: 0.5 fen each.
    # Rounding each slice would bill 3 fen; the exact 1.5 fen rounds once, half up, to 2.
    ivs = [UsageInterval("V100-32G", 1000, i * 2 * HOUR_MS, (i * 2 + 1) * HOUR_MS) for i in range(3)]
    c = _charge(ivs, flat_schedule(fen_per_du=4))
    assert [s.exact_fen for s in c.slices] == [Fraction(1, 2)] * 3
    assert c.amount_fen == 2


def test_preempted_job_is_charged_only_for_the_time_it_ran():
    start = at("2026-03-02T10:00+08:00")
    planned = [UsageInterval("A100-80G", 1000, start, start + 4 * HOUR_MS),
               UsageInterval("A100-80G", 1000, start + 5 * HOUR_MS, start + 6 * HOUR_MS)]
    ran = ran_until(planned, start + HOUR_MS // 2)
    assert ran == (UsageInterval("A100-80G", 1000, start, start + HOUR_MS // 2),)
    assert _charge(ran).du == Fraction(156, 1000)
    assert _charge(ran).amount_fen == round_half_up(Fraction(156, 1000) * 1200) == 187  # 187.2
    assert ran_until(planned, start) == ()
    assert ran_until(planned, start + 10 * HOUR_MS) == tuple(planned)


def test_model_aliases_resolve_and_bad_models_are_refused():
    c = _charge([UsageInterval("H100", 1000, 0, HOUR_MS)])
    assert c.models == frozenset({"H100-80G"})
    with pytest.raises(ChargeError, match="names no accelerator model"):
        _charge([UsageInterval(None, 1000, 0, HOUR_MS)])
    with pytest.raises(ChargeError, match="unknown accelerator model 'Z9'"):
        _charge([UsageInterval("Z9", 1000, 0, HOUR_MS)])
    with pytest.raises(ChargeError, match="no published dense FP16 rating"):
        _charge([UsageInterval("Ascend910B", 1000, 0, HOUR_MS)])


def test_empty_intervals_cost_nothing():
    assert _charge([UsageInterval("T4", 1000, 5, 5)]).amount_fen == 0
    assert _charge([]).du == 0


@FAST
@given(start=st.integers(0, 10**12), length=st.integers(0, 3 * 86_400_000), cut=st.integers(0, 3 * 86_400_000),
       share=st.sampled_from([125, 500, 1000]))
def test_splitting_never_changes_du_and_prices_each_slice_at_its_band(start, length, cut, share):
    iv = UsageInterval("A100-80G", share, start, start + length)
    c = _charge([iv])
    assert c.du == Fraction(312, 1000) * Fraction(share, 1000) * Fraction(length, HOUR_MS)
    assert sum(s.end_ms - s.start_ms for s in c.slices) == length
    assert all(s.fen_per_du == (1200 if s.band == "peak" else 600) for s in c.slices)
    # a preempted run never costs more than the full run
    assert _charge(ran_until([iv], start + cut)).exact_fen <= c.exact_fen
