"""Submit-to-start time per engine, directly and through computegrid, and the agent's extra cost.

For each engine it runs the same tiny job RUNS times in a row (default 20), each time recording when it
was submitted and when its command began (the job writes `date +%s%N` to a marker file), so both paths
are timed the same way, by the job itself:

- direct: the engine's own interface, as a user of that engine would call it
  (local: a detached `bash -c`; Slurm: `sbatch --wrap`; Ray: `JobSubmissionClient.submit_job`);
- computegrid: `computegrid up --backend ENGINE` (API + scheduler + agent, SQLite), the job sent with the
  Python SDK (`Client.submit`), so the path includes the API, the scheduler pass, the agent's heartbeat
  poll (0.5 s by default, the `up` default) and the backend's submit.

The overhead is median(computegrid) - median(direct). Slurm and Ray are started with scripts/slurm-up.sh
and scripts/ray-up.sh (left running afterwards; stop them with the matching -down.sh).

    .venv/bin/python benchmarks/engine_overhead.py                       # local, slurm, ray
    .venv/bin/python benchmarks/engine_overhead.py --engines local --runs 10
    .venv/bin/python benchmarks/engine_overhead.py --poll-interval 0.2   # a faster agent poll

Output: one line per run, a summary table, then JSON lines
{"bench": "engine_overhead", "engine": ..., "path": "direct"|"computegrid"|"overhead", "metric": ..., "value": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from computegrid.client import Client  # noqa: E402

BENCH = "engine_overhead"
SLURM_STATE = Path(os.environ.get("COMPUTEGRID_SLURM_STATE", "/tmp/computegrid-slurm"))
RAY_ADDRESS = os.environ.get("COMPUTEGRID_RAY_ADDRESS", "http://127.0.0.1:8265")
START_TIMEOUT_S = 120.0


def now_ns() -> int:
    return time.time_ns()


def wait_marker(marker: Path, timeout: float = START_TIMEOUT_S) -> int:
    """The job's own start time (ns since the epoch), once it has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = marker.read_text().strip()
            if text:
                return int(text)
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.005)
    raise TimeoutError(f"the job never wrote {marker}")


def job_command(marker: Path) -> str:
    return f"date +%s%N > {marker}.tmp && mv {marker}.tmp {marker}"


# ------------------------------------------------------------------------------------------- engines


def engine_config(engine: str, tmp: Path) -> Path | None:
    """The --backend-config file `up` gets for this engine."""
    if engine == "local":
        return None
    path = tmp / f"{engine}.yaml"
    if engine == "slurm":
        path.write_text(f"slurm_conf: {SLURM_STATE / 'slurm.conf'}\ngres_models: {{a100: A100-80G}}\n")
    else:
        path.write_text(f"address: {RAY_ADDRESS}\nresource_models: {{GPU_A100: A100-80G}}\n")
    return path


def start_engine(engine: str) -> None:
    if engine == "local":
        return
    script = REPO / "scripts" / f"{engine}-up.sh"
    print(f"starting {engine} with {script.name} ...", flush=True)
    subprocess.run(["bash", str(script)], check=True, stdout=subprocess.DEVNULL)


def direct_submit(engine: str, tmp: Path) -> Callable[[str], None]:
    if engine == "local":
        def local(cmd: str) -> None:
            subprocess.Popen(["bash", "-c", cmd], start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return local
    if engine == "slurm":
        env = dict(os.environ, SLURM_CONF=str(SLURM_STATE / "slurm.conf"))

        def slurm(cmd: str) -> None:
            subprocess.run(["sbatch", "--parsable", "--job-name", "bench-direct", "--output", str(tmp / "slurm-%j.out"),
                            "--cpus-per-task", "1", "--mem", "128", "--wrap", cmd], check=True, env=env,
                           capture_output=True)
        return slurm
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(RAY_ADDRESS)

    def ray(cmd: str) -> None:
        client.submit_job(entrypoint=cmd, entrypoint_num_cpus=0.5)
    return ray


class Up:
    """`computegrid up` for one engine, in its own process group and state dir."""

    def __init__(self, engine: str, tmp: Path, poll_interval: float):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.tmp = tmp
        self.env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "config"))
        args = [sys.executable, "-m", "computegrid", "up", "--port", str(self.port), "--state-dir",
                str(tmp / "state"), "--backend", engine, "--poll-interval", str(poll_interval)]
        config = engine_config(engine, tmp)
        if config is not None:
            args += ["--backend-config", str(config)]
        self.log = open(tmp / "up.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=tmp, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        credentials = tmp / "config" / "computegrid" / "credentials.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not credentials.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"up did not start:\n{(tmp / 'up.log').read_text()}")
            time.sleep(0.1)
        self.client = Client(f"http://127.0.0.1:{self.port}", json.loads(credentials.read_text())["api_key"])
        while not self.client.nodes():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no node registered:\n{(tmp / 'up.log').read_text()}")
            time.sleep(0.1)

    def submit(self, cmd: str) -> None:
        self.client.submit({"name": "bench", "run": cmd, "resources": {"cpus": 0.5, "memory_gb": 0.125}})

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def measure(label: str, submit: Callable[[str], None], tmp: Path, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        marker = tmp / f"{label.replace('/', '-')}-{i}.start"
        before = now_ns()
        submit(job_command(marker))
        started = wait_marker(marker)
        out.append((started - before) / 1e6)
        print(f"  {label:<24} run {i + 1:>2}/{runs}: {out[-1]:8.1f} ms", flush=True)
        time.sleep(0.3)  # let the previous job end, so each run finds the engine idle
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="local,slurm,ray")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=0.5, help="the agent's poll interval in `up`")
    args = parser.parse_args()
    results: dict[str, tuple[list[float], list[float]]] = {}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        start_engine(engine)
        with tempfile.TemporaryDirectory(prefix=f"cg-bench-{engine}-") as scratch:
            tmp = Path(scratch)
            direct = measure(f"{engine}/direct", direct_submit(engine, tmp), tmp, args.runs)
            up = Up(engine, tmp, args.poll_interval)
            try:
                via = measure(f"{engine}/computegrid", up.submit, tmp, args.runs)
            finally:
                up.stop()
        results[engine] = (direct, via)
    print(f"\n{'engine':<8} {'direct p50 ms':>14} {'computegrid p50 ms':>19} {'overhead ms':>12} {'cg p90 ms':>10}")
    lines = []
    for engine, (direct, via) in results.items():
        d50, v50 = statistics.median(direct), statistics.median(via)
        v90 = statistics.quantiles(via, n=10)[-1] if len(via) > 1 else via[0]
        print(f"{engine:<8} {d50:>14.1f} {v50:>19.1f} {v50 - d50:>12.1f} {v90:>10.1f}")
        lines += [{"path": "direct", "metric": "submit_to_start_p50_ms", "value": round(d50, 1)},
                  {"path": "computegrid", "metric": "submit_to_start_p50_ms", "value": round(v50, 1)},
                  {"path": "computegrid", "metric": "submit_to_start_p90_ms", "value": round(v90, 1)},
                  {"path": "overhead", "metric": "median_extra_ms", "value": round(v50 - d50, 1)}]
        for line in lines[-4:]:
            line.update({"bench": BENCH, "engine": engine, "runs": args.runs, "poll_interval_s": args.poll_interval})
    for line in lines:
        print(json.dumps({"bench": line.pop("bench"), "engine": line.pop("engine"), **line}))


if __name__ == "__main__":
    main()
