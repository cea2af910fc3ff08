"""The full-size layout: `serve` (two API workers), `scheduler` and `agent` as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from computegrid.client import Client
from tests.conftest import fresh_database_url
from tests.integration.conftest import free_port


def test_serve_scheduler_and_agent_processes_run_a_job(db_kind: str, tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    if db_kind != "sqlite":
        env["COMPUTEGRID_DATABASE_URL"] = fresh_database_url(db_kind, tmp_path)
    state = str(tmp_path / "state")
    cg = [sys.executable, "-m", "computegrid"]
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> None:
        log = open(tmp_path / f"{args[0]}.log", "wb")  # noqa: SIM115 - lives as long as the process
        procs.append(subprocess.Popen([*cg, *args], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))

    try:
        spawn("serve", "--workers", "2", "--port", str(port), "--state-dir", state)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        spawn("scheduler", "--state-dir", state)
        env["COMPUTEGRID_URL"] = f"http://127.0.0.1:{port}"
        spawn("agent", "--site", "local", "--node-name", "worker-1", "--work-dir", str(tmp_path / "work"),
              "--poll-interval", "0.2")
        key = json.loads((tmp_path / "config" / "computegrid" / "credentials.json").read_text())["api_key"]
        client = Client(f"http://127.0.0.1:{port}", key)
        job = client.submit({"name": "split", "run": "echo from the split layout", "resources": {"cpus": 0.5}})
        deadline = time.monotonic() + 60
        while client.job(job["id"])["state"] != "succeeded":
            assert time.monotonic() < deadline, [p.read_text()[-2000:] for p in tmp_path.glob("*.log")]
            time.sleep(0.3)
        shown = client.job(job["id"])
        assert shown["node"] == "worker-1" and "from the split layout" in client.logs(job["id"])["data"]
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGINT)
        for proc in reversed(procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["pkill", "-9", "-f", str(tmp_path / "work")], check=False)
    assert all(p.returncode == 0 for p in procs), [(p.args[3], p.returncode) for p in procs]
