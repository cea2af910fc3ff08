"""The backend contract shared by every engine."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from computegrid.core.capabilities import EngineCapabilities


@dataclass(frozen=True)
class InventoryDevice:
    index: int
    model: str
    memory_gb: float | None = None
    source: str = "detected"  # detected | declared | engine (reported by the site's cluster manager)
    in_use: bool = False  # held by work the engine runs (ours or anyone's), when the engine says so


@dataclass(frozen=True)
class Inventory:
    """One node of a site, as its engine sees it."""

    hostname: str
    cpu_milli: int
    memory_mb: int
    devices: tuple[InventoryDevice, ...] = ()
    cpu_milli_free: int | None = None  # None when the engine does not say
    state: str = "up"  # up | drained | down, in the engine's words mapped to these three


@dataclass(frozen=True)
class NodePart:
    """What one rank of a job holds on one node of this site."""

    rank: int
    hostname: str
    device_indices: tuple[int, ...] = ()
    device_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRequest:
    """A job attempt's share of this site, as the agent hands it to the engine: one part per node.

    A gang that spans several nodes of one site arrives as one request with several parts, so an
    engine that runs gangs natively (Slurm `--nodes`, a Ray placement group) can start it whole.
    """

    job_id: int
    attempt: int
    nodes: int  # ranks in the whole job (parts holds this site's ranks)
    run: str | None
    image: str | None
    workdir: str | None
    envs: dict[str, str]
    milli_per_device: int
    cpu_milli: int  # per node
    memory_mb: int  # per node
    parts: tuple[NodePart, ...]
    time_limit_s: int | None = None
    name: str = ""

    @property
    def devices_per_node(self) -> int:
        return len(self.parts[0].device_indices) if self.parts else 0

    @property
    def device_model(self) -> str | None:
        """The one accelerator model the parts hold (placement never mixes models in a job)."""
        models = {m for p in self.parts for m in p.device_models if m}
        return next(iter(models)) if len(models) == 1 else None

    @classmethod
    def from_assignments(cls, assignments: list[dict[str, Any]],
                         models: dict[tuple[str, int], str], hostnames: dict[int, str]) -> RunRequest:
        """Build from the control plane's per-node assignments of one attempt (see services/agents.py).

        `models` maps (hostname, device index) to a catalog model; `hostnames` maps node id to hostname.
        """
        first = min(assignments, key=lambda a: int(a["rank"]))
        spec = first["spec"]
        parts = []
        for a in sorted(assignments, key=lambda a: int(a["rank"])):
            host = hostnames[int(a["node_id"])]
            indices = tuple(int(i) for i in a["device_indices"])
            parts.append(NodePart(rank=int(a["rank"]), hostname=host, device_indices=indices,
                                  device_models=tuple(models.get((host, i), "") for i in indices)))
        limit = spec.get("time_limit")  # seconds, in the stored (canonical) spec
        return cls(job_id=int(first["job_id"]), attempt=int(first["attempt"]), nodes=int(first["nodes"]),
                   run=spec.get("run"), image=spec.get("image"), workdir=spec.get("workdir"),
                   envs=dict(spec.get("envs") or {}), milli_per_device=int(first["milli_per_device"]),
                   cpu_milli=int(first["cpu_milli"]), memory_mb=int(first["memory_mb"]), parts=tuple(parts),
                   time_limit_s=int(limit) if limit is not None else None, name=str(spec.get("name", "")))


class SubmitRefused(Exception):
    """The engine will never run this request as asked (it names why); the attempt fails with that reason."""


class EngineState(StrEnum):
    UNKNOWN = "unknown"  # the engine never saw this id
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({EngineState.SUCCEEDED, EngineState.FAILED, EngineState.CANCELLED})


@dataclass(frozen=True)
class ExecStatus:
    state: EngineState
    exit_code: int | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    reason: str = ""
    lost: bool = False  # the engine stopped it for a reason not the job's (its agent's lease ran out)


@dataclass(frozen=True)
class UsageSlice:
    """A device share (device_index >= 0) or CPU share (device_index = -1) held over [start_ms, end_ms]
    on node `hostname` ("" = the request's first part)."""

    device_index: int
    model: str | None
    share_milli: int
    cpu_milli: int
    start_ms: int
    end_ms: int
    hostname: str = ""


@dataclass
class LogRead:
    data: bytes
    next_offset: int
    extra: dict[str, Any] = field(default_factory=dict)


MAX_LOG_READ = 64 * 1024  # bytes per `logs` call; the agent calls again until a read comes back empty


def read_log_file(path: str | Path, offset: int) -> LogRead:
    """Up to MAX_LOG_READ bytes of a log file from byte `offset`; a file not written yet reads as empty."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(MAX_LOG_READ)
    except FileNotFoundError:
        data = b""
    return LogRead(data=data, next_offset=offset + len(data))


class Backend(Protocol):
    """Five operations (inventory, submit, status, cancel, logs + usage) and three helpers for the agent.

    `submit` is idempotent per (job, attempt): the agent may call it again after a restart, and the
    engine must not start the attempt twice (engine_id names the attempt; active_ids lists what runs).
    """

    name: str
    rank_logs: bool  # `logs` can read each rank of a several-node request on its own

    @property
    def capabilities(self) -> EngineCapabilities:
        """What the engine can run (shares, images, gangs, models); placement sends it nothing else, so
        `submit` raising SubmitRefused for a request these allow is a bug in the declaration."""
        ...


    def inventory(self) -> list[Inventory]: ...
    def engine_id(self, job_id: int, attempt: int) -> str: ...
    def submit(self, run: RunRequest) -> str: ...
    def status(self, engine_id: str) -> ExecStatus: ...
    def cancel(self, engine_id: str) -> None: ...
    def logs(self, engine_id: str, offset: int, rank: int | None = None) -> LogRead:
        """Output from byte `offset`: of rank `rank` of the request, or (None) of its first part. An engine
        that cannot tell its ranks' output apart (`rank_logs` False) gives all of it for None."""
        ...

    def usage(self, engine_id: str) -> list[UsageSlice]: ...
    def active_ids(self) -> list[str]: ...
    def telemetry(self) -> list[dict[str, Any]]: ...
    def renew_lease(self, term_ms: int, kill_ms: int) -> None:
        """The agent has just heard from the control plane. An engine whose attempts would outlive a silent
        agent unwatched stops them from `term_ms` (SIGTERM) to `kill_ms` (SIGKILL), epoch ms, unless the lease
        is renewed first, and reports them `lost`: local (its runner) and Slurm (each job's watchdog,
        slurm_lease.py). Ray and Kubernetes do nothing yet."""
        ...


_MODULES = {
    "local": "computegrid.backends.local",
    "slurm": "computegrid.backends.slurm",
    "ray": "computegrid.backends.ray",
    "kubernetes": "computegrid.backends.kubernetes",
}


def known_backends() -> tuple[str, ...]:
    return tuple(_MODULES)


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate the named backend, importing its module (and engine SDK) only now."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_MODULES)}")
    module = importlib.import_module(_MODULES[name])
    backend: Backend = module.create(**options)
    return backend
