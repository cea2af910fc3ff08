"""A standalone `computegrid agent` joins a site; when it is killed, its node goes silent and its
running job becomes lost and is requeued."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

from tests.integration.conftest import REPO, UpProcess


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_agent_joins_site_runs_job_and_loss_is_detected(up_factory: Callable[..., UpProcess]) -> None:
    up = up_factory(["--no-agent", "--heartbeat-timeout", "3"])
    up.start()
    client = up.client()
    client.create_site("edge-1", region="greater-bay", tier="edge", electricity_fen_per_kwh=72, provider="local")
    agent = subprocess.Popen(
        [sys.executable, "-m", "computegrid", "agent", "--site", "edge-1", "--node-name", "edge-node",
         "--work-dir", str(up.tmp / "agent-work"), "--poll-interval", "0.2"],
        cwd=REPO, env=up.env, stdout=subprocess.DEVNULL, stderr=open(up.tmp / "agent.log", "wb"),  # noqa: SIM115
        start_new_session=True)
    try:
        wait_until(lambda: any(n["name"] == "edge-node" for n in client.nodes()), 30, "the agent to register")
        quick = client.submit({"name": "quick", "run": "echo at the edge", "placement": {"tier": "edge"},
                               "resources": {"cpus": 0.5}})
        wait_until(lambda: client.job(quick["id"])["state"] == "succeeded", 30, "the edge job")
        assert "at the edge" in client.logs(quick["id"])["data"]
        assert client.job(quick["id"])["site"] == "edge-1"

        slow = client.submit({"name": "slow", "run": "sleep 120", "resources": {"cpus": 0.5}})
        wait_until(lambda: client.job(slow["id"])["state"] == "running", 30, "the slow job to run")
        agent.kill()
        agent.wait(10)
        wait_until(lambda: client.job(slow["id"])["state"] == "pending", 30, "the job to be requeued")
        events = [e["to"] for e in client.events(slow["id"])]
        assert events[-2:] == ["lost", "pending"]
        assert "sent no heartbeat" in [e["reason"] for e in client.events(slow["id"])][-2]
        assert [n["state"] for n in client.nodes("edge-1")] == ["down"]
    finally:
        if agent.poll() is None:
            agent.kill()
        subprocess.run(["pkill", "-9", "-f", str(up.tmp / "agent-work")], check=False)
