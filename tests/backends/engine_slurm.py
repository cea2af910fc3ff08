"""Session fixture: a real one-node Slurm (Debian's slurm-wlm) started by scripts/slurm-up.sh.

The script installs what is missing (slurm-wlm, slurmdbd, munge, MariaDB) and is idempotent, so a
second session finds Slurm up and goes on at once. Slurm is left running at the end of the session;
`scripts/slurm-down.sh /tmp/computegrid-slurm` stops it. If Slurm cannot start, the fixture fails
with the script's output: it never skips on its own (COMPUTEGRID_SKIP_ENGINES=slurm does that).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.backends.conftest import Engine

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("COMPUTEGRID_SLURM_STATE", "/tmp/computegrid-slurm"))
SLURM_CONF = STATE_DIR / "slurm.conf"
PARTITION = "debug"
ACCOUNT = "computegrid"
GRES_MODELS = {"a100": "A100-80G"}


def start_slurm() -> float:
    """Run scripts/slurm-up.sh; return how long it took. Fails the test (with its output) if it cannot."""
    started = time.monotonic()
    try:
        done = subprocess.run(["bash", str(REPO / "scripts" / "slurm-up.sh"), str(STATE_DIR)], capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        output = [x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (exc.stdout, exc.stderr)]
        pytest.fail(f"scripts/slurm-up.sh did not finish in 900 s:\n{output[0]}\n{output[1]}")
    if done.returncode != 0:
        pytest.fail(f"scripts/slurm-up.sh failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - started


def slurm_options(work_dir: Path) -> dict[str, Any]:
    return {"work_dir": work_dir, "slurm_conf": str(SLURM_CONF), "partition": PARTITION, "account": ACCOUNT,
            "gres_models": dict(GRES_MODELS)}


@pytest.fixture(scope="session")
def slurm_engine() -> Engine:
    from computegrid.backends import Backend, get_backend
    from tests.backends.conftest import Engine, _cuda_visible

    setup_s = start_slurm()

    def make(tmp: Path) -> Backend:
        return get_backend("slurm", **slurm_options(tmp / "slurm-work"))

    return Engine("slurm", make, "A100-80G", _cuda_visible, gang=False, setup_s=setup_s)
