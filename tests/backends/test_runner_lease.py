"""The local runner stops its job once its agent's lease runs out (fencing), and not while it is renewed."""

from __future__ import annotations

import time
from pathlib import Path

from computegrid.backends.base import FINISHED, EngineState, ExecStatus, NodePart, RunRequest
from computegrid.backends.local import LocalBackend


def request(job_id: int, run: str) -> RunRequest:
    return RunRequest(job_id=job_id, attempt=1, nodes=1, run=run, image=None, workdir=None, envs={},
                      milli_per_device=0, cpu_milli=100, memory_mb=64,
                      parts=(NodePart(rank=0, hostname="h"),), name="lease")


def wait_finished(backend: LocalBackend, engine_id: str, timeout: float = 15) -> ExecStatus:
    deadline = time.monotonic() + timeout
    while (status := backend.status(engine_id)).state not in FINISHED:
        assert time.monotonic() < deadline, f"{engine_id} is still {status.state}"
        time.sleep(0.05)
    return status


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_runner_stops_its_job_when_the_lease_expires(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, hostname="h")
    backend.renew_lease(now_ms() + 500, now_ms() + 1000)
    # The shell ignores SIGTERM: only the SIGKILL at kill_ms ends it.
    engine_id = backend.submit(request(1, "trap '' TERM; echo working; while true; do sleep 0.1; done"))
    status = wait_finished(backend, engine_id)
    assert status.state == EngineState.CANCELLED and status.lost
    assert status.reason == "stopped: lease expired"
    term, kill = (int(x) for x in backend.lease_file.read_text().split())
    assert status.ended_ms is not None and status.ended_ms >= kill
    output = backend.logs(engine_id, 0).data.decode()
    assert output.startswith("working\n") and "lease expired" in output
    assert engine_id not in backend.active_ids()


def test_renewed_lease_lets_the_job_finish(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, hostname="h")
    backend.renew_lease(now_ms() + 400, now_ms() + 600)
    engine_id = backend.submit(request(2, "sleep 1; echo finished"))
    deadline = time.monotonic() + 15
    while backend.status(engine_id).state not in FINISHED:
        assert time.monotonic() < deadline
        backend.renew_lease(now_ms() + 400, now_ms() + 600)  # what the agent does after each heartbeat
        time.sleep(0.05)
    status = backend.status(engine_id)
    assert status.state == EngineState.SUCCEEDED and not status.lost
    assert backend.logs(engine_id, 0).data == b"finished\n"
