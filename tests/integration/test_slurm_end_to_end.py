"""`computegrid up` with an agent on a real local Slurm site (Debian's slurm-wlm, started by
scripts/slurm-up.sh): a job submitted through the CLI runs as a Slurm job, and its du comes from
sacct. A killed agent loses nothing: restarted, it re-attaches to the running Slurm job by its id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from tests.backends.engine_slurm import SLURM_CONF, slurm_options, start_slurm
from tests.integration.conftest import REPO, UpProcess

A100_80G_PFLOPS = Fraction(312, 1000)  # the catalog's dense FP16 figure (core/data/accelerators.csv)


@pytest.fixture(scope="module")
def slurm_site() -> float:
    if "slurm" in {e.strip() for e in os.environ.get("COMPUTEGRID_SKIP_ENGINES", "").split(",")}:
        pytest.skip("slurm left out by COMPUTEGRID_SKIP_ENGINES")
    return start_slurm()


@pytest.fixture
def ups(tmp_path: Path) -> Iterator[Callable[[list[str]], UpProcess]]:
    made: list[UpProcess] = []

    def make(extra_args: list[str]) -> UpProcess:
        up = UpProcess(tmp_path, None, extra_args)
        made.append(up)
        return up

    yield make
    for up in made:
        up.cleanup()
    # Whatever this test left in Slurm (its jobs run in directories under tmp_path).
    squeue = _slurm(["squeue", "-h", "-o", "%i|%Z"])
    for line in squeue.stdout.splitlines():
        slurm_id, _, workdir = line.partition("|")
        if workdir.startswith(str(tmp_path)):
            _slurm(["scancel", slurm_id])


def _slurm(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SLURM_CONF=str(SLURM_CONF), SLURM_TIME_FORMAT="%s")
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)


def sacct_rows(name: str, under: Path) -> list[dict[str, str]]:
    """Slurm's accounting records of jobs named `name` that ran in a directory under `under`."""
    fields = ["JobIDRaw", "JobName", "State", "ExitCode", "Start", "End", "AllocTRES", "WorkDir"]
    done = _slurm(["sacct", "-X", "-P", "-n", "--name", name, "-S", "now-1days", "-E", "now",
                   "-o", ",".join(fields)])
    rows = [dict(zip(fields, line.split("|"), strict=False)) for line in done.stdout.splitlines() if "|" in line]
    return [r for r in rows if r.get("WorkDir", "").startswith(str(under))]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def write_config(tmp: Path) -> Path:
    options = slurm_options(tmp)
    options.pop("work_dir")
    config = tmp / "slurm.yaml"
    config.write_text(yaml.safe_dump(options))
    return config


def finished_in_sacct(name: str, under: Path) -> Callable[[], bool]:
    def check() -> bool:
        rows = sacct_rows(name, under)
        return bool(rows) and all(r["State"] not in ("PENDING", "RUNNING") and r["End"].isdigit() for r in rows)
    return check


def test_cli_job_runs_on_slurm_and_its_du_comes_from_sacct(slurm_site: float, ups: Callable[..., UpProcess],
                                                          tmp_path: Path) -> None:
    up = ups(["--backend", "slurm", "--backend-config", str(write_config(tmp_path))])
    up.start()
    try:
        wait_until(lambda: any(n["devices"] for n in up.client().nodes()), 30, "the Slurm node to register")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{up.log_text()[-3000:]}") from None
    spec = tmp_path / "two-a100.yaml"
    spec.write_text("name: on-slurm\n"
                    "run: |\n  echo visible=$CUDA_VISIBLE_DEVICES slurm_job=$SLURM_JOB_ID\n  sleep 3\n  echo done\n"
                    "resources:\n  accelerators: A100-80G:2\n  cpus: 1\n  memory_gb: 0.5\n")
    started = time.monotonic()
    done = up.cli("submit", str(spec), "--wait")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr + up.log_text()
    assert "succeeded" in done.stdout and "visible=" in done.stdout, done.stdout
    job_id = int(up.client().jobs()[0]["id"])
    name = f"cg-{job_id}-1"

    # It ran as a Slurm job of that name, once, with two A100s.
    wait_until(finished_in_sacct(name, tmp_path), 60, f"sacct to record {name}")
    rows = sacct_rows(name, tmp_path)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0", row
    assert "gres/gpu:a100=2" in row["AllocTRES"], row
    assert f"slurm_job={row['JobIDRaw']}" in done.stdout

    # Its usage, in du, is Slurm's accounted time on two A100-80Gs.
    shown = up.cli("jobs", "show", str(job_id), "--json")
    assert shown.returncode == 0, shown.stderr
    job = json.loads(shown.stdout)
    assert (job["state"], job["exit_code"]) == ("succeeded", 0)
    seconds = int(row["End"]) - int(row["Start"])
    assert seconds >= 3
    expected_du = Fraction(seconds, 3600) * 2 * A100_80G_PFLOPS
    assert job["usage"]["du"] is not None and float(job["usage"]["du"]) > 0, job["usage"]
    assert abs(Fraction(job["usage"]["du"]) - expected_du) < Fraction(1, 10**8), (job["usage"], seconds)
    assert float(job["usage"]["device_seconds"]) == pytest.approx(2 * seconds)
    print(f"slurm-up {slurm_site:.1f}s; submit --wait took {elapsed:.1f}s for a {seconds}s Slurm job; "
          f"usage {job['usage']}")
    assert up.stop() == 0


