"""core/jobs/spec.py: parsing, validation messages that name the field, and the to_dict round trip."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computegrid.core.catalog import default_catalog
from computegrid.core.jobs import JobSpec, Resources, Routing, SpecError, SpecProblem, parse_job_spec
from computegrid.core.jobs.spec import MAX_DEVICES_PER_NODE, MAX_NODES, TIERS
from tests.core._helpers import FAST

CAT = default_catalog()


def parse(data: Any) -> JobSpec:
    return parse_job_spec(data, CAT)


def base(**extra: Any) -> dict[str, Any]:
    return {"name": "train-1", "run": "python train.py", **extra}


def problems_of(data: Any) -> list[SpecProblem]:
    with pytest.raises(SpecError) as info:
        parse(data)
    assert info.value.problems, "SpecError must carry at least one problem"
    return info.value.problems


def fields_of(data: Any) -> set[str]:
    return {p.field for p in problems_of(data)}


# ---------------------------------------------------------------- valid specs


def test_minimal_spec_defaults():
    spec = parse(base())
    assert spec.name == "train-1"
    assert spec.run == "python train.py"
    assert spec.image is None and spec.workdir is None
    assert spec.envs == {}
    assert spec.resources == Resources()
    assert spec.resources.cpu_milli == 1000 and spec.resources.memory_mb == 1024
    assert spec.resources.milli_per_node == 0 and spec.resources.models == frozenset()
    assert spec.nodes == 1
    assert spec.routing == Routing()
    assert spec.interruptible is False and spec.requeue_on_lost is True and spec.max_attempts == 3
    assert spec.max_price_fen_per_du is None and spec.deadline_ms is None


def test_image_alone_is_enough():
    spec = parse({"name": "svc", "image": "vllm/vllm-openai:latest"})
    assert spec.image == "vllm/vllm-openai:latest" and spec.run is None


def test_skypilot_style_accelerators():
    spec = parse(base(resources={"accelerators": "A100:2", "cpus": 8, "memory_gb": 64}))
    assert spec.resources.accelerators == "A100"
    assert spec.resources.models == frozenset({"A100-40G", "A100-80G"})
    assert spec.resources.milli_per_node == 2000
    assert spec.resources.cpu_milli == 8000
    assert spec.resources.memory_mb == 64 * 1024


def test_accelerator_without_count_means_one():
    assert parse(base(resources={"accelerators": "H100"})).resources.milli_per_node == 1000


def test_mapping_form_accelerators():
    spec = parse(base(resources={"accelerators": {"A100": 2}}))
    assert spec.resources.models == frozenset({"A100-40G", "A100-80G"})
    assert spec.resources.milli_per_node == 2000
    assert spec == parse(base(resources={"accelerators": "A100:2"}))


def test_fractional_accelerator():
    spec = parse(base(resources={"accelerators": "T4:0.5"}))
    assert spec.resources.models == frozenset({"T4"})
    assert spec.resources.milli_per_node == 500


def test_alternative_accelerators():
    spec = parse(base(resources={"accelerators": "V100M16|V100M32:1"}))
    assert spec.resources.models == frozenset({"V100-16G", "V100-32G"})
    assert spec.resources.milli_per_node == 1000
    assert spec.resources.accelerators == "V100M16|V100M32"


def test_family_and_case_insensitive_accelerators():
    spec = parse(base(resources={"accelerators": "ampere:4"}))
    assert spec.resources.models == frozenset({"A10", "A100-40G", "A100-80G", "A800-40G", "A800-80G"})
    assert parse(base(resources={"accelerators": "a100:1"})).resources.models == frozenset({"A100-40G", "A100-80G"})


def test_max_count_per_node_is_allowed():
    assert parse(base(resources={"accelerators": f"A100:{MAX_DEVICES_PER_NODE}"})).resources.milli_per_node == 64_000


def test_min_device_memory():
    spec = parse(base(resources={"accelerators": "A100:1", "min_device_memory_gb": 60}))
    assert spec.resources.min_device_memory_gb == Fraction(60)


def test_fractional_cpus_and_memory():
    spec = parse(base(resources={"cpus": 0.5, "memory_gb": "1.5"}))
    assert spec.resources.cpu_milli == 500
    assert spec.resources.memory_mb == 1536


def test_envs_are_strings():
    spec = parse(base(envs={"LR": 0.001, "EPOCHS": 3, "NAME": "x", "EMPTY": None, "_UNDER": "y"}))
    assert spec.envs == {"LR": "0.001", "EPOCHS": "3", "NAME": "x", "EMPTY": "", "_UNDER": "y"}


def test_placement_fields():
    spec = parse(base(placement={"tier": "core", "user_region": "greater-bay", "max_rtt_ms": 30}))
    assert spec.routing == Routing(tier="core", user_region="greater-bay", max_rtt_ms=30)
    assert parse(base(placement={"user_region": "guizhou"})).routing == Routing(user_region="guizhou")
    for tier in TIERS:
        assert parse(base(placement={"tier": tier})).routing.tier == tier


def test_multi_node_gang_with_whole_devices():
    spec = parse(base(nodes=4, resources={"accelerators": "H100:8"}))
    assert spec.nodes == 4 and spec.resources.milli_per_node == 8000
    assert parse(base(nodes=MAX_NODES)).nodes == MAX_NODES


def test_other_top_level_fields():
    spec = parse(base(image="pytorch:2.3", workdir="/work", interruptible=True, max_price_fen_per_du=1200,
                      requeue_on_lost=False, max_attempts=7))
    assert spec.image == "pytorch:2.3" and spec.workdir == "/work"
    assert spec.interruptible is True and spec.requeue_on_lost is False
    assert spec.max_price_fen_per_du == 1200 and spec.max_attempts == 7


def test_deadline_with_timezone():
    spec = parse(base(deadline="2026-12-01T18:00:00+08:00"))
    assert spec.deadline_ms == calendar.timegm((2026, 12, 1, 10, 0, 0)) * 1000


def test_deadline_without_timezone_is_utc():
    spec = parse(base(deadline="2026-12-01T10:00:00"))
    assert spec.deadline_ms == calendar.timegm((2026, 12, 1, 10, 0, 0)) * 1000
    assert spec.deadline_ms == parse(base(deadline="2026-12-01T10:00:00Z")).deadline_ms


def test_deadline_as_datetime():
    moment = datetime(2026, 12, 1, 18, 0, tzinfo=timezone(timedelta(hours=8)))
    assert parse(base(deadline=moment)).deadline_ms == calendar.timegm((2026, 12, 1, 10, 0, 0)) * 1000


def test_deadline_keeps_milliseconds():
    spec = parse(base(deadline="2026-12-01T10:00:00.250+00:00"))
    assert spec.deadline_ms == calendar.timegm((2026, 12, 1, 10, 0, 0)) * 1000 + 250


def test_deadline_milliseconds_are_not_truncated():
    # 2004-03-15T07:55:47.472Z is 1079337347472 ms; float arithmetic gives ...471.9999 and int() truncates.
    assert parse(base(deadline="2004-03-15T07:55:47.472+00:00")).deadline_ms == 1_079_337_347_472


# ---------------------------------------------------------------- invalid specs


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (base(resources={"accelerators": "A100:-1"}), "resources.accelerators"),
        (base(resources={"accelerators": "A100:0"}), "resources.accelerators"),
        (base(resources={"accelerators": "A100:65"}), "resources.accelerators"),
        (base(resources={"accelerators": "T4:1.5"}), "resources.accelerators"),
        (base(resources={"accelerators": "T4:0.0005"}), "resources.accelerators"),
        (base(resources={"accelerators": "T4:many"}), "resources.accelerators"),
        (base(resources={"accelerators": {"T4": True}}), "resources.accelerators"),
        (base(resources={"accelerators": {"T4": 1, "A100": 1}}), "resources.accelerators"),
        (base(resources={"accelerators": ["T4"]}), "resources.accelerators"),
        (base(resources={"accelerators": "B200:1"}), "resources.accelerators"),
        (base(resources={"accelerators": "T4|B200:1"}), "resources.accelerators"),
        (base(resources={"gpus": 1}), "resources.gpus"),
        (base(resources={"cpus": -2}), "resources.cpus"),
        (base(resources={"cpus": 0}), "resources.cpus"),
        (base(resources={"memory_gb": "lots"}), "resources.memory_gb"),
        (base(resources={"min_device_memory_gb": 40}), "resources.min_device_memory_gb"),
        (base(resources={"accelerators": "A100", "min_device_memory_gb": -1}), "resources.min_device_memory_gb"),
        (base(resources="A100:1"), "resources"),
        (base(nodes=2, resources={"accelerators": "T4:0.5"}), "nodes"),
        (base(nodes=0), "nodes"),
        (base(nodes=MAX_NODES + 1), "nodes"),
        (base(nodes="2"), "nodes"),
        (base(nodes=True), "nodes"),
        (base(placement={"tier": "gold"}), "placement.tier"),
        (base(placement={"max_rtt_ms": 20}), "placement.max_rtt_ms"),
        (base(placement={"user_region": "guizhou", "max_rtt_ms": 0}), "placement.max_rtt_ms"),
        (base(placement={"user_region": "guizhou", "max_rtt_ms": 2.5}), "placement.max_rtt_ms"),
        (base(placement={"user_region": ""}), "placement.user_region"),
        (base(placement={"zone": "a"}), "placement.zone"),
        (base(placement="hub"), "placement"),
        (base(envs={"1BAD": "x"}), "envs.1BAD"),
        (base(envs={"BAD-NAME": "x"}), "envs.BAD-NAME"),
        (base(envs={"OK": {"nested": 1}}), "envs.OK"),
        (base(envs="A=1"), "envs"),
        ({"run": "x"}, "name"),
        (base(name=""), "name"),
        (base(name="-leading-dash"), "name"),
        (base(name="has space"), "name"),
        (base(name="x" * 64), "name"),
        (base(name=42), "name"),
        ({"name": "nothing-to-run"}, "run"),
        (base(run=""), "run"),
        (base(image=3), "image"),
        (base(workdir=""), "workdir"),
        (base(gpus=1), "gpus"),
        (base(interruptible="yes"), "interruptible"),
        (base(requeue_on_lost=1), "requeue_on_lost"),
        (base(max_attempts=0), "max_attempts"),
        (base(max_price_fen_per_du=-1), "max_price_fen_per_du"),
        (base(deadline="next tuesday"), "deadline"),
    ],
)
def test_invalid_spec_names_the_field(data, field):
    problems = problems_of(data)
    assert field in {p.field.split(" ")[0] for p in problems}, problems
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse(data)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (base(resources={"accelerators": "T4:1.5"}), "must be whole"),
        (base(resources={"accelerators": "A100:65"}), "at most 64 devices"),
        (base(resources={"accelerators": "A100:-1"}), "positive"),
        (base(resources={"accelerators": "B200:1"}), "unknown accelerator 'B200'"),
        (base(nodes=2, resources={"accelerators": "T4:0.5"}), "whole devices"),
        (base(placement={"max_rtt_ms": 20}), "needs placement.user_region"),
        (base(resources={"min_device_memory_gb": 40}), "needs resources.accelerators"),
        (base(gpus=1), "unknown field"),
        (base(placement={"tier": "gold"}), "core, hub, edge"),
    ],
)
def test_invalid_spec_messages_say_why(data, words):
    assert any(words in p.message for p in problems_of(data))


def test_non_mapping_is_rejected():
    for data in (None, "name: x", ["name", "x"], 3):
        problems = problems_of(data)
        assert problems == [SpecProblem("(top level)", "a job spec must be a mapping of fields")]


def test_several_problems_are_all_reported():
    data = {
        "name": "-bad",
        "run": "x",
        "nodes": 0,
        "colour": "blue",
        "envs": {"1BAD": "v"},
        "resources": {"accelerators": "B200:1", "cpus": -1},
        "placement": {"tier": "gold", "max_rtt_ms": 10},
        "max_attempts": 1000,
    }
    with pytest.raises(SpecError) as info:
        parse(data)
    fields = {p.field.split(" ")[0] for p in info.value.problems}
    assert fields >= {"name", "nodes", "colour", "envs.1BAD", "resources.accelerators", "resources.cpus",
                      "placement.tier", "placement.max_rtt_ms", "max_attempts"}
    assert str(info.value) == "; ".join(str(p) for p in info.value.problems)


def test_spec_error_is_value_error_and_problem_str():
    assert issubclass(SpecError, ValueError)
    assert str(SpecProblem("nodes", "must be positive")) == "nodes: must be positive"


def test_run_null_without_image_is_rejected():
    with pytest.raises(SpecError, match="run"):
        parse({"name": "nothing-to-run", "run": None})


def test_name_with_trailing_newline_is_rejected():
    fields = fields_of({"name": "job\n", "run": "x", "envs": {"FOO\n": "1"}})
    assert {"name", "envs.FOO\n"} <= fields


def test_tiny_positive_cpus_do_not_become_zero():
    try:
        spec = parse(base(resources={"cpus": 0.0001, "memory_gb": 0.0001}))
    except SpecError:
        return
    assert spec.resources.cpu_milli > 0 and spec.resources.memory_mb > 0


# ---------------------------------------------------------------- round trip


def test_to_dict_shape():
    spec = parse(base(resources={"accelerators": "T4:0.25", "min_device_memory_gb": "12.5", "cpus": 2},
                      placement={"tier": "edge"}, deadline="2026-12-01T10:00:00Z", envs={"A": "1"}))
    d = spec.to_dict()
    assert d["resources"]["accelerators"] == "T4:0.25"
    assert d["resources"]["cpus"] == 2
    assert d["placement"] == {"tier": "edge"}
    assert d["envs"] == {"A": "1"}
    assert "image" not in d and "max_price_fen_per_du" not in d
    assert datetime.fromisoformat(d["deadline"]) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse(d) == spec


@pytest.mark.parametrize(
    "data",
    [
        base(),
        {"name": "svc", "image": "img:1"},
        base(resources={"accelerators": "A100:8", "cpus": 96, "memory_gb": 1024}, nodes=16),
        base(resources={"accelerators": {"V100M16|V100M32": 1}, "min_device_memory_gb": "1/3"}),
        base(resources={"accelerators": "T4:0.001"}),
        base(resources={"accelerators": "nvidia:0.999", "cpus": "0.125", "memory_gb": "0.5"}),
        base(placement={"tier": "hub", "user_region": "ningxia", "max_rtt_ms": 10_000}),
        base(envs={"X": "1", "Y": ""}, interruptible=True, requeue_on_lost=False, max_attempts=1,
             max_price_fen_per_du=0, deadline="2030-01-01T00:00:00+08:00", workdir="/w", image="i"),
    ],
)
def test_round_trip_examples(data):
    spec = parse(data)
    assert parse(spec.to_dict()) == spec


def test_round_trip_millisecond_deadline():
    spec = parse(base(deadline="2026-12-01T10:00:00Z"))
    spec = JobSpec(**{**vars(spec), "deadline_ms": 1_079_337_347_472})
    assert parse(spec.to_dict()) == spec


ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
ACCEL_EXPRS = st.sampled_from(["A100", "T4", "V100M16|V100M32", "H100", "ampere", "nvidia", "MI300X", "a100-80g"])


@st.composite
def spec_dicts(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid spec dict, and the values it should parse to."""
    cpu_milli = draw(st.integers(1, 512_000))
    memory_mb = draw(st.integers(1, 4 * 1024 * 1024))
    as_text = draw(st.booleans())
    cpus: Any = str(Fraction(cpu_milli, 1000)) if as_text else cpu_milli / 1000
    resources: dict[str, Any] = {"cpus": cpus, "memory_gb": memory_mb / 1024}
    expected: dict[str, Any] = {"cpu_milli": cpu_milli, "memory_mb": memory_mb, "milli": 0}
    nodes = 1
    if draw(st.booleans()):
        expr = draw(ACCEL_EXPRS)
        if draw(st.booleans()):
            milli = draw(st.integers(1, 999))
        else:
            milli = 1000 * draw(st.integers(1, MAX_DEVICES_PER_NODE))
            nodes = draw(st.integers(1, MAX_NODES))
        count = milli / 1000
        resources["accelerators"] = {expr: count} if draw(st.booleans()) else f"{expr}:{count}"
        if draw(st.booleans()):
            resources["min_device_memory_gb"] = draw(st.integers(1, 192))
        expected["milli"] = milli
    data: dict[str, Any] = {"name": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)),
                            "run": draw(st.text(min_size=1, max_size=20).filter(str.strip)),
                            "resources": resources, "nodes": nodes}
    placement: dict[str, Any] = {}
    tier = draw(st.none() | st.sampled_from(TIERS))
    if tier is not None:
        placement["tier"] = tier
    if draw(st.booleans()):
        placement["user_region"] = draw(st.sampled_from(["jingjinji", "greater-bay", "guizhou", "shanghai"]))
        if draw(st.booleans()):
            placement["max_rtt_ms"] = draw(st.integers(1, 10_000))
    if placement:
        data["placement"] = placement
    data["envs"] = draw(st.dictionaries(ENV_NAMES, st.text(max_size=10), max_size=3))
    data["interruptible"] = draw(st.booleans())
    data["requeue_on_lost"] = draw(st.booleans())
    data["max_attempts"] = draw(st.integers(1, 100))
    if draw(st.booleans()):
        data["max_price_fen_per_du"] = draw(st.integers(0, 10**12))
    if draw(st.booleans()):
        # whole seconds here: millisecond deadlines have their own tests above
        seconds = draw(st.integers(0, 4_102_444_800))
        data["deadline"] = datetime.fromtimestamp(seconds, UTC).isoformat()
        expected["deadline_ms"] = seconds * 1000
    expected["nodes"] = nodes
    expected["tier"] = tier
    return data, expected


