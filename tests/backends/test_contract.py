"""What every backend promises (see src/computegrid/backends/README.md)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from computegrid.backends import Backend, EngineState, RunRequest
from computegrid.backends.base import FINISHED
from tests.backends.conftest import wait_for

_ids = itertools.count(1)


def request(run: str | None, *, devices: tuple[int, ...] = (), workdir: str | None = None,
            envs: dict[str, str] | None = None) -> RunRequest:
    return RunRequest(job_id=next(_ids), attempt=1, rank=0, nodes=1, run=run, image=None, workdir=workdir,
                      envs=envs or {}, device_indices=devices, device_models=tuple("A100-80G" for _ in devices),
                      milli_per_device=1000 if devices else 0, cpu_milli=500, memory_mb=256)


def read_all_logs(backend: Backend, engine_id: str) -> str:
    out, offset = b"", 0
    while True:
        chunk = backend.logs(engine_id, offset)
        if not chunk.data:
            return out.decode()
        out += chunk.data
        offset = chunk.next_offset


def test_inventory_reports_cpus_memory_and_declared_devices(backend: Backend) -> None:
    inv = backend.inventory()
    assert inv.cpu_milli >= 1000 and inv.memory_mb > 0
    declared = [d for d in inv.devices if d.source == "declared"]
    assert [d.model for d in declared] == ["A100-80G", "A100-80G"]
    assert len({d.index for d in inv.devices}) == len(inv.devices)


def test_submit_runs_to_success_with_logs_env_and_usage(backend: Backend, tmp_path: Path) -> None:
    run = request("echo out-$GREETING; echo err >&2; pwd", envs={"GREETING": "hi"}, workdir=str(tmp_path))
    engine_id = backend.submit(run)
    status = wait_for(backend, engine_id, set(FINISHED))
    assert (status.state, status.exit_code) == (EngineState.SUCCEEDED, 0)
    text = read_all_logs(backend, engine_id)
    assert "out-hi" in text and "err" in text and str(tmp_path) in text
    usage = backend.usage(engine_id)
    assert [u.device_index for u in usage] == [-1]
    assert usage[0].cpu_milli == 500 and usage[0].end_ms >= usage[0].start_ms == status.started_ms


def test_failing_exit_code_is_reported(backend: Backend) -> None:
    engine_id = backend.submit(request("exit 7"))
    status = wait_for(backend, engine_id, set(FINISHED))
    assert (status.state, status.exit_code) == (EngineState.FAILED, 7)


def test_cancel_stops_a_running_job(backend: Backend) -> None:
    engine_id = backend.submit(request("echo begun; sleep 60"))
    wait_for(backend, engine_id, {EngineState.RUNNING})
    assert engine_id in backend.active_ids()
    started = time.monotonic()
    backend.cancel(engine_id)
    status = wait_for(backend, engine_id, set(FINISHED))
    assert status.state == EngineState.CANCELLED and time.monotonic() - started < 15
    assert engine_id not in backend.active_ids()
    assert "begun" in read_all_logs(backend, engine_id)


def test_devices_land_in_cuda_visible_devices_and_usage(backend: Backend) -> None:
    engine_id = backend.submit(request("echo visible=$CUDA_VISIBLE_DEVICES", devices=(0, 1)))
    wait_for(backend, engine_id, set(FINISHED))
    assert "visible=0,1" in read_all_logs(backend, engine_id)
    device_usage = [u for u in backend.usage(engine_id) if u.device_index >= 0]
    assert [(u.device_index, u.model, u.share_milli) for u in device_usage] == [
        (0, "A100-80G", 1000), (1, "A100-80G", 1000)]


def test_submit_is_idempotent_per_attempt(backend: Backend, tmp_path: Path) -> None:
    marker = tmp_path / "count"
    run = request(f"echo x >> {marker}; sleep 0.5")
    first = backend.submit(run)
    wait_for(backend, first, {EngineState.RUNNING, *FINISHED})
    assert backend.submit(run) == first
    wait_for(backend, first, set(FINISHED))
    assert backend.submit(run) == first
    time.sleep(0.5)
    assert marker.read_text().count("x") == 1


def test_unknown_id_is_unknown(backend: Backend) -> None:
    assert backend.status(backend.engine_id(999_999, 1)).state == EngineState.UNKNOWN


def test_missing_workdir_fails_with_a_reason(backend: Backend, tmp_path: Path) -> None:
    engine_id = backend.submit(request("true", workdir=str(tmp_path / "absent")))
    status = wait_for(backend, engine_id, set(FINISHED))
    assert status.state == EngineState.FAILED
    assert "does not exist" in read_all_logs(backend, engine_id)
