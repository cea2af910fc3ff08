"""Random job specs never produce a 500: every answer is 201 or a 4xx with a reason."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import World

FINITE = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.none() | st.booleans() | st.integers(-10**12, 10**12) | FINITE | st.text(max_size=20)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=4), max_leaves=12)
FIELDS = {
    "name": st.text(max_size=70) | SCALARS,
    "run": st.text(max_size=30) | SCALARS,
    "nodes": st.integers(-5, 2000) | SCALARS,
    "resources": st.fixed_dictionaries({}, optional={
        "accelerators": st.sampled_from(["A100:2", "T4:0.5", "V100M16|V100M32:1", "H100:-1", "Z9:1", "A100:1.5",
                                         "ampere:65", ""]) | JSON,
        "cpus": st.integers(-4, 200) | FINITE | SCALARS,
        "memory_gb": st.integers(-4, 5000) | SCALARS,
        "min_device_memory_gb": SCALARS}) | JSON,
    "placement": st.fixed_dictionaries({}, optional={"tier": st.sampled_from(["core", "hub", "edge", "x"]),
                                                     "user_region": SCALARS, "max_rtt_ms": SCALARS}) | JSON,
    "deadline": st.sampled_from(["2026-12-01T00:00:00+08:00", "yesterday", "2026-13-45"]) | SCALARS,
    "envs": st.dictionaries(st.text(max_size=8), SCALARS, max_size=3) | JSON,
    "workload": SCALARS,
    "max_attempts": SCALARS,
}
SPECS = st.fixed_dictionaries({}, optional=FIELDS) | JSON


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=SPECS)
def test_random_specs_get_201_or_a_4xx_with_a_reason(world: World, spec: Any) -> None:
    response = world.call("alice", "POST", "/v1/jobs", json=spec)
    assert response.status_code == 201 or 400 <= response.status_code < 500, (spec, response.text)
    if response.status_code != 201:
        assert response.json()["detail"]


def test_non_finite_numbers_in_a_raw_body_are_rejected(world: World) -> None:
    before = world.counts()
    for body in (b'{"name": "x", "run": "y", "resources": {"cpus": Infinity}}',
                 b'{"name": "x", "run": "y", "resources": {"memory_gb": NaN}}',
                 b'{"name": "x", "run": "y", "nodes": -Infinity}',
                 b'{"name": "x", "run": "y", "resources": {"accelerators": {"A100": NaN}}}'):
        response = world.call("alice", "POST", "/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (body, response.text)
    assert world.counts() == before
