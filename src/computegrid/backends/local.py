"""The local backend: each job attempt is a detached subprocess on this machine.

Every attempt has a directory `WORK/job-<id>-<attempt>/`; the engine id is its name.
The runner (`local_runner.py`) keeps its state there, so an agent that restarts finds
each attempt where it left it and re-attaches rather than starting it again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from computegrid.backends.base import (
    EngineState,
    ExecStatus,
    Inventory,
    InventoryDevice,
    LogRead,
    RunRequest,
    SubmitRefused,
    UsageSlice,
    read_log_file,
)
from computegrid.backends.nvidia import nvidia_devices, nvidia_telemetry
from computegrid.core.capabilities import EngineCapabilities


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def _pid_alive(pid: int, directory: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return str(directory).encode() in cmdline  # guards against a recycled pid


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


class LocalBackend:
    name = "local"
    rank_logs = True  # one rank per request: its output is the rank's
    # Subprocesses: shares of a device yes, images no. A gang is one rank per node, and each local agent
    # drives its own node, so a site of several local agents runs gangs (one part each).
    capabilities = EngineCapabilities(shares=True, images=False, gangs=True, models=None)

    def __init__(self, work_dir: str | Path, declared: list[InventoryDevice] | None = None,
                 hostname: str | None = None):
        self.work_dir = Path(work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.declared = list(declared or [])
        self.hostname = hostname or socket.gethostname()
        self._indices: set[int] | None = None  # device indices, known after the first inventory

    # -- inventory
    def inventory(self) -> list[Inventory]:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        detected = nvidia_devices()
        next_index = max((d.index for d in detected), default=-1) + 1
        declared = [InventoryDevice(index=next_index + i, model=d.model, memory_gb=d.memory_gb, source="declared")
                    for i, d in enumerate(self.declared)]
        devices = tuple(detected) + tuple(declared)
        self._indices = {d.index for d in devices}
        return [Inventory(hostname=self.hostname, cpu_milli=cpus * 1000, memory_mb=_memory_mb(), devices=devices)]

    def telemetry(self) -> list[dict[str, Any]]:
        return nvidia_telemetry()

    # -- jobs
    def engine_id(self, job_id: int, attempt: int) -> str:
        return f"job-{job_id}-{attempt}"

    def _dir(self, engine_id: str) -> Path:
        if "/" in engine_id or not engine_id.startswith("job-"):
            raise ValueError(f"not a local engine id: {engine_id!r}")
        return self.work_dir / engine_id

    def submit(self, run: RunRequest) -> str:
        engine_id = self.engine_id(run.job_id, run.attempt)
        if len(run.parts) != 1:
            raise SubmitRefused(f"the local backend drives one node; this request has {len(run.parts)} parts")
        if run.image is not None:
            raise SubmitRefused("the local backend runs commands, not container images: leave out `image`")
        part = run.parts[0]
        if self._indices is None:
            self.inventory()
        known = self._indices or set()
        missing = sorted(set(part.device_indices) - known)
        if missing:
            raise SubmitRefused(f"this node has devices {sorted(known)}; the request names {missing} as well")
        root = self._dir(engine_id)
        if (root / "started").exists():
            return engine_id  # already running or done: never start twice
        root.mkdir(exist_ok=True)
        if run.run is None:
            raise SubmitRefused("the local backend runs commands: give `run`")
        cwd = Path(run.workdir).expanduser() if run.workdir else root
        if not cwd.is_dir():
            (root / "started").mkdir(exist_ok=True)
            (root / "output.log").write_text(f"workdir {cwd} does not exist on this node\n")
            (root / "exit").write_text("127")
            return engine_id
        env = dict(run.envs)
        env.update({
            "COMPUTEGRID_JOB_ID": str(run.job_id), "COMPUTEGRID_ATTEMPT": str(run.attempt),
            "COMPUTEGRID_NODE_RANK": str(part.rank), "COMPUTEGRID_NUM_NODES": str(run.nodes),
            "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in part.device_indices),
        })
        (root / "run.sh").write_text(run.run)
        (root / "run.json").write_text(json.dumps({"env": env, "cwd": str(cwd), "lease": str(self.lease_file),
                                                   "request": dataclasses.asdict(run)}))
        subprocess.Popen([sys.executable, "-m", "computegrid.backends.local_runner", str(root)],
                         start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(root / "runner.err", "ab"), close_fds=True)  # noqa: SIM115
        return engine_id

    def status(self, engine_id: str) -> ExecStatus:
        root = self._dir(engine_id)
        if not root.exists():
            return ExecStatus(EngineState.UNKNOWN)
        started, ended = _read_int(root / "start_ms"), _read_int(root / "end_ms")
        code = _read_int(root / "exit")
        if code is not None:
            stopped = _read_text(root / "stopped")
            if stopped:
                return ExecStatus(EngineState.CANCELLED, code, started, ended, f"stopped: {stopped}", lost=True)
            if (root / "cancelled").exists():
                return ExecStatus(EngineState.CANCELLED, code, started, ended, "stopped on request")
            state = EngineState.SUCCEEDED if code == 0 else EngineState.FAILED
            return ExecStatus(state, code, started, ended, f"exit code {code}")
        pid = _read_int(root / "pid")
        if pid is None:
            return ExecStatus(EngineState.QUEUED)
        if _pid_alive(pid, root):
            return ExecStatus(EngineState.RUNNING, started_ms=started)
        return ExecStatus(EngineState.FAILED, None, started, ended, "the runner process vanished")

    def cancel(self, engine_id: str) -> None:
        root = self._dir(engine_id)
        pid = _read_int(root / "pid")
        if pid is not None and _pid_alive(pid, root):
            os.kill(pid, signal.SIGTERM)
        elif root.exists() and not (root / "started").exists():
            # Not launched yet: claim the attempt so no runner can start it later.
            (root / "started").mkdir(exist_ok=True)
            (root / "cancelled").touch()
            (root / "exit").write_text("143")

    def logs(self, engine_id: str, offset: int, rank: int | None = None) -> LogRead:
        """The attempt's one part's output (a local request has one rank; another rank reads as empty)."""
        root = self._dir(engine_id)
        if rank is not None:
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError, IndexError):
                if int(json.loads((root / "run.json").read_text())["request"]["parts"][0]["rank"]) != rank:
                    return LogRead(data=b"", next_offset=offset)
        return read_log_file(root / "output.log", offset)

    @property
    def lease_file(self) -> Path:
        """`<term_ms> <kill_ms>`: when this agent's runners stop unless the agent renews it (local_runner.py)."""
        return self.work_dir / "lease"

    def renew_lease(self, term_ms: int, kill_ms: int) -> None:
        tmp = self.work_dir / "lease.tmp"
        tmp.write_text(f"{term_ms} {kill_ms}\n")
        tmp.replace(self.lease_file)

    def usage(self, engine_id: str) -> list[UsageSlice]:
        root = self._dir(engine_id)
        start = _read_int(root / "start_ms")
        if start is None:
            return []
        end = _read_int(root / "end_ms") or time.time_ns() // 1_000_000
        request = json.loads((root / "run.json").read_text())["request"]
        part = request["parts"][0]
        slices = [UsageSlice(-1, None, 0, int(request["cpu_milli"]), start, end)]
        for index, model in zip(part["device_indices"], part["device_models"], strict=True):
            slices.append(UsageSlice(int(index), model or None, int(request["milli_per_device"]), 0, start, end))
        return slices

    def active_ids(self) -> list[str]:
        return [p.name for p in sorted(self.work_dir.glob("job-*"))
                if p.is_dir() and self.status(p.name).state in (EngineState.RUNNING, EngineState.QUEUED)]

    def purge(self, engine_id: str) -> None:
        shutil.rmtree(self._dir(engine_id), ignore_errors=True)


def create(**options: Any) -> LocalBackend:
    return LocalBackend(**options)
