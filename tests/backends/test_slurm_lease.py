"""Fencing on Slurm: the batch script's lease watchdog, run here without Slurm (as Slurm runs the batch script:
in a process group of its own, no SLURM_JOB_ID, so the watchdog signals that group), and `status` reading
its marker. A real-Slurm run is in tests/integration/test_slurm_end_to_end.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from computegrid.backends.base import EngineState, NodePart, RunRequest
from computegrid.backends.slurm import SlurmBackend, SlurmJob


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _prepare(tmp_path: Path, command: str) -> tuple[SlurmBackend, Path]:
    backend = SlurmBackend(tmp_path / "work")
    run = RunRequest(job_id=7, attempt=1, nodes=1, run=command, image=None, workdir=None, envs={},
                     milli_per_device=0, cpu_milli=1000, memory_mb=256, parts=(NodePart(rank=0, hostname="n1"),),
                     name="fenced")
    root = tmp_path / "work" / backend.engine_id(run.job_id, run.attempt)
    root.mkdir(parents=True)
    backend._write_scripts(run, root)
    (root / "request.json").write_text(json.dumps({"request": asdict(run)}))
    return backend, root


def _start(root: Path, path_dirs: tuple[Path, ...] = (), **env: str) -> subprocess.Popen[bytes]:
    """batch.sh as sbatch starts it: its own process group, output into output.log."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    environ["PATH"] = os.pathsep.join([*map(str, path_dirs), environ.get("PATH", "/usr/bin:/bin")])
    environ.update(env)
    with open(root / "output.log", "ab") as out:
        return subprocess.Popen([str(root / "batch.sh")], cwd=root, env=environ, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_an_expired_lease_stops_the_job_and_marks_it(tmp_path: Path) -> None:
    backend, root = _prepare(tmp_path, 'echo started; echo $$ > task.pid; sleep 60; echo "not stopped"')
    backend.renew_lease(_now_ms() + 1500, _now_ms() + 60_000)  # SIGTERM after 1.5 s; the kill is far off
    batch = _start(root)
    code = batch.wait(timeout=10)
    task = int((root / "task.pid").read_text())
    assert code == 128 + signal.SIGTERM
    _wait_until(lambda: _group_gone(batch.pid), 5, "the job's processes to end")  # task, sleep and watchdog
    assert not Path(f"/proc/{task}").exists()
    assert (root / "stopped").read_text() == "lease expired\n"
    output = (root / "output.log").read_text()
    assert output.startswith("started\n") and "not stopped" not in output
    assert "the agent's lease expired" in output


def test_a_job_that_ignores_sigterm_is_killed_at_the_kill_time(tmp_path: Path) -> None:
    backend, root = _prepare(tmp_path, "trap '' TERM; echo started; sleep 60; echo 'not stopped'")
    backend.renew_lease(_now_ms() + 1000, _now_ms() + 2500)
    batch = _start(root)
    assert batch.wait(timeout=10) == -signal.SIGKILL  # the whole group, batch script included
    _wait_until(lambda: _group_gone(batch.pid), 5, "the job's processes to end")
    assert (root / "stopped").exists()
    assert "not stopped" not in (root / "output.log").read_text()


def test_a_renewed_lease_lets_the_job_finish_and_the_watchdog_goes_with_it(tmp_path: Path) -> None:
    backend, root = _prepare(tmp_path, "sleep 2.5; echo finished; exit 3")
    backend.renew_lease(_now_ms() + 1000, _now_ms() + 1500)
    batch = _start(root)
    while batch.poll() is None:  # the agent hears the control plane every 0.2 s
        backend.renew_lease(_now_ms() + 1000, _now_ms() + 1500)
        time.sleep(0.2)
    assert batch.returncode == 3  # the task's own exit code
    assert not (root / "stopped").exists()
    assert (root / "output.log").read_text() == "finished\n"
    _wait_until(lambda: _group_gone(batch.pid), 5, "the watchdog to end with the job")


def test_no_lease_file_means_no_watchdog_action(tmp_path: Path) -> None:
    _backend, root = _prepare(tmp_path, "sleep 1.5; echo finished")
    batch = _start(root)
    assert batch.wait(timeout=10) == 0
    assert not (root / "stopped").exists()
    assert (root / "output.log").read_text() == "finished\n"


def test_a_lease_expired_before_the_job_started_runs_nothing(tmp_path: Path) -> None:
    backend, root = _prepare(tmp_path, "echo ran")
    backend.renew_lease(_now_ms() - 1000, _now_ms() + 60_000)  # it waited in Slurm's queue past its lease
    batch = _start(root)
    assert batch.wait(timeout=10) == 143
    assert (root / "stopped").exists()
    assert "ran" not in (root / "output.log").read_text()


def test_under_slurm_the_watchdog_cancels_the_job_through_scancel(tmp_path: Path) -> None:
    """With SLURM_JOB_ID set, the watchdog asks Slurm (scancel --full) to signal every process of the job. The
    scancel here records its arguments and does what Slurm would on one node: signal the batch script's group."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scancel.calls"
    fake = bin_dir / "scancel"
    fake.write_text(f"""#!/bin/sh
echo "$*" >> {calls}
sig=${{2#--signal=}}
kill -s "$sig" -- -"$(ps -o pgid= -p $$ | tr -d ' ')"
""")
    fake.chmod(0o755)
    backend, root = _prepare(tmp_path, "trap '' TERM; sleep 60")
    backend.renew_lease(_now_ms() + 1000, _now_ms() + 2500)
    batch = _start(root, (bin_dir,), SLURM_JOB_ID="4242")
    assert batch.wait(timeout=10) == -signal.SIGKILL
    assert calls.read_text().splitlines() == ["--full --signal=TERM 4242", "--full --signal=KILL 4242"]
    assert (root / "stopped").exists()


def test_status_reports_a_job_its_watchdog_stopped_as_lost(tmp_path: Path) -> None:
    backend, root = _prepare(tmp_path, "true")
    engine_id = root.name
    backend._record(engine_id, "99")
    ended = SlurmJob(job_id="99", name=engine_id, state="CANCELLED", reason="None", exit_code=137, start_s=100,
                     end_s=110, nodes=("n1",), tres={}, workdir=str(root))
    backend._job = lambda slurm_id, **_: ended  # type: ignore[method-assign]
    assert backend.status(engine_id).lost is False
    (root / "stopped").write_text("lease expired\n")
    status = backend.status(engine_id)
    assert (status.state, status.lost, status.started_ms, status.ended_ms) == (EngineState.CANCELLED, True,
                                                                               100_000, 110_000)
    assert "lease expired" in status.reason
