"""Multi-factor queue order (core.priority, the `multifactor` queue) and deadline start plans (core.deferral)."""

from __future__ import annotations

import pytest

from computegrid.core.billing.prices import PriceRule, PriceSchedule, TimeBand
from computegrid.core.deferral import SiteTariff, plan_start, window_cost
from computegrid.core.priority import (
    DEFAULT_WEIGHTS,
    MS_PER_DAY,
    PriorityInputs,
    Weights,
    age_factor,
    decay,
    decayed_interval,
    fair_share_factors,
    multifactor_order,
)
from computegrid.core.queueing import MultifactorQueue, QueuedJob, make_queue

HOUR = 3_600_000


def ids(jobs: list[PriorityInputs]) -> list[int]:
    return [j.job_id for j in jobs]


def test_class_goes_first_then_fair_share_then_age() -> None:
    now = 10 * MS_PER_DAY
    jobs = [PriorityInputs(1, now - 7 * MS_PER_DAY, 0, 0, "a"),  # low, oldest possible
            PriorityInputs(2, now, 2, 0, "heavy"),  # high, newest, heaviest user
            PriorityInputs(3, now - MS_PER_DAY, 1, 0, "heavy"),
            PriorityInputs(4, now, 1, 0, "light")]
    order = multifactor_order(jobs, now, {"a": 1, "heavy": 1, "light": 1}, {"heavy": 1000.0, "light": 0.0})
    # high beats everything; among normal jobs the light tenant beats a day of waiting; low goes last
    assert ids(order) == [2, 4, 3, 1]


def test_ties_are_broken_by_submission_then_id() -> None:
    jobs = [PriorityInputs(9, 5), PriorityInputs(3, 5), PriorityInputs(4, 4)]
    assert ids(multifactor_order(jobs, 5, {}, {})) == [4, 3, 9]


def test_factors_are_normalised() -> None:
    assert age_factor(0, 14 * MS_PER_DAY) == 1.0  # capped at PriorityMaxAge
    assert age_factor(0, 7 * MS_PER_DAY // 2) == 0.5
    assert age_factor(10, 0) == 0.0
    f = fair_share_factors({"a": 1, "b": 3}, {"a": 1.0, "b": 1.0})
    # a: usage 1/2 against a share of 1/4 -> 2^-2; b: 1/2 against 3/4 -> 2^(-2/3)
    assert f["a"] == pytest.approx(0.25) and f["b"] == pytest.approx(2 ** (-2 / 3))
    assert fair_share_factors({"a": 1}, {}) == {"a": 1.0}
    assert decay(8.0, 3 * DEFAULT_WEIGHTS.half_life_ms) == pytest.approx(1.0)


def test_decayed_interval_halves_with_the_half_life() -> None:
    h = HOUR
    recent = decayed_interval(0, 1000, 1000, h)
    older = decayed_interval(0, 1000, 1000 + h, h)
    assert recent == pytest.approx(1.0, rel=1e-3) and older == pytest.approx(recent / 2)
    assert decayed_interval(5000, 6000, 4000, h) == 0.0  # not yet happened


def test_package_priority_breaks_equal_classes() -> None:
    jobs = [PriorityInputs(1, 0, 1, 0), PriorityInputs(2, 0, 1, 5)]
    assert ids(multifactor_order(jobs, 0, {}, {})) == [2, 1]
    with pytest.raises(ValueError):
        Weights(age=-1)


def test_multifactor_queue_orders_and_learns_usage() -> None:
    q = make_queue("multifactor", weights={"a": 1, "b": 1})
    assert isinstance(q, MultifactorQueue) and q.backfill
    q.push(QueuedJob(1, 0, 100, 1, "a"))
    q.push(QueuedJob(2, 0, 100, 1, "b"))
    q.push(QueuedJob(3, 0, 100, 1, "a", priority_class=2))
    q.advance(10)
    assert [j.job_id for j in q.ordered(5)] == [3, 1, 2]
    q.remove(3)
    assert q.head() is not None and q.head().job_id == 1  # type: ignore[union-attr]
    q.on_finish(QueuedJob(7, 0, HOUR, 4, "a"))  # tenant a just used 4 devices for an hour
    assert [j.job_id for j in q.ordered(5)] == [2, 1]
    q.remove(2)
    assert len(q) == 1 and [j.job_id for j in q.ordered(5)] == [1]


PEAK_OFF_PEAK = PriceSchedule("p2", 1000, rules=(PriceRule(300, band="off-peak"),),
                              bands=(TimeBand.of("peak", "08:00", "22:00"), TimeBand.of("off-peak", "22:00", "08:00")))
FLAT = PriceSchedule("p1", 900)
# 2027-01-15 08:00 UTC = 16:00 at UTC+8
NOW = 1_800_000_000_000
HUB = SiteTariff("hub-guizhou", "hub", PEAK_OFF_PEAK, 480, ("T4",))
CORE = SiteTariff("core-shanghai", "core", FLAT, 480, ("T4",))


def test_a_job_with_room_waits_for_the_off_peak_band_at_the_hub() -> None:
    plan = plan_start(NOW, NOW + 24 * HOUR, 2 * HOUR, [CORE, HUB])
    assert plan is not None and plan.defers(NOW)
    assert (plan.site, plan.band, plan.start_ms) == ("hub-guizhou", "off-peak", NOW + 6 * HOUR)  # 22:00 local
    assert plan.latest_start_ms == NOW + 22 * HOUR
    assert plan.cost == 300 * 2 * HOUR < plan.cost_now == 900 * 2 * HOUR


def test_a_tight_deadline_starts_now_at_the_cheapest_site() -> None:
    plan = plan_start(NOW, NOW + 5 * HOUR, 2 * HOUR, [CORE, HUB])
    assert plan is not None and not plan.defers(NOW) and plan.site == "core-shanghai"


def test_a_partial_trough_is_used_when_the_deadline_allows_no_more() -> None:
    # latest start 21:00 local: an hour of peak and an hour of off-peak (1300) beats the core site (1800)
    plan = plan_start(NOW, NOW + 7 * HOUR, 2 * HOUR, [CORE, HUB])
    assert plan is not None and plan.start_ms == NOW + 5 * HOUR and plan.site == "hub-guizhou"
    assert plan.start_ms + 2 * HOUR <= NOW + 7 * HOUR


def test_no_priced_site_means_no_plan_and_costs_integrate_bands() -> None:
    assert plan_start(NOW, NOW + HOUR, HOUR, [SiteTariff("x", "hub", FLAT, 480, ())]) is None
    assert window_cost(HUB, NOW + 5 * HOUR, 2 * HOUR) == (1000 + 300) * HOUR
    with pytest.raises(ValueError):
        plan_start(NOW, NOW + HOUR, 0, [HUB])


def test_every_plan_ends_by_its_deadline() -> None:
    for deadline_h in range(1, 60, 3):
        for run_h in (1, 2, 5, 9):
            if run_h > deadline_h:
                continue
            plan = plan_start(NOW, NOW + deadline_h * HOUR, run_h * HOUR, [CORE, HUB])
            assert plan is not None and NOW <= plan.start_ms <= plan.latest_start_ms
            assert plan.start_ms + run_h * HOUR <= NOW + deadline_h * HOUR
