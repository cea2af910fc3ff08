"""Shared builders for the core tests (pools, catalogs, Hypothesis settings)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import HealthCheck, settings

from computegrid.core.catalog import Catalog, parse_catalog
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot

# Deterministic and quick: the same examples every run, no example database on disk.
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

CATALOG_HEADER = ("model,aliases,vendor,family,memory_gb,memory_bandwidth_gbs,fp16_tflops,fp32_tflops,"
                  "int8_tops,tdp_w,interconnect,software,source")


def catalog_from_rows(*rows: str) -> Catalog:
    return parse_catalog("\n".join((CATALOG_HEADER, *rows)) + "\n")


MEM_GB = {"T4": 16.0, "A100-40G": 40.0, "A100-80G": 80.0, "H100-80G": 80.0, "V100-32G": 32.0}


def node(node_id: int, *, site: str = "s1", region: str = "jingjinji", tier: str = "hub", up: bool = True,
         cpu_milli: int = 16_000, memory_mb: int = 65_536) -> NodeInfo:
    return NodeInfo(node_id=node_id, site=site, region=region, tier=tier, up=up, cpu_milli=cpu_milli,
                    memory_mb=memory_mb)


def devices(node_id: int, model: str, count: int, memory_gb: float | None = None) -> list[DeviceInfo]:
    mem = MEM_GB.get(model, 16.0) if memory_gb is None else memory_gb
    return [DeviceInfo(node_id=node_id, index=i, model=model, memory_gb=mem) for i in range(count)]


def make_pool(nodes: Sequence[NodeInfo], devs: Sequence[DeviceInfo]) -> PoolSnapshot:
    return PoolSnapshot(nodes, devs)


def free_state(pool: PoolSnapshot) -> tuple[list[int], list[int], list[int]]:
    """A copy of everything that allocate/release may change."""
    return (np.asarray(pool.dev_free).tolist(), np.asarray(pool.cpu_free).tolist(),
            np.asarray(pool.mem_free).tolist())
