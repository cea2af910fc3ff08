"""A job's life through the API and the scheduler service, with a manual clock."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import World

A100_JOB = {"name": "train", "run": "python train.py", "resources": {"accelerators": "A100:2", "cpus": 2,
                                                                      "memory_gb": 4}}


def heartbeat(world: World, who: str, node: int, **extra: Any) -> list[dict[str, Any]]:
    response = world.call(who, "POST", "/v1/agent/heartbeat", json={"node_id": node, **extra})
    assert response.status_code == 200, response.text
    assignments: list[dict[str, Any]] = response.json()["assignments"]
    return assignments


def report(world: World, job: int, node: int, attempt: int, state: str, **extra: Any) -> Any:
    return world.call("prov1", "POST", f"/v1/agent/jobs/{job}/state",
                      json={"node_id": node, "attempt": attempt, "state": state, **extra})


def test_submit_place_run_succeed_with_usage(world: World) -> None:
    node = world.register_node("prov1", "s1", "n1", devices=[{"index": i, "model": "A100-80G"} for i in range(4)])
    job = world.call("alice", "POST", "/v1/jobs", json=A100_JOB)
    assert job.status_code == 201
    job_id = job.json()["id"]
    assert world.scheduler.tick().placed == 1
    (assignment,) = heartbeat(world, "prov1", node)
    assert assignment["job_id"] == job_id and assignment["device_indices"] == [0, 1]
    start = world.clock.now_ms()
    assert report(world, job_id, node, 1, "running", at_ms=start).status_code == 200
    world.clock.advance(3_600_000)
    end = world.clock.now_ms()
    usage = [{"device_index": i, "model": "A100-80G", "share_milli": 1000, "start_ms": start, "end_ms": end}
             for i in (0, 1)] + [{"device_index": -1, "cpu_milli": 2000, "start_ms": start, "end_ms": end}]
    body = {"node_id": node, "attempt": 1, "intervals": usage}
    assert world.call("prov1", "POST", f"/v1/agent/jobs/{job_id}/usage", json=body).json()["recorded"] == 3
    assert world.call("prov1", "POST", f"/v1/agent/jobs/{job_id}/usage", json=body).json()["recorded"] == 0
    assert report(world, job_id, node, 1, "succeeded", exit_code=0, at_ms=end).status_code == 200
    assert report(world, job_id, node, 1, "succeeded", exit_code=0).status_code == 200  # a repeat is a no-op
    shown = world.call("alice", "GET", f"/v1/jobs/{job_id}").json()
    assert shown["state"] == "succeeded" and shown["exit_code"] == 0 and shown["site"] == "s1"
    assert shown["node"] == "n1"
    assert shown["usage"]["device_seconds"] == "7200.000"
    assert shown["usage"]["cpu_seconds"] == "7200.000"
    assert shown["usage"]["du"] == "0.624000000"  # 2 device-hours x 0.312 PFLOP/s (A100 dense FP16)
    assert heartbeat(world, "prov1", node) == []
    events = [e["to"] for e in world.call("alice", "GET", f"/v1/jobs/{job_id}/events").json()]
    assert events == ["pending", "placed", "running", "succeeded"]


def test_job_waits_with_a_reason_until_capacity_frees(world: World) -> None:
    node = world.register_node("prov1", "s1", "n1", devices=[{"index": i, "model": "A100-80G"} for i in range(2)])
    first = world.call("alice", "POST", "/v1/jobs", json=A100_JOB).json()["id"]
    second = world.call("alice", "POST", "/v1/jobs", json=A100_JOB).json()["id"]
    result = world.scheduler.tick()
    assert (result.placed, result.waiting) == (1, 1)
    waiting = world.call("alice", "GET", f"/v1/jobs/{second}").json()
    assert waiting["state"] == "pending" and "devices in use excluded 1 node" in waiting["state_reason"]
    report(world, first, node, 1, "running")
    report(world, first, node, 1, "failed", exit_code=3)
    assert world.scheduler.tick().placed == 1
    assert world.call("alice", "GET", f"/v1/jobs/{first}").json()["exit_code"] == 3


def test_silent_node_jobs_become_lost_and_are_requeued(world: World) -> None:
    n1 = world.register_node("prov1", "s1", "n1", devices=[{"index": 0, "model": "T4"}])
    job = world.call("alice", "POST", "/v1/jobs", json={"name": "t", "run": "x",
                                                         "resources": {"accelerators": "T4:1"}}).json()["id"]
    once = world.call("alice", "POST", "/v1/jobs", json={"name": "t2", "run": "x", "requeue_on_lost": False,
                                                          "resources": {"cpus": 1}}).json()["id"]
    world.scheduler.tick()
    report(world, job, n1, 1, "running")
    world.clock.advance(10_000)
    assert world.scheduler.tick().lost == 0  # within the timeout
    world.clock.advance(25_000)
    n2 = world.register_node("prov2", "s2", "n2", devices=[{"index": 0, "model": "T4"}])
    world.clock.advance(1_000)
    heartbeat(world, "prov2", n2)
    result = world.scheduler.tick()
    assert result.lost == 2 and result.placed == 1
    moved = world.call("alice", "GET", f"/v1/jobs/{job}").json()
    assert moved["state"] == "placed" and moved["attempt"] == 2 and moved["site"] == "s2"
    assert [e["to"] for e in world.call("alice", "GET", f"/v1/jobs/{job}/events").json()] == [
        "pending", "placed", "running", "lost", "pending", "placed"]
    assert world.call("alice", "GET", f"/v1/jobs/{once}").json()["state"] == "lost"
    # The old node comes back: its stale attempt is no longer assigned and its reports are refused.
    assert heartbeat(world, "prov1", n1) == []
    assert report(world, job, n1, 1, "succeeded", exit_code=0).status_code == 409
    nodes = {n["name"]: n["state"] for n in world.call("op", "GET", "/v1/nodes").json()}
    assert nodes == {"n1": "up", "n2": "up"}


def test_cancel_running_job_releases_capacity_and_unassigns(world: World) -> None:
    node = world.register_node("prov1", "s1", "n1", devices=[{"index": i, "model": "A100-40G"} for i in range(2)])
    job = world.call("alice", "POST", "/v1/jobs", json=A100_JOB).json()["id"]
    world.scheduler.tick()
    report(world, job, node, 1, "running")
    cancelled = world.call("alice", "POST", f"/v1/jobs/{job}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert heartbeat(world, "prov1", node) == []
    again = world.call("alice", "POST", f"/v1/jobs/{job}/cancel")
    assert again.status_code == 422 and "already ended" in again.json()["detail"]
    assert report(world, job, node, 1, "succeeded", exit_code=0).json()["state"] == "cancelled"
    world.call("alice", "POST", "/v1/jobs", json=A100_JOB)
    assert world.scheduler.tick().placed == 1


def test_idempotency_key_returns_the_first_job(world: World) -> None:
    headers = {"Idempotency-Key": "run-42"}
    first = world.call("alice", "POST", "/v1/jobs", json=A100_JOB | {"name": "a"}, headers=headers)
    again = world.call("alice", "POST", "/v1/jobs", json=A100_JOB | {"name": "b"}, headers=headers)
    other_tenant = world.call("bob", "POST", "/v1/jobs", json=A100_JOB, headers=headers)
    assert (first.status_code, again.status_code, other_tenant.status_code) == (201, 200, 201)
    assert first.json()["id"] == again.json()["id"] != other_tenant.json()["id"]
    assert len(world.call("alice", "GET", "/v1/jobs").json()) == 1


def test_logs_are_stored_once_even_when_chunks_overlap(world: World) -> None:
    node = world.register_node("prov1", "s1", "n1")
    job = world.call("alice", "POST", "/v1/jobs", json={"name": "l", "run": "x"}).json()["id"]
    world.scheduler.tick()

    def send(offset: int, data: str) -> Any:
        return world.call("prov1", "POST", f"/v1/agent/jobs/{job}/logs",
                          json={"node_id": node, "attempt": 1, "offset": offset, "data": data})

    assert send(0, "héllo ").json()["next_offset"] == 6
    assert send(0, "héllo wor").json()["next_offset"] == 9  # an agent restarted and re-sent from 0
    assert send(9, "ld\n").json()["next_offset"] == 12
    assert send(20, "gap").status_code == 409
    logs = world.call("alice", "GET", f"/v1/jobs/{job}/logs").json()
    assert logs["data"] == "héllo world\n" and logs["next_offset"] == 12
    assert world.call("alice", "GET", f"/v1/jobs/{job}/logs?offset=6").json()["data"] == "world\n"


def test_gang_job_spans_nodes_all_or_nothing(world: World) -> None:
    nodes = [world.register_node("prov1", "s1", f"n{i}", devices=[{"index": 0, "model": "H100"}]) for i in range(2)]
    gang = {"name": "g", "run": "x", "nodes": 2, "resources": {"accelerators": "H100:1"}}
    job = world.call("alice", "POST", "/v1/jobs", json=gang).json()["id"]
    world.scheduler.tick()
    shown = world.call("alice", "GET", f"/v1/jobs/{job}").json()
    assert [n["rank"] for n in shown["nodes"]] == [0, 1]
    assert [a["rank"] for n in nodes for a in heartbeat(world, "prov1", n)] == [0, 1]
    second = world.call("alice", "POST", "/v1/jobs", json=gang).json()["id"]
    world.scheduler.tick()
    reason = world.call("alice", "GET", f"/v1/jobs/{second}").json()["state_reason"]
    assert "gang needs 2 nodes on one site, 0 fit" in reason


def test_metrics_and_health(world: World) -> None:
    world.register_node("prov1", "s1", "n1", devices=[{"index": 0, "model": "T4"}])
    world.call("alice", "POST", "/v1/jobs", json={"name": "m", "run": "x"})
    health = world.app_client.get("/healthz").json()
    assert health["status"] == "ok"
    text = world.app_client.get("/metrics").text
    assert 'computegrid_jobs{state="pending"} 1.0' in text
    assert 'computegrid_nodes{state="up"} 1.0' in text
    assert 'computegrid_devices{health="ok",model="T4"} 1.0' in text
    assert "computegrid_jobs_submitted_total 1.0" in text


def test_heartbeat_telemetry_is_stored(world: World) -> None:
    node = world.register_node("prov1", "s1", "n1", devices=[{"index": 0, "model": "T4"}])
    heartbeat(world, "prov1", node, telemetry=[{"index": 0, "utilisation_pct": 87.5, "memory_used_gb": 9.5,
                                                "power_w": 61, "health": "ok"}])
    (shown,) = world.call("op", "GET", "/v1/nodes").json()
    assert shown["devices"][0]["utilisation_pct"] == 87.5 and shown["devices"][0]["power_w"] == 61
    bad = world.call("prov1", "POST", "/v1/agent/heartbeat",
                     json={"node_id": node, "telemetry": [{"index": 7, "utilisation_pct": 1}]})
    assert bad.status_code == 422


def test_workload_class_sends_a_multi_model_job_to_the_best_value_model(world: World) -> None:
    """ResNet-50 on Gavel's table: a P100 delivers more steps per du than a V100, so at one price per du
    the job goes to the P100 even though the V100 node comes first; without a workload, first fit."""
    world.register_node("prov1", "s1", "v100", devices=[{"index": 0, "model": "V100-16G"}])
    world.register_node("prov1", "s1", "p100", devices=[{"index": 0, "model": "P100-16G"}])
    spec = {"name": "rn50", "run": "x", "resources": {"accelerators": "V100-16G|P100-16G:1"}}
    chosen = world.call("alice", "POST", "/v1/jobs", json=spec | {"workload": "ResNet-50 (batch size 64)"}).json()
    world.scheduler.tick()
    assert world.call("alice", "GET", f"/v1/jobs/{chosen['id']}").json()["node"] == "p100"
    plain = world.call("alice", "POST", "/v1/jobs", json=spec).json()
    world.scheduler.tick()
    assert world.call("alice", "GET", f"/v1/jobs/{plain['id']}").json()["node"] == "v100"
    full = world.call("alice", "POST", "/v1/jobs", json=spec | {"workload": "ResNet-50 (batch size 64)"}).json()
    world.scheduler.tick()
    assert world.call("alice", "GET", f"/v1/jobs/{full['id']}").json()["state"] == "pending"


def test_scheduler_forgets_jobs_cancelled_while_pending(world: World) -> None:
    ids = [world.call("alice", "POST", "/v1/jobs", json={"name": f"w{i}", "run": "x"}).json()["id"] for i in range(3)]
    world.scheduler.tick()  # no nodes: all wait, and the scheduler remembers their requests
    assert set(ids) <= set(world.scheduler._requests)
    world.call("alice", "POST", f"/v1/jobs/{ids[1]}/cancel")
    world.scheduler.tick()
    assert ids[1] not in world.scheduler._requests and {ids[0], ids[2]} <= set(world.scheduler._requests)
    for job_id in (ids[0], ids[2]):
        world.call("alice", "POST", f"/v1/jobs/{job_id}/cancel")
    world.scheduler.tick()
    assert world.scheduler._requests == {} and world.scheduler._reasons == {}
