"""Bad input gets a 4xx with a reason that names the problem, and nothing is stored."""

from __future__ import annotations

import pytest

from tests.api.conftest import World


@pytest.fixture
def pooled(world: World) -> World:
    world.register_node("prov1", "s1", "n1", cpus=8, devices=[{"index": i, "model": "A100-80G"} for i in range(4)])
    return world


def submit_yaml(world: World, text: str) -> object:
    return world.call("alice", "POST", "/v1/jobs", content=text.encode(),
                      headers={"Content-Type": "application/yaml"})


CASES = [
    ("malformed yaml", "name: [unclosed\nrun: echo\n", 422, "malformed YAML at line"),
    ("not a mapping", "- just\n- a list\n", 422, "(top level)"),
    ("unknown accelerator", "name: x\nrun: echo\nresources:\n  accelerators: Z900:1\n", 422,
     "resources.accelerators: unknown accelerator 'Z900'"),
    ("negative count", "name: x\nrun: echo\nresources:\n  accelerators: A100:-2\n", 422, "must be positive"),
    ("negative nodes", "name: x\nrun: echo\nnodes: -1\n", 422, "nodes: must be between"),
    ("negative cpus", "name: x\nrun: echo\nresources:\n  cpus: -4\n", 422, "resources.cpus"),
    ("bigger than any node", "name: x\nrun: echo\nresources:\n  accelerators: A100:8\n", 422,
     "no node in the pool could ever run this job"),
    ("more cpus than any node", "name: x\nrun: echo\nresources:\n  cpus: 64\n", 422, "cpu (want 64)"),
    ("gang larger than pool", "name: x\nrun: echo\nnodes: 3\nresources:\n  accelerators: A100:1\n", 422,
     "no node in the pool could ever run this job"),
    ("missing name", "run: echo\n", 422, "name: required"),
    ("bad tier", "name: x\nrun: echo\nplacement:\n  tier: moon\n", 422, "placement.tier"),
    ("unknown field", "name: x\nrun: echo\ngpus: 2\n", 422, "gpus: unknown field"),
]


@pytest.mark.parametrize("label,body,status,reason", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_is_rejected_and_nothing_stored(pooled: World, label: str, body: str, status: int,
                                                 reason: str) -> None:
    before = pooled.counts()
    response = submit_yaml(pooled, body)
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert reason in response.json()["detail"]  # type: ignore[attr-defined]
    assert pooled.counts() == before


def test_malformed_json_names_the_position(pooled: World) -> None:
    before = pooled.counts()
    response = pooled.call("alice", "POST", "/v1/jobs", content=b'{"name": "x",',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "malformed JSON at line 1" in response.json()["detail"]
    assert pooled.counts() == before


def test_oversized_body_is_413_and_nothing_stored(pooled: World) -> None:
    before = pooled.counts()
    big = "name: x\nrun: |\n  " + "echo " * 300_000 + "\n"
    response = submit_yaml(pooled, big)
    assert response.status_code == 413  # type: ignore[attr-defined]
    assert "exceeds" in response.json()["detail"]  # type: ignore[attr-defined]
    assert pooled.counts() == before


def test_problems_list_every_bad_field(pooled: World) -> None:
    response = pooled.call("alice", "POST", "/v1/jobs", json={
        "name": "ok", "run": "echo", "nodes": 0, "resources": {"accelerators": "A100:1.5", "cpus": "lots"}})
    assert response.status_code == 422
    fields = {p["field"] for p in response.json()["problems"]}
    assert {"nodes", "resources.accelerators", "resources.cpus"} <= fields


def test_bad_registration_is_rejected_and_nothing_stored(world: World) -> None:
    before = world.counts()
    for body in (
        {"site": "s1", "name": "n", "cpu_milli": 1000, "memory_mb": 1, "devices": [{"index": 0, "model": "B200"}]},
        {"site": "s1", "name": "n", "cpu_milli": -1, "memory_mb": 1, "devices": []},
        {"site": "nowhere", "name": "n", "cpu_milli": 1000, "memory_mb": 1, "devices": []},
        {"site": "s1", "name": "n", "cpu_milli": 1000, "memory_mb": 1,
         "devices": [{"index": 0, "model": "T4"}, {"index": 0, "model": "T4"}]},
    ):
        response = world.call("prov1", "POST", "/v1/agent/register", json=body)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["detail"]
    assert world.counts() == before


def test_unknown_job_and_bad_ids(world: World) -> None:
    assert world.call("alice", "GET", "/v1/jobs/999999").status_code == 404
    assert world.call("alice", "GET", "/v1/jobs/abc").status_code == 422
    assert world.call("alice", "GET", "/v1/jobs?state=bogus").status_code == 422
    assert world.call("alice", "GET", "/v1/jobs/1/logs?offset=-5").status_code in (404, 422)


def test_values_the_database_cannot_hold_are_a_422_not_a_500(world: World) -> None:
    before = world.counts()
    huge = world.call("alice", "GET", "/v1/jobs/99999999999999999999")
    assert huge.status_code == 422 and "out of range" in huge.json()["detail"]
    nul = world.call("alice", "POST", "/v1/jobs", json={"name": "nul", "run": "echo a\u0000b"})
    assert nul.status_code in (201, 422), nul.text  # SQLite stores NUL; PostgreSQL text cannot
    if nul.status_code == 422:
        assert "refused a value" in nul.json()["detail"]
        assert world.counts() == before
