"""Regions and round trips through the API: everyone may list them, only an operator may override or add one,
and a refused change stores nothing. A job's `placement.user_region` must name a known region."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from computegrid.cli import main
from computegrid.cli import regions as regions_cli
from computegrid.client import Client
from computegrid.store.models import RegionRtt
from tests.api.conftest import World

HOSTED = {"name": "near", "run": "true", "resources": {"cpus": 1}}


def put_rtt(w: World, who: str, **body: Any) -> Any:
    return w.call(who, "PUT", "/v1/regions/rtt", json=body)


def test_regions_list_the_built_in_table_with_tiers_and_sites(world: World) -> None:
    listed = {r["name"]: r for r in world.call("alice", "GET", "/v1/regions").json()}
    assert listed["greater-bay"] == {"name": "greater-bay", "tier": "hub", "kind": "hub", "place": "Shaoguan",
                                     "built_in": True, "sites": 0}
    assert listed["shanghai"]["tier"] == "core" and listed["kunming"]["tier"] == "edge"
    assert listed["guizhou"]["sites"] == 1 and listed["yangtze-delta"]["sites"] == 1  # the fixture's s2 and s1
    assert len([r for r in listed.values() if r["built_in"]]) == 24


def test_an_operator_overrides_a_round_trip_and_the_listing_shows_it(world: World) -> None:
    before = world.call("alice", "GET", "/v1/regions/rtt", params={"from": "greater-bay"}).json()
    assert [r["region_b"] for r in before[:3]] == ["guangzhou", "shenzhen", "changsha"]  # nearest first
    guizhou = next(r for r in before if r["region_b"] == "guizhou")
    assert guizhou["rtt_ms"] == 15 and not guizhou["overridden"] and "estimate" in guizhou["source"]

    response = put_rtt(world, "op", region_a="guizhou", region_b="greater-bay", rtt_ms=42,
                       source="ping from Shaoguan, 2026-12-01")
    assert response.status_code == 200, response.text
    stored = response.json()
    assert (stored["region_a"], stored["region_b"], stored["rtt_ms"]) == ("greater-bay", "guizhou", 42)
    assert stored["overridden"] and stored["estimate_ms"] == 15 and stored["source"] == "ping from Shaoguan, 2026-12-01"

    after = world.call("bob", "GET", "/v1/regions/rtt", params={"from": "guizhou"}).json()
    row = next(r for r in after if r["region_b"] == "greater-bay")
    assert row["rtt_ms"] == 42 and row["overridden"] and row["updated_at"] is not None
    every = world.call("bob", "GET", "/v1/regions/rtt").json()
    assert len(every) == 24 * 23 // 2

    cleared = world.call("op", "DELETE", "/v1/regions/rtt/guizhou/greater-bay")
    assert cleared.status_code == 200 and cleared.json()["rtt_ms"] == 15
    again = world.call("bob", "GET", "/v1/regions/rtt", params={"from": "guizhou"}).json()
    assert next(r for r in again if r["region_b"] == "greater-bay")["rtt_ms"] == 15
    assert world.call("op", "DELETE", "/v1/regions/rtt/guizhou/greater-bay").status_code == 404


@pytest.mark.parametrize(("body", "says"), [
    ({"region_a": "greater-bey", "region_b": "guizhou", "rtt_ms": 10}, "did you mean: greater-bay"),
    ({"region_a": "guizhou", "region_b": "shangai", "rtt_ms": 10}, "shanghai"),
    ({"region_a": "guizhou", "region_b": "shanghai", "rtt_ms": 0}, "1 to 10000"),
    ({"region_a": "guizhou", "region_b": "shanghai", "rtt_ms": 10_001}, "1 to 10000"),
    ({"region_a": "guizhou", "region_b": "shanghai", "rtt_ms": -5}, "1 to 10000"),
    ({"region_a": "guizhou", "region_b": "shanghai", "rtt_ms": 12.5}, "rtt_ms"),
    ({"region_a": "guizhou", "region_b": "shanghai", "rtt_ms": True}, "rtt_ms"),
    ({"region_a": "guizhou", "region_b": "guizhou", "rtt_ms": 3}, "within one region"),
    ({"region_a": "Lab Hohhot", "region_b": "guizhou", "rtt_ms": 3, "new_region": True}, "lower-case"),
    ({"region_a": "guizhou", "region_b": "shanghai", "rtt_ms": 10, "source": "x" * 201}, "source"),
    ({"region_a": "guizhou", "region_b": "shanghai", "rtt_ms": 10, "colour": "red"}, "colour"),
])
def test_bad_round_trips_are_refused_and_store_nothing(world: World, body: dict[str, Any], says: str) -> None:
    before = world.counts()
    response = world.call("op", "PUT", "/v1/regions/rtt", json=body)
    assert response.status_code == 422, response.text
    assert says in response.text
    assert world.counts() == before


@pytest.mark.parametrize("who", ["alice", "prov1"])
def test_only_an_operator_may_set_a_round_trip(world: World, who: str) -> None:
    before = world.counts()
    response = put_rtt(world, who, region_a="guizhou", region_b="shanghai", rtt_ms=10)
    assert response.status_code == 403, response.text
    assert world.call(who, "DELETE", "/v1/regions/rtt/guizhou/shanghai").status_code == 403
    assert world.counts() == before
    assert world.call(who, "GET", "/v1/regions").status_code == 200


def test_a_new_region_is_added_only_when_asked_for(world: World) -> None:
    refused = put_rtt(world, "op", region_a="hohhot-lab", region_b="inner-mongolia", rtt_ms=3)
    assert refused.status_code == 422 and "new_region" in refused.json()["detail"]
    job = {**HOSTED, "placement": {"user_region": "hohhot-lab", "max_rtt_ms": 50}}
    assert world.call("alice", "POST", "/v1/jobs", json=job).status_code == 422

    added = put_rtt(world, "op", region_a="hohhot-lab", region_b="inner-mongolia", rtt_ms=3, new_region=True)
    assert added.status_code == 200, added.text
    assert added.json()["estimate_ms"] is None
    listed = {r["name"]: r for r in world.call("alice", "GET", "/v1/regions").json()}
    assert listed["hohhot-lab"]["kind"] == "added" and not listed["hohhot-lab"]["built_in"]
    assert world.call("alice", "POST", "/v1/jobs", json=job).status_code == 201


def test_a_job_naming_an_unknown_user_region_is_refused_with_close_matches(world: World) -> None:
    before = world.counts()
    job = {**HOSTED, "placement": {"user_region": "greaterbay", "max_rtt_ms": 20}}
    response = world.call("alice", "POST", "/v1/jobs", json=job)
    assert response.status_code == 422, response.text
    assert "unknown region 'greaterbay'" in response.json()["detail"] and "greater-bay" in response.json()["detail"]
    assert world.counts() == before
    listed = world.call("alice", "GET", "/v1/regions/rtt", params={"from": "greaterbay"})
    assert listed.status_code == 422 and "greater-bay" in listed.text
    ok = {**HOSTED, "placement": {"user_region": "yangtze-delta"}}  # a built-in region where a site is
    assert world.call("alice", "POST", "/v1/jobs", json=ok).status_code == 201


def cli_as(world: World, monkeypatch: pytest.MonkeyPatch, who: str) -> Any:
    api = Client("http://testserver", world.keys[who])
    api.http = world.app_client
    api.http.headers["Authorization"] = f"Bearer {world.keys[who]}"
    monkeypatch.setattr(regions_cli, "_client", lambda: api)
    runner = CliRunner()
    return lambda *args: runner.invoke(main.app, list(args), env={"COLUMNS": "200"})


def test_the_cli_lists_regions_and_sets_a_round_trip(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    run = cli_as(world, monkeypatch, "op")
    listed = run("regions")
    assert listed.exit_code == 0 and "greater-bay" in listed.output and "Shaoguan" in listed.output
    done = run("regions", "rtt", "set", "greater-bay", "guizhou", "12", "--source", "iperf 2026-12-01")
    assert done.exit_code == 0, done.output
    assert "iperf 2026-12-01" in done.output
    near = run("regions", "rtt", "--from", "guizhou")
    assert near.exit_code == 0 and "greater-bay" in near.output
    with world.db.reading() as session:
        rows = [(r.region_a, r.region_b, r.rtt_ms) for r in session.query(RegionRtt)]
    assert rows == [("greater-bay", "guizhou", 12)]
    typo = run("regions", "rtt", "set", "greater-bey", "guizhou", "12")
    assert typo.exit_code == 1 and "greater-bay" in typo.output and "HTTP 422" in typo.output
    assert run("regions", "rtt", "clear", "greater-bay", "guizhou").exit_code == 0
    with world.db.reading() as session:
        assert session.query(RegionRtt).count() == 0
    refused = cli_as(world, monkeypatch, "alice")("regions", "rtt", "set", "greater-bay", "guizhou", "9")
    assert refused.exit_code == 1 and "HTTP 403" in refused.output
