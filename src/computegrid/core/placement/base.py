"""The placement contract: a request, a pool snapshot, and a Placement or a PlacementFailure.

Every policy shares the same feasibility filters (`feasible_nodes`), so a failure
always says which constraint excluded how much capacity, whatever the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from computegrid.core.jobs import JobSpec
from computegrid.core.pool import BoolArray, IntArray, NodeAllocation, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE


@dataclass(frozen=True)
class PlacementRequest:
    """What a job needs, per node, for `nodes` nodes (a gang: all or nothing)."""

    models: frozenset[str] = frozenset()
    milli_per_node: int = 0
    min_device_memory_gb: float = 0.0
    cpu_milli: int = 1000
    memory_mb: int = 1024
    nodes: int = 1
    tier: str | None = None
    user_region: str | None = None
    max_rtt_ms: int | None = None

    @classmethod
    def from_spec(cls, spec: JobSpec) -> PlacementRequest:
        res = spec.resources
        return cls(
            models=res.models,
            milli_per_node=res.milli_per_node,
            min_device_memory_gb=float(res.min_device_memory_gb or 0),
            cpu_milli=res.cpu_milli,
            memory_mb=res.memory_mb,
            nodes=spec.nodes,
            tier=spec.routing.tier,
            user_region=spec.routing.user_region,
            max_rtt_ms=spec.routing.max_rtt_ms,
        )

    @property
    def devices_per_node(self) -> int:
        """Whole devices per node; a fractional request takes a share of one device."""
        return max(1, self.milli_per_node // MILLI_PER_DEVICE) if self.milli_per_node else 0

    @property
    def milli_per_device(self) -> int:
        return min(self.milli_per_node, MILLI_PER_DEVICE)


@dataclass(frozen=True)
class Placement:
    allocations: tuple[NodeAllocation, ...]
    policy: str


@dataclass(frozen=True)
class PlacementFailure:
    """Why nothing was placed: (constraint, nodes it excluded) in the order the filters ran."""

    exclusions: tuple[tuple[str, int], ...]
    detail: str = ""

    def __str__(self) -> str:
        parts = [f"{what} excluded {count} node{'s' if count != 1 else ''}" for what, count in self.exclusions
                 if count]
        if self.detail:
            parts.append(self.detail)
        return "; ".join(parts) if parts else "the pool has no nodes"


RttTable = Mapping[tuple[str, str], int]


def rtt_between(table: RttTable, a: str, b: str) -> int | None:
    """Round-trip time in ms between regions; 0 within a region; None when the table does not know."""
    if a == b:
        return 0
    return table.get((a, b), table.get((b, a)))


@dataclass
class Feasibility:
    node_mask: BoolArray
    fitting_devices: IntArray  # per node: devices that can take the per-device share now
    exclusions: list[tuple[str, int]] = field(default_factory=list)


def feasible_nodes(pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None = None,
                   *, empty: bool = False) -> Feasibility:
    """Nodes that could take one member of the gang, with counts of what each filter excluded.

    With `empty=True` the pool is judged as if nothing were allocated and every node
    were up: "could this job ever fit here?".
    """
    n = pool.node_count
    mask = np.ones(n, dtype=np.bool_)
    exclusions: list[tuple[str, int]] = []

    def apply(name: str, keep: BoolArray) -> None:
        nonlocal mask
        new = mask & keep
        exclusions.append((name, int(mask.sum() - new.sum())))
        mask = new

    if not empty:
        apply("node down", pool.up)
    if req.tier is not None:
        apply(f"tier (want {req.tier})", pool.tier == req.tier)
    if req.user_region is not None and req.max_rtt_ms is not None:
        table = rtt or {}
        ok = np.array([(r := rtt_between(table, req.user_region, str(reg))) is not None and r <= req.max_rtt_ms
                       for reg in pool.region], dtype=np.bool_)
        apply(f"latency (want <= {req.max_rtt_ms} ms from {req.user_region})", ok)
    cpu = pool.cpu_total if empty else pool.cpu_free
    mem = pool.mem_total if empty else pool.mem_free
    fitting = np.zeros(n, dtype=np.int64)
    if req.milli_per_node:
        kind_ok = pool.dev_mem_gb >= req.min_device_memory_gb
        if req.models:
            kind_ok &= np.isin(pool.dev_model, list(req.models))
        need = req.devices_per_node
        kinds = np.bincount(pool.dev_node[kind_ok], minlength=n)
        apply(f"accelerator ({need} x {'|'.join(sorted(req.models)) or 'any'})", kinds >= need)
        free = np.full(len(pool.dev_free), 1000, dtype=np.int64) if empty else pool.dev_free
        if req.milli_per_node >= MILLI_PER_DEVICE:
            now_ok = kind_ok & (free >= MILLI_PER_DEVICE)
        else:
            now_ok = kind_ok & (free >= req.milli_per_device)
        fitting = np.bincount(pool.dev_node[now_ok], minlength=n).astype(np.int64)
        apply("devices in use", fitting >= need)
    apply(f"cpu (want {req.cpu_milli / 1000:g})", cpu >= req.cpu_milli)
    apply(f"memory (want {req.memory_mb} MiB)", mem >= req.memory_mb)
    return Feasibility(node_mask=mask, fitting_devices=fitting, exclusions=exclusions)


def pick_devices(pool: PoolSnapshot, row: int, req: PlacementRequest,
                 order: Callable[[IntArray], IntArray] | None = None) -> tuple[int, ...]:
    """Device indices on node `row` for the request; lowest index first unless `order` ranks them."""
    if not req.milli_per_node:
        return ()
    rows = np.nonzero(pool.dev_node == row)[0]
    ok = pool.dev_mem_gb[rows] >= req.min_device_memory_gb
    if req.models:
        ok &= np.isin(pool.dev_model[rows], list(req.models))
    ok &= pool.dev_free[rows] >= (MILLI_PER_DEVICE if req.milli_per_node >= MILLI_PER_DEVICE
                                  else req.milli_per_device)
    candidates = rows[ok]
    if order is not None:
        candidates = order(candidates)
    return tuple(int(pool.dev_index[r]) for r in candidates[: req.devices_per_node])


def allocation_for(pool: PoolSnapshot, row: int, req: PlacementRequest,
                   order: Callable[[IntArray], IntArray] | None = None) -> NodeAllocation:
    return NodeAllocation(
        node_id=int(pool.node_ids[row]),
        device_indices=pick_devices(pool, row, req, order),
        milli_per_device=req.milli_per_device if req.milli_per_node else 0,
        cpu_milli=req.cpu_milli,
        memory_mb=req.memory_mb,
    )


class PlacementPolicy(Protocol):
    name: str

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        """Choose nodes and devices for the request without changing the pool."""
        ...


_POLICIES: dict[str, Callable[[], PlacementPolicy]] = {}


def register_policy(name: str, factory: Callable[[], PlacementPolicy]) -> None:
    _POLICIES[name] = factory


def get_policy(name: str) -> PlacementPolicy:
    """A new instance of the policy registered under `name`; raises KeyError listing the known ones."""
    if name not in _POLICIES:
        raise KeyError(f"unknown placement policy {name!r}; known: {', '.join(sorted(_POLICIES))}")
    return _POLICIES[name]()
