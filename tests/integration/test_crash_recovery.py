"""SIGKILL `computegrid up` during a burst of 200 submissions, start it again: no accepted job is
lost and none runs twice."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from computegrid.client import ApiError, Client
from tests.integration.conftest import UpProcess

JOBS = 200


def submit_all(up: UpProcess, runs_file: str, accepted: dict[int, int], killed: threading.Event) -> None:
    """Submit JOBS jobs, each with its own Idempotency-Key, retrying through the outage like a real client."""
    client = Client(up.url, up.api_key(), timeout=10)
    for n in range(JOBS):
        spec = {"name": f"burst-{n}", "run": f"echo $COMPUTEGRID_JOB_ID:$COMPUTEGRID_ATTEMPT >> {runs_file}; "
                                             f"sleep 2; echo job {n} done",
                "resources": {"cpus": 0.1, "memory_gb": 0.05}}
        while True:
            try:
                job = client.submit(spec, idempotency_key=f"burst-{n}")
                accepted[n] = int(job["id"])
                break
            except (httpx.HTTPError, ApiError):
                killed.wait(5)
                time.sleep(0.2)
                client = Client(up.url, up.api_key(), timeout=10)


def test_sigkill_during_burst_loses_nothing_and_runs_nothing_twice(
        up_factory: Callable[[], UpProcess]) -> None:
    up = up_factory()
    up.start()
    runs_file = str(up.tmp / "runs.txt")
    accepted: dict[int, int] = {}
    killed = threading.Event()
    submitter = threading.Thread(target=submit_all, args=(up, runs_file, accepted, killed))
    submitter.start()
    # Kill once enough submissions were accepted and some jobs are running (each runs for 2 s),
    # so the kill interrupts both the burst and running work.
    watcher = up.client()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (len(accepted) < 80 or not watcher.jobs(state="running", limit=5)):
        time.sleep(0.05)
    accepted_before_kill = dict(accepted)
    killed_at = datetime.now(UTC)
    up.kill()
    killed.set()
    assert len(accepted_before_kill) >= 80, up.log_text()
    up.start()
    submitter.join(120)
    assert not submitter.is_alive() and len(accepted) == JOBS

    client = up.client()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        jobs = client.jobs(limit=1000)
        if len(jobs) >= JOBS and all(j["state"] in ("succeeded", "failed", "cancelled", "lost") for j in jobs):
            break
        time.sleep(0.5)
    jobs = {j["id"]: j for j in client.jobs(limit=1000)}

    # Nothing accepted before the kill was lost, and retries created no duplicates.
    assert set(accepted_before_kill.values()) <= set(jobs)
    assert len(jobs) == JOBS == len(set(accepted.values()))
    assert Counter(j["state"] for j in jobs.values()) == {"succeeded": JOBS}, up.log_text()[-3000:]
    # Each job ran exactly once, as its first attempt.
    with open(runs_file) as handle:
        runs = Counter(line.strip() for line in handle if line.strip())
    assert sorted(runs) == sorted(f"{job_id}:1" for job_id in jobs)
    assert set(runs.values()) == {1}
    assert all(j["attempt"] == 1 for j in jobs.values())
    # The kill really did interrupt work: some jobs were running across it and were re-attached.
    spanning = [j for j in jobs.values()
                if j["started_at"] and datetime.fromisoformat(j["started_at"]) < killed_at
                < datetime.fromisoformat(j["ended_at"])]
    assert spanning, "no job was running when up was killed; the test did not exercise recovery"
