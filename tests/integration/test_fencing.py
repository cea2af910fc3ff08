"""Fencing with real processes: SIGKILL the agent running a job and keep it away past the heartbeat timeout.
The job reruns on the other site; the first attempt's runner stops itself when its lease runs out, before
the second attempt starts, so exactly one attempt completes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from computegrid.agent.work_lock import hold_work_dir
from tests.integration.conftest import REPO, UpProcess
from tests.integration.test_agent_process import wait_until

HEARTBEAT_TIMEOUT_S = 4
LEASE_S = 2  # SIGTERM at 2 s of silence, SIGKILL at 2.5 s: before the control plane requeues at 4 s


def start_agent(up: UpProcess, site: str, node: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "computegrid", "agent", "--site", site, "--node-name", node,
         "--work-dir", str(up.tmp / "agent-work"), "--poll-interval", "0.2", "--lease", str(LEASE_S)],
        cwd=REPO, env=up.env, stdout=subprocess.DEVNULL, stderr=open(up.tmp / f"agent-{node}.log", "wb"),  # noqa: SIM115
        start_new_session=True)


def read_ms(path: Path) -> int:
    return int(path.read_text().strip())


def test_killed_agents_job_reruns_elsewhere_and_never_runs_twice(up_factory: Callable[..., UpProcess]) -> None:
    up = up_factory(["--no-agent", "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT_S)])
    up.start()
    client = up.client()
    for site in ("east", "west"):
        client.create_site(site, region="yangtze-delta", tier="hub", electricity_fen_per_kwh=50, provider="local")
    agents = {"east": start_agent(up, "east", "east-1"), "west": start_agent(up, "west", "west-1")}
    markers = up.tmp / "markers"
    markers.mkdir()
    try:
        wait_until(lambda: {n["name"] for n in client.nodes()} >= {"east-1", "west-1"}, 30, "both agents")
        job = client.submit({"name": "marked", "workdir": str(markers), "resources": {"cpus": 0.5},
                             "run": 'echo "start $COMPUTEGRID_ATTEMPT"; sleep 6; '
                                    'echo done > "marker.$COMPUTEGRID_ATTEMPT"'})
        wait_until(lambda: "start 1" in client.logs(job["id"])["data"], 30, "attempt 1 to run")
        first_site = client.job(job["id"])["site"]
        second_site = "west" if first_site == "east" else "east"
        agents[first_site].kill()
        agents[first_site].wait(10)

        def rerun() -> bool:
            shown = client.job(job["id"])
            return bool(shown["attempt"] == 2 and shown["state"] == "succeeded")

        wait_until(rerun, 40, "attempt 2 to succeed")
        assert client.job(job["id"])["site"] == second_site
        assert sorted(p.name for p in markers.iterdir()) == ["marker.2"]  # attempt 1 never completed

        first = up.tmp / "agent-work" / first_site / f"{first_site}-1" / f"job-{job['id']}-1"
        second = up.tmp / "agent-work" / second_site / f"{second_site}-1" / f"job-{job['id']}-2"
        assert (first / "stopped").read_text() == "lease expired"
        assert read_ms(first / "end_ms") <= read_ms(second / "start_ms")
        events = client.events(job["id"])
        assert [e["to"] for e in events if e["to"] in ("lost", "pending")][-2:] == ["lost", "pending"]
        assert client.logs(job["id"])["data"] == "start 2\n"
        shown = up.cli("logs", str(job["id"]), "--rank", "0")
        assert shown.returncode == 0 and shown.stdout == "start 2\n", shown.stderr
        refused = up.cli("logs", str(job["id"]), "--rank", "3")
        assert refused.returncode != 0 and "no rank 3" in refused.stdout + refused.stderr
        assert "lease expired" in (first / "output.log").read_text()
    finally:
        for proc in agents.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_second_agent_on_the_same_work_dir_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "agent-work"
    held = hold_work_dir(work / "east" / "east-1")  # a first agent of node east-1 runs here
    try:
        second = subprocess.run(
            [sys.executable, "-m", "computegrid", "agent", "--site", "east", "--node-name", "east-1",
             "--work-dir", str(work)], cwd=REPO, env=dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config")),
            capture_output=True, text=True, timeout=60)
    finally:
        held.close()
    assert second.returncode == 2
    assert "another agent already runs on" in second.stdout + second.stderr
