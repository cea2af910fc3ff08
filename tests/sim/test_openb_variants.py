"""Derived gpuspec variants of an openb pod list."""

from __future__ import annotations

import pytest

from computegrid.sim.openb import GPUSPEC33_SPECS, OpenbPod, with_gpu_specs


def pods() -> list[OpenbPod]:
    gpu = [OpenbPod(f"p{i:03}", 4000, 1024, 1, 1000, "") for i in range(100)]
    cpu_only = [OpenbPod(f"c{i:03}", 4000, 1024, 0, 0, "") for i in range(20)]
    kept = [OpenbPod("k000", 4000, 1024, 1, 500, "A10")]
    return gpu + cpu_only + kept


def test_the_share_of_gpu_pods_gets_a_spec_and_nothing_else_changes():
    base = pods()
    out = with_gpu_specs(base, 33, seed=7)
    changed = [(a, b) for a, b in zip(base, out, strict=True) if a != b]
    assert len(changed) == 33  # 33% of the 100 GPU pods without a spec
    assert all(a.num_gpu and b.gpu_spec in GPUSPEC33_SPECS for a, b in changed)
    assert all((a.name, a.cpu_milli, a.num_gpu, a.gpu_milli) == (b.name, b.cpu_milli, b.num_gpu, b.gpu_milli)
               for a, b in changed)
    assert out[-1].gpu_spec == "A10"  # an existing spec is kept
    assert with_gpu_specs(base, 33, seed=7) == out  # seeded
    assert with_gpu_specs(base, 0) == base


def test_a_bad_percentage_is_refused():
    with pytest.raises(ValueError, match="pct must be 0..100"):
        with_gpu_specs(pods(), 120)