def test_a_killed_agent_reattaches_to_its_running_slurm_job(slurm_site: float, ups: Callable[..., UpProcess],
                                                           tmp_path: Path) -> None:
    up = ups(["--no-agent", "--heartbeat-timeout", "60"])
    up.start()
    client = up.client()
    client.create_site("slurm-1", region="guizhou", tier="hub", backend="slurm", electricity_fen_per_kwh=40,
                       provider="local")
    config = write_config(tmp_path)
    work = tmp_path / "agent-work"
    agents: list[subprocess.Popen[bytes]] = []

    def start_agent() -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"agent-{len(agents) + 1}.log", "wb")  # noqa: SIM115 - lives as long as the agent
        agent = subprocess.Popen(
            [sys.executable, "-m", "computegrid", "agent", "--site", "slurm-1", "--backend", "slurm",
             "--backend-config", str(config), "--work-dir", str(work), "--poll-interval", "0.2"],
            cwd=REPO, env=up.env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        agents.append(agent)
        return agent

    def agent_logs() -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("agent-*.log")))

    marker = tmp_path / "runs"
    try:
        first = start_agent()
        try:
            wait_until(lambda: any(n["devices"] for n in client.nodes("slurm-1")), 30, "the agent to register")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{agent_logs()[-3000:]}") from None
        job = client.submit({"name": "survives", "run": f"echo $COMPUTEGRID_ATTEMPT >> {marker}; sleep 8; "
                                                       "echo finished",
                             "resources": {"accelerators": "A100-80G:1", "cpus": 1, "memory_gb": 0.25}})
        job_id = int(job["id"])
        name = f"cg-{job_id}-1"
        wait_until(lambda: client.job(job_id)["state"] == "running", 60, "the job to run on Slurm")
        wait_until(marker.exists, 30, "the job to write its marker")

        first.kill()  # SIGKILL: the agent has no chance to stop anything
        first.wait(10)
        running = _slurm(["squeue", "-h", "--name", name, "-o", "%i|%T"]).stdout.split()
        assert len(running) == 1 and running[0].endswith("|RUNNING"), running
        assert client.job(job_id)["state"] == "running"

        start_agent()
        wait_until(lambda: client.job(job_id)["state"] == "succeeded", 60,
                   f"the job to succeed after the restart\n{agent_logs()}")
        shown = client.job(job_id)
        assert shown["attempt"] == 1 and shown["exit_code"] == 0
        assert "re-attached" in agent_logs()
        assert marker.read_text() == "1\n"  # the job's command ran once
        wait_until(finished_in_sacct(name, tmp_path), 60, f"sacct to record {name}")
        rows = sacct_rows(name, tmp_path)
        assert [r["State"] for r in rows] == ["COMPLETED"], rows  # one Slurm job, not two
        assert "finished" in client.logs(job_id)["data"]
        assert float(client.job(job_id)["usage"]["du"]) > 0
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)


def test_a_slurm_job_whose_lease_is_never_renewed_ends_as_lost(slurm_site: float, tmp_path: Path) -> None:
    """Fencing on a real Slurm: an agent that took a 2 s lease and then fell silent. The job's watchdog
    cancels it through scancel, and `status` says the engine stopped it (lost), not that it failed."""
    from computegrid.backends.base import EngineState, NodePart, RunRequest
    from computegrid.backends.slurm import SlurmBackend

    backend = SlurmBackend(**slurm_options(tmp_path / "work"))
    node = backend.inventory()[0].hostname
    now_ms = time.time_ns() // 1_000_000
    backend.renew_lease(now_ms + 2000, now_ms + 3000)  # and never again
    marker = tmp_path / "ran"
    run = RunRequest(job_id=90001, attempt=1, nodes=1, run=f"trap '' TERM; echo $$ > {marker}; sleep 60",
                     image=None, workdir=None, envs={}, milli_per_device=1000, cpu_milli=1000, memory_mb=128,
                     parts=(NodePart(rank=0, hostname=node, device_indices=(0,), device_models=("A100-80G",)),),
                     name="fenced")
    engine_id = backend.submit(run)
    try:
        wait_until(marker.exists, 20, "the job to start")
        wait_until(lambda: backend.status(engine_id).state not in (EngineState.QUEUED, EngineState.RUNNING), 15,
                   "the watchdog to end the job")
        status = backend.status(engine_id)
        assert (status.state, status.lost) == (EngineState.CANCELLED, True), status
        assert "lease expired" in status.reason
        assert "the agent's lease expired" in backend.logs(engine_id, 0).data.decode()
        task = int(marker.read_text())
        wait_until(lambda: not Path(f"/proc/{task}").exists(), 10, "the task (which ignores SIGTERM) to be killed")
    finally:
        backend.cancel(engine_id)
