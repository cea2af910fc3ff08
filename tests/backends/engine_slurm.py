"""Session fixture: a real Slurm engine started by scripts/slurm-up.sh (being built)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def slurm_engine() -> object:
    pytest.skip("the Slurm backend is not built yet")
