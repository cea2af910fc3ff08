"""The backend contract shared by every engine."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


@dataclass(frozen=True)
class InventoryDevice:
    index: int
    model: str
    memory_gb: float | None = None
    source: str = "detected"  # detected | declared


@dataclass(frozen=True)
class Inventory:
    hostname: str
    cpu_milli: int
    memory_mb: int
    devices: tuple[InventoryDevice, ...] = ()


@dataclass(frozen=True)
class RunRequest:
    """One node's part of a job attempt, as the agent hands it to the engine."""

    job_id: int
    attempt: int
    rank: int
    nodes: int
    run: str | None
    image: str | None
    workdir: str | None
    envs: dict[str, str]
    device_indices: tuple[int, ...]
    device_models: tuple[str, ...]
    milli_per_device: int
    cpu_milli: int
    memory_mb: int

    @classmethod
    def from_assignment(cls, a: dict[str, Any], models_by_index: dict[int, str]) -> RunRequest:
        spec = a["spec"]
        indices = tuple(int(i) for i in a["device_indices"])
        return cls(job_id=int(a["job_id"]), attempt=int(a["attempt"]), rank=int(a["rank"]),
                   nodes=int(a["nodes"]), run=spec.get("run"), image=spec.get("image"),
                   workdir=spec.get("workdir"), envs=dict(spec.get("envs") or {}), device_indices=indices,
                   device_models=tuple(models_by_index.get(i, "") for i in indices),
                   milli_per_device=int(a["milli_per_device"]), cpu_milli=int(a["cpu_milli"]),
                   memory_mb=int(a["memory_mb"]))


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


@dataclass(frozen=True)
class UsageSlice:
    """A device share (device_index >= 0) or CPU share (device_index = -1) held over [start_ms, end_ms]."""

    device_index: int
    model: str | None
    share_milli: int
    cpu_milli: int
    start_ms: int
    end_ms: int


@dataclass
class LogRead:
    data: bytes
    next_offset: int
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def inventory(self) -> Inventory: ...
    def engine_id(self, job_id: int, attempt: int) -> str: ...
    def submit(self, run: RunRequest) -> str: ...
    def status(self, engine_id: str) -> ExecStatus: ...
    def cancel(self, engine_id: str) -> None: ...
    def logs(self, engine_id: str, offset: int) -> LogRead: ...
    def usage(self, engine_id: str) -> list[UsageSlice]: ...
    def active_ids(self) -> list[str]: ...
    def telemetry(self) -> list[dict[str, Any]]: ...


_MODULES = {"local": "computegrid.backends.local"}


def known_backends() -> tuple[str, ...]:
    return tuple(_MODULES)


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate the named backend, importing its module (and engine SDK) only now."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_MODULES)}")
    module = importlib.import_module(_MODULES[name])
    backend: Backend = module.create(**options)
    return backend
