"""Session fixture: a real two-node Ray cluster on this machine, started by scripts/ray-up.sh.

The head and a second raylet (`cg_node_head`, `cg_node_worker1`) each offer 2 CPUs and 2 fake A100s as the
Ray custom resource GPU_A100; the suite drives them through the Jobs API on 127.0.0.1:8265 and stops the
cluster with scripts/ray-down.sh at the end of the session (COMPUTEGRID_RAY_KEEP=1 leaves it up for the next
run; ray-up.sh is idempotent). If Ray cannot start, the Ray tests fail (they are never skipped silently):
set COMPUTEGRID_SKIP_ENGINES=ray to leave Ray out on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ADDRESS = os.environ.get("COMPUTEGRID_RAY_ADDRESS", "http://127.0.0.1:8265")
RESOURCES = ": ray resources "


def ray_device_evidence(text: str, count: int) -> bool:
    """Ray granted the job's rank `count` GPU_A100s (the launcher prints what Ray assigned to the rank's actor,
    read back from Ray), and the command saw as many distinct devices in CUDA_VISIBLE_DEVICES."""
    from tests.backends.conftest import _cuda_visible

    granted = [json.loads(line.split(RESOURCES, 1)[1]) for line in text.splitlines()
               if line.startswith("computegrid: rank ") and RESOURCES in line]
    return bool(granted) and all(g.get("GPU_A100") == count for g in granted) and _cuda_visible(text, count)


def make_ray(tmp: Path) -> Any:
    from computegrid.backends import get_backend

    return get_backend("ray", work_dir=tmp / "work", address=ADDRESS, resource_models={"GPU_A100": "A100-80G"})


def _script(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "scripts" / name)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture(scope="session")
def ray_engine() -> Iterator[object]:
    from tests.backends.conftest import Engine

    started = time.monotonic()
    up = _script("ray-up.sh")
    if up.returncode != 0:
        # On a loaded 2-core machine Ray's GCS sometimes times out while starting ("the current node timed
        # out during startup"); one clean second start is allowed, and both outputs are shown if it fails too.
        first = up
        _script("ray-down.sh")
        up = _script("ray-up.sh")
        if up.returncode != 0:
            _script("ray-down.sh")
            pytest.fail(f"scripts/ray-up.sh failed twice ({first.returncode}, {up.returncode}):\n"
                        f"{first.stdout}\n{first.stderr}\n---\n{up.stdout}\n{up.stderr}", pytrace=False)
    setup_s = time.monotonic() - started
    try:
        yield Engine("ray", make_ray, "A100-80G", ray_device_evidence, gang=True, setup_s=setup_s)
    finally:
        if os.environ.get("COMPUTEGRID_RAY_KEEP") != "1":
            _script("ray-down.sh")
