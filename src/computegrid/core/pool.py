"""A columnar snapshot of the pool: nodes and devices as numpy arrays.

Filtering and scoring are vector operations over these arrays; allocating or
releasing a placement touches only the rows it names, so updates are cheap.
Capacity is integer milli-devices, milli-CPUs and MiB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from computegrid.core.units import MILLI_PER_DEVICE

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    site: str
    region: str
    tier: str
    up: bool
    cpu_milli: int
    memory_mb: int


@dataclass(frozen=True)
class DeviceInfo:
    node_id: int
    index: int
    model: str
    memory_gb: float


@dataclass(frozen=True)
class NodeAllocation:
    """What one node gives a job: device indices (within the node), milli per device, CPU, memory."""

    node_id: int
    device_indices: tuple[int, ...]
    milli_per_device: int
    cpu_milli: int
    memory_mb: int


class PoolSnapshot:
    """Nodes and devices of the pool with their free capacity."""

    def __init__(self, nodes: Sequence[NodeInfo], devices: Sequence[DeviceInfo]):
        self.node_ids: IntArray = np.array([n.node_id for n in nodes], dtype=np.int64)
        self.node_row = {n.node_id: i for i, n in enumerate(nodes)}
        self.site = np.array([n.site for n in nodes], dtype=object)
        self.region = np.array([n.region for n in nodes], dtype=object)
        self.tier = np.array([n.tier for n in nodes], dtype=object)
        self.up: BoolArray = np.array([n.up for n in nodes], dtype=np.bool_)
        self.cpu_total: IntArray = np.array([n.cpu_milli for n in nodes], dtype=np.int64)
        self.mem_total: IntArray = np.array([n.memory_mb for n in nodes], dtype=np.int64)
        self.cpu_free = self.cpu_total.copy()
        self.mem_free = self.mem_total.copy()
        known = [d for d in devices if d.node_id in self.node_row]
        known.sort(key=lambda d: (self.node_row[d.node_id], d.index))
        self.dev_node: IntArray = np.array([self.node_row[d.node_id] for d in known], dtype=np.int64)
        self.dev_index: IntArray = np.array([d.index for d in known], dtype=np.int64)
        self.dev_model = np.array([d.model for d in known], dtype=object)
        self.dev_mem_gb = np.array([d.memory_gb for d in known], dtype=np.float64)
        self.dev_free: IntArray = np.full(len(known), MILLI_PER_DEVICE, dtype=np.int64)
        self.dev_row = {(int(self.node_ids[r]), int(i)): k
                        for k, (r, i) in enumerate(zip(self.dev_node, self.dev_index, strict=True))}

    @property
    def node_count(self) -> int:
        return len(self.node_ids)

    def _device_rows(self, alloc: NodeAllocation) -> list[int]:
        return [self.dev_row[(alloc.node_id, i)] for i in alloc.device_indices]

    def allocate(self, allocations: Sequence[NodeAllocation]) -> None:
        """Take capacity; raises ValueError (and changes nothing) if the parts together do not fit.

        Parts are summed before the check, so two parts on one node or device cannot over-allocate it.
        """
        cpu: dict[int, int] = {}
        mem: dict[int, int] = {}
        dev: dict[int, int] = {}
        for alloc in allocations:
            if alloc.node_id not in self.node_row:
                raise ValueError(f"node {alloc.node_id} is not in the pool")
            if len(set(alloc.device_indices)) != len(alloc.device_indices):
                raise ValueError(f"device indices repeat in {alloc}")
            if any((alloc.node_id, i) not in self.dev_row for i in alloc.device_indices):
                raise ValueError(f"node {alloc.node_id} has no device among {alloc.device_indices}")
            row = self.node_row[alloc.node_id]
            cpu[row] = cpu.get(row, 0) + alloc.cpu_milli
            mem[row] = mem.get(row, 0) + alloc.memory_mb
            for r in self._device_rows(alloc):
                dev[r] = dev.get(r, 0) + alloc.milli_per_device
        short = sorted({r for r, need in cpu.items() if self.cpu_free[r] < need}
                       | {r for r, need in mem.items() if self.mem_free[r] < need}
                       | {int(self.dev_node[r]) for r, need in dev.items() if self.dev_free[r] < need})
        if short:
            names = ", ".join(str(int(self.node_ids[r])) for r in short)
            raise ValueError(f"node {names} lacks the capacity asked for by {list(allocations)}")
        for alloc in allocations:
            self._apply(alloc, -1)

    def release(self, allocations: Sequence[NodeAllocation]) -> None:
        """Give capacity back (never above the node's total)."""
        for alloc in allocations:
            self._apply(alloc, +1)

    def _apply(self, alloc: NodeAllocation, sign: int) -> None:
        row = self.node_row[alloc.node_id]
        self.cpu_free[row] = min(self.cpu_total[row], self.cpu_free[row] + sign * alloc.cpu_milli)
        self.mem_free[row] = min(self.mem_total[row], self.mem_free[row] + sign * alloc.memory_mb)
        for r in self._device_rows(alloc):
            self.dev_free[r] = min(MILLI_PER_DEVICE, self.dev_free[r] + sign * alloc.milli_per_device)

    def try_allocate(self, allocations: Sequence[NodeAllocation]) -> bool:
        """Allocate if every part is still there (for stale records of running jobs); else change nothing."""
        try:
            self.allocate(allocations)
        except ValueError:
            return False
        return True
