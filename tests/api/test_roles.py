"""Roles: an operator sees all, a provider manages only its own sites, a tenant sees only its jobs.
Every cross-tenant attempt gets 403 or 404 and changes nothing."""

from __future__ import annotations

import pytest

from tests.api.conftest import World

HELLO = {"name": "hello", "run": "echo hi", "resources": {"cpus": 1, "memory_gb": 1}}


def test_tenant_sees_only_its_own_jobs(world: World) -> None:
    a = world.call("alice", "POST", "/v1/jobs", json=HELLO).json()
    b = world.call("bob", "POST", "/v1/jobs", json=HELLO).json()
    assert [j["id"] for j in world.call("alice", "GET", "/v1/jobs").json()] == [a["id"]]
    assert [j["id"] for j in world.call("bob", "GET", "/v1/jobs").json()] == [b["id"]]
    assert {j["id"] for j in world.call("op", "GET", "/v1/jobs").json()} == {a["id"], b["id"]}
    assert world.call("op", "GET", f"/v1/jobs/{b['id']}").status_code == 200


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("GET", "/logs"), ("GET", "/events"),
                                           ("POST", "/cancel")])
def test_cross_tenant_job_access_is_not_found_and_changes_nothing(world: World, method: str, suffix: str) -> None:
    job = world.call("bob", "POST", "/v1/jobs", json=HELLO).json()
    before = world.counts()
    response = world.call("alice", method, f"/v1/jobs/{job['id']}{suffix}")
    assert response.status_code == 404
    assert "no job" in response.json()["detail"]
    assert world.counts() == before
    assert world.call("bob", "GET", f"/v1/jobs/{job['id']}").json()["state"] == "pending"


def test_provider_cannot_register_a_node_on_another_providers_site(world: World) -> None:
    before = world.counts()
    response = world.call("prov2", "POST", "/v1/agent/register",
                          json={"site": "s1", "name": "n1", "cpu_milli": 8000, "memory_mb": 1024, "devices": []})
    assert response.status_code == 403
    assert "another provider" in response.json()["detail"]
    assert world.counts() == before


def test_provider_cannot_heartbeat_or_report_for_another_providers_node(world: World) -> None:
    node = world.register_node("prov1", "s1", "n1")
    before = world.counts()
    assert world.call("prov2", "POST", "/v1/agent/heartbeat", json={"node_id": node}).status_code == 403
    job = world.call("alice", "POST", "/v1/jobs", json=HELLO).json()
    world.scheduler.tick()
    before = world.counts()
    response = world.call("prov2", "POST", f"/v1/agent/jobs/{job['id']}/state",
                          json={"node_id": node, "attempt": 1, "state": "running"})
    assert response.status_code == 403
    assert world.counts() == before
    assert world.call("alice", "GET", f"/v1/jobs/{job['id']}").json()["state"] == "placed"


def test_tenants_and_providers_cannot_do_operator_things(world: World) -> None:
    before = world.counts()
    for who in ("alice", "prov1"):
        assert world.call(who, "POST", "/v1/tenants", json={"name": "evil"}).status_code == 403
        assert world.call(who, "POST", "/v1/users", json={"name": "x", "role": "operator"}).status_code == 403
    assert world.call("alice", "POST", "/v1/sites", json={
        "name": "mine", "region": "guizhou", "tier": "hub", "electricity_fen_per_kwh": 30}).status_code == 403
    assert world.call("prov1", "POST", "/v1/jobs", json=HELLO).status_code == 403
    assert world.call("prov1", "GET", "/v1/jobs").status_code == 403
    assert world.counts() == before


def test_provider_creates_sites_only_for_itself(world: World) -> None:
    response = world.call("prov1", "POST", "/v1/sites", json={
        "name": "p1-hub", "region": "ningxia", "tier": "hub", "electricity_fen_per_kwh": 28.5})
    assert response.status_code == 201, response.text
    sites = {s["name"]: s for s in world.call("alice", "GET", "/v1/sites").json()}
    assert sites["p1-hub"]["provider_id"] == sites["s1"]["provider_id"] != sites["s2"]["provider_id"]


@pytest.mark.parametrize("header", [{"Authorization": "Bearer cg_nope_nope"}, {"Authorization": "Bearer x"},
                                    {"X-API-Key": "cg_000000000000_secret"}, {}])
def test_wrong_or_missing_api_key_is_401_and_stores_nothing(world: World, header: dict[str, str]) -> None:
    before = world.counts()
    response = world.app_client.post("/v1/jobs", json=HELLO, headers=header)
    assert response.status_code == 401
    assert response.json()["detail"]
    assert world.counts() == before


def test_revoked_key_stops_working(world: World) -> None:
    issued = world.call("alice", "POST", "/v1/keys").json()
    headers = {"Authorization": f"Bearer {issued['api_key']}"}
    assert world.app_client.get("/v1/me", headers=headers).status_code == 200
    assert world.call("alice", "DELETE", f"/v1/keys/{issued['key_id']}").status_code == 204
    assert world.app_client.get("/v1/me", headers=headers).status_code == 401
    # bob cannot revoke alice's key
    assert world.call("bob", "DELETE", f"/v1/keys/{world.keys['alice'].split('_')[1]}").status_code == 404


def test_api_keys_are_hashed_at_rest(world: World) -> None:
    from sqlalchemy import select

    from computegrid.store.models import ApiKey

    secret = world.keys["alice"].split("_", 2)[2]
    with world.db.sessions() as session:
        stored = [k.secret_hash for k in session.scalars(select(ApiKey))]
    assert stored and all(secret not in h for h in stored)
    assert all(len(h) == 64 for h in stored)
