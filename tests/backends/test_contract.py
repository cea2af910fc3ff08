"""What every backend promises (see src/computegrid/backends/README.md), run against local, Slurm and Ray."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from computegrid.backends import Backend, EngineState, NodePart, RunRequest, SubmitRefused
from computegrid.backends.base import FINISHED
from tests.backends.conftest import Engine, wait_for

_ids = itertools.count(int(time.time()) % 100_000 * 100 + os.getpid() % 100)  # unique across runs on one engine


def request(backend: Backend, run: str | None, *, devices: int = 0, model: str = "", workdir: str | None = None,
            envs: dict[str, str] | None = None, hosts: int = 1, cpu_milli: int = 500) -> RunRequest:
    """A request for `devices` devices of `model` on each of the first `hosts` nodes that have them."""
    nodes = [n for n in backend.inventory() if sum(d.model == model for d in n.devices) >= devices or not devices]
    nodes = nodes[:hosts] if len(nodes) >= hosts else backend.inventory()[:hosts]
    parts = []
    for rank, node in enumerate(nodes):
        picked = [d for d in node.devices if d.model == model][:devices] if devices else []
        indices = tuple(d.index for d in picked) if len(picked) == devices else tuple(range(devices))
        parts.append(NodePart(rank=rank, hostname=node.hostname, device_indices=indices,
                              device_models=tuple(model for _ in indices)))
    return RunRequest(job_id=next(_ids), attempt=1, nodes=len(parts), run=run, image=None, workdir=workdir,
                      envs=envs or {}, milli_per_device=1000 if devices else 0, cpu_milli=cpu_milli,
                      memory_mb=256, parts=tuple(parts), time_limit_s=600, name="contract")


def read_all_logs(backend: Backend, engine_id: str) -> str:
    out, offset = b"", 0
    while True:
        chunk = backend.logs(engine_id, offset)
        if not chunk.data:
            return out.decode()
        out += chunk.data
        offset = chunk.next_offset


def finished(backend: Backend, engine_id: str) -> tuple[EngineState, int | None, str]:
    status = wait_for(backend, engine_id, set(FINISHED))
    return status.state, status.exit_code, read_all_logs(backend, engine_id)


def test_inventory_lists_nodes_cpus_memory_and_a100s(backend: Backend, engine: Engine) -> None:
    nodes = backend.inventory()
    assert nodes and all(n.cpu_milli >= 1000 and n.memory_mb > 0 and n.hostname for n in nodes)
    assert len({n.hostname for n in nodes}) == len(nodes)
    for node in nodes:
        assert len({d.index for d in node.devices}) == len(node.devices)
    assert max(sum(d.model == engine.a100_model for d in n.devices) for n in nodes) >= 2


def test_submit_runs_to_success_with_logs_env_and_usage(backend: Backend, tmp_path: Path) -> None:
    run = request(backend, "echo out-$GREETING job=$COMPUTEGRID_JOB_ID; echo err >&2; pwd",
                  envs={"GREETING": "hi"}, workdir=str(tmp_path))
    engine_id = backend.submit(run)
    state, code, text = finished(backend, engine_id)
    assert (state, code) == (EngineState.SUCCEEDED, 0), text
    assert "out-hi" in text and "err" in text and str(tmp_path) in text and f"job={run.job_id}" in text
    status = backend.status(engine_id)
    assert status.started_ms is not None and status.ended_ms is not None and status.ended_ms >= status.started_ms
    usage = backend.usage(engine_id)
    assert [u.device_index for u in usage] == [-1]
    assert usage[0].cpu_milli >= 500 and usage[0].end_ms >= usage[0].start_ms > 0


def test_failing_exit_code_is_reported(backend: Backend) -> None:
    state, code, _ = finished(backend, backend.submit(request(backend, "echo about to fail; exit 7")))
    assert (state, code) == (EngineState.FAILED, 7)


def test_cancel_stops_a_running_job_and_it_is_still_metered(backend: Backend) -> None:
    engine_id = backend.submit(request(backend, "echo begun; sleep 120"))
    wait_for(backend, engine_id, {EngineState.RUNNING})
    time.sleep(1.5)
    assert engine_id in backend.active_ids()
    started = time.monotonic()
    backend.cancel(engine_id)
    state, _, text = finished(backend, engine_id)
    assert state == EngineState.CANCELLED and time.monotonic() - started < 30
    assert engine_id not in backend.active_ids()
    assert "begun" in text
    cpu = [u for u in backend.usage(engine_id) if u.device_index < 0]
    assert cpu and cpu[0].end_ms - cpu[0].start_ms >= 1000


def test_two_a100s_land_on_a100s(backend: Backend, engine: Engine) -> None:
    run = request(backend, "echo visible=$CUDA_VISIBLE_DEVICES", devices=2, model=engine.a100_model)
    engine_id = backend.submit(run)
    state, _, text = finished(backend, engine_id)
    assert state == EngineState.SUCCEEDED, text
    assert engine.device_evidence(text, 2), text
    devices = [u for u in backend.usage(engine_id) if u.device_index >= 0]
    assert sorted((u.model, u.share_milli) for u in devices) == [(engine.a100_model, 1000)] * 2
    assert len({u.device_index for u in devices}) == 2


def test_a_request_larger_than_the_site_is_refused_or_waits_with_a_reason(backend: Backend, engine: Engine) -> None:
    most = max(sum(d.model == engine.a100_model for d in n.devices) for n in backend.inventory())
    run = request(backend, "echo should-not-run", devices=most + 6, model=engine.a100_model)
    try:
        engine_id = backend.submit(run)
    except SubmitRefused as refused:
        assert str(refused), "a refusal names its reason"
        return
    time.sleep(3)
    status = backend.status(engine_id)
    assert status.state in (EngineState.QUEUED, EngineState.FAILED), status
    assert status.reason, "a request that cannot start says why"
    backend.cancel(engine_id)


def test_submit_is_idempotent_per_attempt(backend: Backend, tmp_path: Path) -> None:
    marker = tmp_path / "count"
    run = request(backend, f"echo x >> {marker}; sleep 1")
    first = backend.submit(run)
    wait_for(backend, first, {EngineState.RUNNING, *FINISHED})
    assert backend.submit(run) == first
    wait_for(backend, first, set(FINISHED))
    assert backend.submit(run) == first
    time.sleep(1)
    assert marker.read_text().count("x") == 1


def test_unknown_id_is_unknown(backend: Backend) -> None:
    assert backend.status(backend.engine_id(987_654_321, 1)).state == EngineState.UNKNOWN


def test_missing_workdir_fails_with_a_reason(backend: Backend, tmp_path: Path) -> None:
    state, _, text = finished(backend, backend.submit(request(backend, "true", workdir=str(tmp_path / "absent"))))
    assert state == EngineState.FAILED
    assert "does not exist" in text


def test_gang_across_two_nodes_runs_every_rank(backend: Backend, engine: Engine) -> None:
    if not engine.gang:
        pytest.skip(f"{engine.name} has one node here; the gang case runs on Ray's two nodes")
    run = request(backend, "echo rank=$COMPUTEGRID_NODE_RANK of=$COMPUTEGRID_NUM_NODES; sleep 1",
                  devices=1, model=engine.a100_model, hosts=2)
    assert len({p.hostname for p in run.parts}) == 2
    state, _, text = finished(backend, backend.submit(run))
    assert state == EngineState.SUCCEEDED, text
    assert "rank=0 of=2" in text and "rank=1 of=2" in text
    hosts = {u.hostname for u in backend.usage(backend.engine_id(run.job_id, 1)) if u.device_index >= 0}
    assert hosts == {p.hostname for p in run.parts}
