"""The README's promise: `computegrid up`, then `computegrid submit examples/hello.yaml --wait`."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.integration.conftest import UpProcess


def test_hello_runs_on_the_local_agent_and_shows_usage(up_factory: Callable[[], UpProcess]) -> None:
    up = up_factory()
    up.start()
    done = up.cli("submit", "examples/hello.yaml", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr + up.log_text()
    assert "hello from computegrid job" in done.stdout
    assert "succeeded" in done.stdout
    listed = up.cli("jobs")
    assert "hello" in listed.stdout and listed.returncode == 0
    job_id = up.client().jobs()[0]["id"]
    shown = up.cli("jobs", "show", str(job_id), "--json")
    job = json.loads(shown.stdout)
    assert {"id", "state", "site", "exit_code", "usage"} <= job.keys()
    assert (job["state"], job["site"], job["exit_code"]) == ("succeeded", "local", 0)
    assert job["node"] and job["started_at"] and job["ended_at"]
    assert float(job["usage"]["cpu_seconds"]) > 0 and "device_seconds" in job["usage"]
    assert up.stop() == 0
    assert "Stopped." in up.log_text()


def test_submit_without_wait_prints_the_id_last_and_cancel_stops_it(up_factory: Callable[[], UpProcess],
                                                                   tmp_path: object) -> None:
    up = up_factory()
    up.start()
    spec = up.tmp / "sleepy.yaml"
    spec.write_text("name: sleepy\nrun: echo started; sleep 60\nresources:\n  cpus: 0.5\n")
    submitted = up.cli("submit", str(spec))
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(submitted.stdout.strip().splitlines()[-1])
    client = up.client()
    import time

    deadline = time.monotonic() + 30
    while client.job(job_id)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.job(job_id)["state"] == "running"
    cancelled = up.cli("cancel", str(job_id))
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    deadline = time.monotonic() + 30
    while float(client.job(job_id)["usage"]["cpu_seconds"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert float(client.job(job_id)["usage"]["cpu_seconds"]) > 0  # charged for the time it ran
    assert "started" in client.logs(job_id)["data"]
    runner_dir = up.state_dir / "agent" / "local" / f"job-{job_id}-1"
    assert (runner_dir / "exit").exists()  # the process was stopped, not left running


def test_cli_errors_are_clear_and_nonzero(up_factory: Callable[[], UpProcess]) -> None:
    up = up_factory()
    up.start()
    bad = up.tmp / "bad.yaml"
    bad.write_text("name: x\nrun: echo\nresources:\n  accelerators: A100:-1\n")
    result = up.cli("submit", str(bad))
    assert result.returncode == 1 and "resources.accelerators" in result.stderr and "Traceback" not in result.stderr
    missing = up.cli("submit", str(up.tmp / "nope.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert up.cli("jobs", "show", "424242").returncode == 1
    assert up.client().jobs() == []


def test_second_up_on_a_taken_port_fails_clearly_and_changes_nothing(up_factory: Callable[[], UpProcess]) -> None:
    up = up_factory()
    up.start()
    credentials = up.tmp / "config" / "computegrid" / "credentials.json"
    before = credentials.read_text()
    clash = up.cli("up", "--port", str(up.port), "--state-dir", str(up.tmp / "other-state"), timeout=60)
    assert clash.returncode == 1
    assert "already up?" in clash.stderr and "Traceback" not in clash.stderr
    assert credentials.read_text() == before
    assert not (up.tmp / "other-state").exists() or not any((up.tmp / "other-state").iterdir())
    assert up.cli("jobs").returncode == 0  # the CLI still reaches the first platform with its key
