"""The backend contract suite runs unchanged against every engine that can start on this machine.

Each engine is described by an `Engine` (below). `local` needs nothing; Slurm and Ray are started by
session fixtures in `engine_slurm.py` and `engine_ray.py` (their scripts install what is missing), so a
clean machine runs the whole suite. Kubernetes cannot run here; its tests are in `test_kubernetes.py`.
Set COMPUTEGRID_SKIP_ENGINES=slurm,ray to leave engines out on purpose (the run then says so).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from computegrid.backends import Backend, EngineState, ExecStatus, InventoryDevice, get_backend
from tests.backends.engine_ray import ray_engine  # noqa: F401  (session fixture)
from tests.backends.engine_slurm import slurm_engine  # noqa: F401  (session fixture)


@dataclass(frozen=True)
class Engine:
    """How the contract suite drives one engine."""

    name: str
    make: Callable[[Path], Backend]  # a backend for one test; the Path is that test's scratch dir
    a100_model: str  # the catalog model the engine's (fake) A100s are inventoried as
    device_evidence: Callable[[str, int], bool]  # (job output of `echo visible=$CUDA_VISIBLE_DEVICES`, count)
    gang: bool = False  # can run one job across two nodes here
    setup_s: float = 0.0  # how long the engine took to start, for the record


def _cuda_visible(text: str, count: int) -> bool:
    for line in text.splitlines():
        if line.startswith("visible="):
            ids = [x for x in line.removeprefix("visible=").split(",") if x]
            return len(ids) == count and len(set(ids)) == count
    return False


def make_local(tmp: Path) -> Backend:
    return get_backend("local", work_dir=tmp / "work", hostname=socket.gethostname(),
                       declared=[InventoryDevice(0, "A100-80G", None, "declared") for _ in range(2)])


LOCAL = Engine("local", make_local, "A100-80G", _cuda_visible)
ENGINE_NAMES = ["local", "slurm", "ray"]


def skipped_engines() -> set[str]:
    return {e.strip() for e in os.environ.get("COMPUTEGRID_SKIP_ENGINES", "").split(",") if e.strip()}


@pytest.fixture(params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest) -> Engine:
    if request.param in skipped_engines():
        pytest.skip(f"{request.param} left out by COMPUTEGRID_SKIP_ENGINES")
    if request.param == "local":
        return LOCAL
    found: Engine = request.getfixturevalue(f"{request.param}_engine")
    return found


@pytest.fixture
def backend(engine: Engine, tmp_path: Path) -> Iterator[Backend]:
    made = engine.make(tmp_path)
    yield made
    for engine_id in made.active_ids():
        made.cancel(engine_id)
    if engine.name == "local":
        subprocess.run(["pkill", "-9", "-f", str(tmp_path)], check=False)


def wait_for(backend: Backend, engine_id: str, states: set[EngineState], timeout: float = 60) -> ExecStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.status(engine_id)
        if status.state in states:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{engine_id} did not reach {states}; last {backend.status(engine_id)}")