@FAST
@given(spec_dicts())
def test_round_trip_property(case):
    data, expected = case
    spec = parse(data)
    assert spec.resources.cpu_milli == expected["cpu_milli"]
    assert spec.resources.memory_mb == expected["memory_mb"]
    assert spec.resources.milli_per_node == expected["milli"]
    assert spec.nodes == expected["nodes"]
    assert spec.routing.tier == expected["tier"]
    assert spec.deadline_ms == expected.get("deadline_ms")
    again = parse(spec.to_dict())
    assert again == spec
    assert again.to_dict() == spec.to_dict()


@pytest.mark.parametrize(("given", "seconds"), [(90, 90), ("90s", 90), ("30m", 1800), ("2h", 7200),
                                                ("1d12h", 129_600), ("1h30m15s", 5415)])
def test_time_limit_in_seconds_or_durations(given: Any, seconds: int) -> None:
    spec = parse(base(time_limit=given))
    assert spec.time_limit_s == seconds
    assert parse(spec.to_dict()) == spec


@pytest.mark.parametrize("given", ["", "soon", "10x", 0, -5, True, 366 * 86400, "1.5h", [1]])
def test_bad_time_limit_names_the_field(given: Any) -> None:
    assert [p.field for p in problems_of(base(time_limit=given))] == ["time_limit"]


def test_reservation_names_a_lease() -> None:
    spec = parse(base(reservation=12))
    assert spec.reservation == 12 and parse(spec.to_dict()) == spec
    assert [p.field for p in problems_of(base(reservation="twelve"))] == ["reservation"]
    assert [p.field for p in problems_of(base(reservation=0))] == ["reservation"]
