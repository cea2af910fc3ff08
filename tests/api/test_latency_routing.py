"""Latency routing in the live scheduler: `placement.max_rtt_ms` is judged on the built-in region table plus
operators' overrides, across regions, and a job no site is near enough for is told the nearest region that
was excluded and its round trip.

The fixture's sites: s1 in yangtze-delta (17 ms from greater-bay, built-in estimate) and s2 in guizhou (15 ms).
"""

from __future__ import annotations

from typing import Any

from tests.api.conftest import World

T4 = [{"index": 0, "model": "T4"}]


def near(max_rtt_ms: int) -> dict[str, Any]:
    return {"name": "near", "run": "true", "resources": {"accelerators": "T4:1"},
            "placement": {"user_region": "greater-bay", "max_rtt_ms": max_rtt_ms}}


def submit(w: World, spec: dict[str, Any]) -> int:
    response = w.call("alice", "POST", "/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def shown(w: World, job: int) -> dict[str, Any]:
    found: dict[str, Any] = w.call("alice", "GET", f"/v1/jobs/{job}").json()
    return found


def test_a_job_within_its_round_trip_of_another_region_is_placed(world: World) -> None:
    world.register_node("prov1", "s1", "n1", devices=T4)
    world.register_node("prov2", "s2", "n2", devices=T4)
    first, second = submit(world, near(20)), submit(world, near(16))
    world.scheduler.tick()
    assert shown(world, first)["state"] == "placed"  # greater-bay has no site: both others are within 20 ms
    assert shown(world, second)["site"] == "s2"  # guizhou at 15 ms; yangtze-delta at 17 ms is too far


def test_a_job_waits_naming_the_nearest_region_it_excluded(world: World) -> None:
    world.register_node("prov1", "s1", "n1", devices=T4)
    world.register_node("prov2", "s2", "n2", devices=T4)
    first, second = submit(world, near(16)), submit(world, near(16))
    world.scheduler.tick()
    assert shown(world, first)["site"] == "s2"
    waiting = shown(world, second)
    assert waiting["state"] == "pending"
    assert "latency (want <= 16 ms from greater-bay; nearest excluded: yangtze-delta at 17 ms) excluded 1 node" \
        in waiting["state_reason"]


def test_a_job_no_site_could_ever_be_near_enough_for_is_refused_naming_the_nearest(world: World) -> None:
    world.register_node("prov1", "s1", "n1", devices=T4)
    world.register_node("prov2", "s2", "n2", devices=T4)
    before = world.counts()
    response = world.call("alice", "POST", "/v1/jobs", json=near(10))
    assert response.status_code == 422, response.text
    assert "nearest excluded: guizhou at 15 ms" in response.json()["detail"]
    assert world.counts() == before


def test_the_scheduler_follows_an_operators_override(world: World) -> None:
    world.register_node("prov1", "s1", "n1", devices=T4)
    world.register_node("prov2", "s2", "n2", devices=T4)
    world.scheduler.tick()  # loads the table as it stands
    assert world.scheduler.rtt[("greater-bay", "yangtze-delta")] == 17
    # measured: yangtze-delta is nearer than estimated, guizhou farther
    for region, ms in (("yangtze-delta", 8), ("guizhou", 30)):
        response = world.call("op", "PUT", "/v1/regions/rtt",
                              json={"region_a": "greater-bay", "region_b": region, "rtt_ms": ms})
        assert response.status_code == 200, response.text
    job = submit(world, near(10))
    world.scheduler.tick()
    assert shown(world, job)["site"] == "s1"
    assert world.scheduler.rtt[("greater-bay", "yangtze-delta")] == 8
