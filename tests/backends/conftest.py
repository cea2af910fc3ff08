"""The backend contract suite runs against every executor that can start on this machine.

Today that is `local`. Each engine adds a fixture factory to ENGINES; the tests stay unchanged.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from computegrid.backends import Backend, EngineState, ExecStatus, InventoryDevice, get_backend


def make_local(tmp: Path) -> Backend:
    return get_backend("local", work_dir=tmp / "work",
                       declared=[InventoryDevice(0, "A100-80G", None, "declared") for _ in range(2)])


ENGINES: dict[str, Callable[[Path], Backend]] = {"local": make_local}


@pytest.fixture(params=sorted(ENGINES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    engine = ENGINES[request.param](tmp_path)
    yield engine
    subprocess.run(["pkill", "-9", "-f", str(tmp_path)], check=False)


def wait_for(backend: Backend, engine_id: str, states: set[EngineState], timeout: float = 30) -> ExecStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = backend.status(engine_id)
        if status.state in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{engine_id} did not reach {states}; last {backend.status(engine_id)}")
