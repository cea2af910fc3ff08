"""The spec's priority class, and the pure admission rules: deadlines that can be met, classes a tenant may use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from computegrid.core.catalog import default_catalog
from computegrid.core.jobs import PRIORITY_CLASSES, SpecError, class_problem, deadline_problem, parse_job_spec
from computegrid.core.jobs.admission import normalise_class_list, parse_class_list

CATALOG = default_catalog()
NOW = int(datetime(2026, 12, 6, 8, 0, tzinfo=UTC).timestamp() * 1000)


def spec(**fields: object):  # type: ignore[no-untyped-def]
    return parse_job_spec({"name": "j", "run": "true", **fields}, CATALOG)


def test_priority_defaults_to_normal_and_round_trips() -> None:
    assert spec().priority == "normal"
    assert "priority" not in spec().to_dict()
    high = spec(priority="high")
    assert high.priority == "high" and PRIORITY_CLASSES[high.priority] == 2
    assert parse_job_spec(high.to_dict(), CATALOG) == high


@pytest.mark.parametrize("value", ["urgent", "HIGH", 2, True, ["high"]])
def test_an_unknown_priority_names_the_field_and_the_classes(value: object) -> None:
    with pytest.raises(SpecError) as caught:
        spec(priority=value)
    assert [p.field for p in caught.value.problems] == ["priority"]
    assert "low, normal, high" in str(caught.value)


def test_a_past_deadline_is_refused_with_readable_times() -> None:
    problem = deadline_problem(spec(deadline="2020-01-01T00:00:00Z"), NOW)
    assert problem is not None
    assert "already past" in problem
    assert "2020-01-01T00:00:00+00:00" in problem and "2026-12-06T08:00:00+00:00" in problem
    assert deadline_problem(spec(deadline="2026-12-06T08:00:00Z"), NOW) is not None  # exactly now is past too


def test_a_deadline_the_time_limit_cannot_meet_is_refused() -> None:
    tight = spec(deadline="2026-12-06T09:00:00Z", time_limit="2h")
    problem = deadline_problem(tight, NOW)
    assert problem is not None and "cannot be met" in problem and "7200 s" in problem
    assert "2026-12-06T10:00:00+00:00" in problem  # when the time limit would end
    assert deadline_problem(spec(deadline="2026-12-06T10:00:00Z", time_limit="2h"), NOW) is None  # just fits
    assert deadline_problem(spec(deadline="2026-12-06T09:00:00Z"), NOW) is None  # no time limit: only "not past"
    assert deadline_problem(spec(), NOW) is None


def test_class_lists() -> None:
    assert parse_class_list("normal,low") == ("low", "normal")
    assert parse_class_list("high, bogus") == ("high",)
    assert normalise_class_list(["high", "low", "high"]) == ("low", "high")
    with pytest.raises(ValueError, match="unknown priority class 'urgent'"):
        normalise_class_list(["low", "urgent"])
    with pytest.raises(ValueError, match="at least one"):
        normalise_class_list([])


def test_class_problem_names_the_class_and_the_allowed_ones() -> None:
    assert class_problem("normal", ("low", "normal"), "acme") is None
    problem = class_problem("high", ("low", "normal"), "acme")
    assert problem is not None and "'high'" in problem and "low, normal" in problem and "acme" in problem
