"""A columnar snapshot of the pool: nodes and devices as numpy arrays.

Filtering and scoring are vector operations over these arrays; allocating or
releasing a placement touches only the rows it names, so updates are cheap.
Capacity is integer milli-devices, milli-CPUs and MiB.

Besides the per-device free capacity the snapshot keeps, per node and updated
incrementally on every allocate/release:
- `free_whole`: devices that are entirely free (count),
- `free_milli`: free milli-devices summed over the node's devices,
- `max_free`: the largest free share on one device (milli-devices),
- `version`: a counter that changes whenever the node's free capacity changes,
  so policies can cache per-node scores and recompute only the nodes that moved,
- `shape_count`: running allocations by shape (see `shape_of`), for policies
  that group alike jobs.
The rows whose free capacity changed are also appended, in order, to a change log
(`changes`, see `changes_since`), so a policy can bring a per-shape candidate set up to
date by revisiting only the nodes that moved instead of every node.
Device models are integer codes (`dev_model_code`, `model_code`) so filters
compare integers, not strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from computegrid.core.capabilities import ANY, EngineCapabilities
from computegrid.core.units import MILLI_PER_DEVICE

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

#: Allocation shapes counted per node: 0 = no device, 1 = a share of one device,
#: 1 + k = k whole devices (k = 1..8), 10 = more than 8 whole devices.
SHAPES = 11


def shape_of(device_count: int, milli_per_device: int) -> int:
    """The shape index of an allocation part (see `SHAPES`); milli_per_device in milli-devices."""
    if device_count == 0 or milli_per_device == 0:
        return 0
    if milli_per_device < MILLI_PER_DEVICE:
        return 1
    return 1 + device_count if device_count <= 8 else SHAPES - 1


@dataclass(frozen=True)
class NodeInfo:
    node_id: int
    site: str
    region: str
    tier: str
    up: bool
    cpu_milli: int
    memory_mb: int
    price_fen_per_du: int = -1  # the node's current price per du; -1: not priced (passes any price limit)
    capabilities: EngineCapabilities = ANY  # what its site's engine can run (ANY: not declared)


@dataclass(frozen=True)
class DeviceInfo:
    node_id: int
    index: int
    model: str
    memory_gb: float


@dataclass(frozen=True)
class DeviceColumns:
    """Devices as columns (the same fields as `DeviceInfo`, one list each): a large pool is built from them
    without one object per device."""

    node_id: Sequence[int]
    index: Sequence[int]
    model: Sequence[str]
    memory_gb: Sequence[float]

    @classmethod
    def of(cls, devices: Sequence[DeviceInfo]) -> DeviceColumns:
        return cls([d.node_id for d in devices], [d.index for d in devices], [d.model for d in devices],
                   [d.memory_gb for d in devices])


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

    def __init__(self, nodes: Sequence[NodeInfo], devices: Sequence[DeviceInfo] | DeviceColumns):
        n = len(nodes)
        self.node_ids: IntArray = np.array([nd.node_id for nd in nodes], dtype=np.int64)
        self.node_row = {nd.node_id: i for i, nd in enumerate(nodes)}
        self.site = np.array([nd.site for nd in nodes], dtype=object)
        self.region = np.array([nd.region for nd in nodes], dtype=object)
        self.tier = np.array([nd.tier for nd in nodes], dtype=object)
        self.up: BoolArray = np.array([nd.up for nd in nodes], dtype=np.bool_)
        self.cpu_total: IntArray = np.array([nd.cpu_milli for nd in nodes], dtype=np.int64)
        self.mem_total: IntArray = np.array([nd.memory_mb for nd in nodes], dtype=np.int64)
        self.cpu_free = self.cpu_total.copy()
        self.mem_free = self.mem_total.copy()
        # Prices move with time bands and markets: the owner updates them with `set_prices`.
        self.price: IntArray = np.array([nd.price_fen_per_du for nd in nodes], dtype=np.int64)
        # Devices of nodes in the pool, by node row then index (a stable sort: ties keep their given order).
        cols = devices if isinstance(devices, DeviceColumns) else DeviceColumns.of(devices)
        row_of = np.fromiter((self.node_row.get(i, -1) for i in cols.node_id), dtype=np.int64,
                             count=len(cols.node_id))
        given_index = np.asarray(cols.index, dtype=np.int64).reshape(-1)
        kept = np.flatnonzero(row_of >= 0)
        order = kept[np.lexsort((given_index[kept], row_of[kept]))]
        self.dev_node: IntArray = row_of[order]
        self.dev_index: IntArray = given_index[order]
        models: list[str] = [cols.model[k] for k in order.tolist()]
        self.dev_model = np.array(models, dtype=object)
        self.model_code: dict[str, int] = {m: i for i, m in enumerate(sorted(set(models)))}
        self.dev_model_code: IntArray = np.fromiter((self.model_code[m] for m in models), dtype=np.int64,
                                                    count=len(models))
        self.dev_mem_gb = np.asarray(cols.memory_gb, dtype=np.float64).reshape(-1)[order]
        self.dev_free: IntArray = np.full(len(models), MILLI_PER_DEVICE, dtype=np.int64)
        # What each node's engine takes (see core.capabilities); a device of a model it cannot be asked for
        # is never eligible.
        self.takes_shares: BoolArray = np.array([nd.capabilities.shares for nd in nodes], dtype=np.bool_)
        self.takes_images: BoolArray = np.array([nd.capabilities.images for nd in nodes], dtype=np.bool_)
        self.takes_gangs: BoolArray = np.array([nd.capabilities.gangs for nd in nodes], dtype=np.bool_)
        models_of = {nd.node_id: nd.capabilities.models for nd in nodes if nd.capabilities.models is not None}
        self.dev_engine_ok: BoolArray = np.array(
            [node_id not in models_of or model in models_of[node_id]
             for node_id, model in zip(self.node_ids[self.dev_node].tolist(), models, strict=True)],
            dtype=np.bool_) if models_of else np.ones(len(models), dtype=np.bool_)
        self.dev_row = {(node_id, i): k for k, (node_id, i) in
                        enumerate(zip(self.node_ids[self.dev_node].tolist(), self.dev_index.tolist(), strict=True))}
        # Devices of a node are contiguous rows dev_start[r] .. dev_start[r] + dev_count[r].
        self.dev_count: IntArray = np.bincount(self.dev_node, minlength=n).astype(np.int64)
        self.dev_start: IntArray = np.concatenate(([0], np.cumsum(self.dev_count)[:-1])).astype(np.int64) \
            if n else np.zeros(0, dtype=np.int64)
        # At least one slot: a CPU-only choice is scored in slot 0 even in a pool without devices.
        width = max(1, int(self.dev_count.max())) if n and len(models) else 1
        slot = np.arange(width, dtype=np.int64)
        #: device rows per node, padded with -1: shape (nodes, max devices per node)
        self.node_dev_rows: IntArray = np.where(slot[None, :] < self.dev_count[:, None],
                                                self.dev_start[:, None] + slot[None, :], -1).astype(np.int64)
        self.free_whole: IntArray = self.dev_count.copy()
        self.free_milli: IntArray = self.dev_count * MILLI_PER_DEVICE
        self.max_free: IntArray = np.where(self.dev_count > 0, MILLI_PER_DEVICE, 0).astype(np.int64)
        self.version: IntArray = np.zeros(n, dtype=np.int64)
        self.shape_count: IntArray = np.zeros((n, SHAPES), dtype=np.int64)
        #: node rows whose free capacity changed, oldest first; entry i is change number changes_base + i
        self.changes: list[int] = []
        self.changes_base = 0
        self._changes_limit = max(4 * n, 65_536)
        #: caches of things that depend only on static columns (policies and filters key them)
        self.static_cache: dict[Any, Any] = {}

    def set_prices(self, prices: Mapping[int, int]) -> None:
        """Set nodes' current price per du (fen) by node id; -1 marks a node as not priced."""
        for node_id, fen in prices.items():
            row = self.node_row.get(node_id)
            if row is not None:
                self.price[row] = fen

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
        parts: list[tuple[NodeAllocation, int, list[int]]] = []
        node_row, dev_row = self.node_row, self.dev_row
        for alloc in allocations:
            row = node_row.get(alloc.node_id)
            if row is None:
                raise ValueError(f"node {alloc.node_id} is not in the pool")
            if len(set(alloc.device_indices)) != len(alloc.device_indices):
                raise ValueError(f"device indices repeat in {alloc}")
            found = [dev_row.get((alloc.node_id, i)) for i in alloc.device_indices]
            if None in found:
                raise ValueError(f"node {alloc.node_id} has no device among {alloc.device_indices}")
            if min(alloc.cpu_milli, alloc.memory_mb, alloc.milli_per_device) < 0:
                raise ValueError(f"negative amount in {alloc}")
            rows = [r for r in found if r is not None]
            cpu[row] = cpu.get(row, 0) + alloc.cpu_milli
            mem[row] = mem.get(row, 0) + alloc.memory_mb
            for r in rows:
                dev[r] = dev.get(r, 0) + alloc.milli_per_device
            parts.append((alloc, row, rows))
        cpu_free, mem_free, dev_free = self.cpu_free, self.mem_free, self.dev_free
        short = sorted({r for r, need in cpu.items() if cpu_free[r] < need}
                       | {r for r, need in mem.items() if mem_free[r] < need}
                       | {int(self.dev_node[r]) for r, need in dev.items() if dev_free[r] < need})
        if short:
            names = ", ".join(str(int(self.node_ids[r])) for r in short)
            raise ValueError(f"node {names} lacks the capacity asked for by {list(allocations)}")
        for alloc, row, rows in parts:
            self._apply_rows(alloc, -1, row, rows)

    def release(self, allocations: Sequence[NodeAllocation]) -> None:
        """Give capacity back (never above the node's total)."""
        for alloc in allocations:
            self._apply(alloc, +1)

    def _apply(self, alloc: NodeAllocation, sign: int) -> None:
        self._apply_rows(alloc, sign, self.node_row[alloc.node_id], self._device_rows(alloc))

    def _apply_rows(self, alloc: NodeAllocation, sign: int, row: int, device_rows: list[int]) -> None:
        """`_apply` with the node's row and the allocation's device rows already looked up."""
        self.cpu_free[row] = min(self.cpu_total[row], self.cpu_free[row] + sign * alloc.cpu_milli)
        self.mem_free[row] = min(self.mem_total[row], self.mem_free[row] + sign * alloc.memory_mb)
        dev_free = self.dev_free
        for r in device_rows:
            dev_free[r] = min(MILLI_PER_DEVICE, dev_free[r] + sign * alloc.milli_per_device)
        shape = shape_of(len(alloc.device_indices), alloc.milli_per_device)
        # sign is the change of free capacity, so an allocation (-1) adds one running allocation
        self.shape_count[row, shape] = max(0, int(self.shape_count[row, shape]) - sign)
        self._refresh_node(row)

    def _refresh_node(self, row: int) -> None:
        start = int(self.dev_start[row])
        free = self.dev_free[start:start + int(self.dev_count[row])].tolist()
        if free:
            self.free_whole[row] = free.count(MILLI_PER_DEVICE)
            self.free_milli[row] = sum(free)
            self.max_free[row] = max(free)
        self.version[row] += 1
        self.changes.append(row)
        if len(self.changes) > self._changes_limit:
            drop = len(self.changes) // 2
            del self.changes[:drop]
            self.changes_base += drop

    @property
    def change_count(self) -> int:
        """How many node changes were ever logged (a position in the change log)."""
        return self.changes_base + len(self.changes)

    def changes_since(self, position: int) -> list[int] | None:
        """Rows changed after log `position` (may repeat), or None when the log no longer reaches back there."""
        if position < self.changes_base:
            return None
        return self.changes[position - self.changes_base:]

    def try_allocate(self, allocations: Sequence[NodeAllocation]) -> bool:
        """Allocate if every part is still there (for stale records of running jobs); else change nothing."""
        try:
            self.allocate(allocations)
        except ValueError:
            return False
        return True

    def device_free_matrix(self, rows: IntArray) -> IntArray:
        """Free milli-devices of the given nodes' devices, shape (len(rows), max devices); absent slots are 0."""
        idx = self.node_dev_rows[rows]
        return np.where(idx >= 0, self.dev_free[np.maximum(idx, 0)], 0) if len(self.dev_free) \
            else np.zeros((len(rows), idx.shape[1] if idx.ndim == 2 else 0), dtype=np.int64)

    def node_devices(self, row: int) -> tuple[int, int]:
        """The device rows of node `row` as a half-open range (start, stop)."""
        start = int(self.dev_start[row])
        return start, start + int(self.dev_count[row])
