"""fgd-balance, our default policy: FGD's fragmentation decrease less what a placement takes from the future.

FGD (`fgd.py`) looks one typical pod ahead: a node's free GPU counts as usable while the node
could host the next pod of each typical shape. On Alibaba's openb cluster under the paper's
protocol (benchmarks/fgd_paper.py) its failures are mostly GPU pods that find no node with both
GPU and CPU: the 8-GPU G2 nodes carry 12 cores per GPU, the 2-GPU T4 nodes 52, the pods ask
about 14, and under FGD G2 ends with 8.8% of its CPU free and T4 with 39% (seed 42 of the
default trace, 100% arrived).

The node score here is FGD's sigmoid score (`sigmoid_thresholds`) of FGD's exact decrease (in
the count-weighted milli-devices of `FragModel`) less four charges, each weighted by the mix:
- stranding: the increase in free GPU that the node's free CPU or memory cannot feed at the
  mix's CPU and memory per GPU, max(0, g - min(cpu / rho_cpu, mem / rho_mem)). CPU-heavy jobs
  go where CPU is plentiful, CPU-light ones fill the nodes short of it;
- reserve: half a device when the member opens an entirely free node without filling it, so
  whole nodes stay whole for whole-node jobs;
- scarcity: 10 devices x the node's scarcity when the member opens an entirely free node; the
  scarcity is the sum, over the mix's multi-device shapes an empty copy of the node could host,
  of the shape's share of the mix x nodes / nodes that could host it. Without it, stranding sent
  CPU-heavy pods to the 39 G3 nodes, the only ones with the 120 cores some 8-GPU pods need
  (multigpu50, seed 45: 22 of them failed);
- pressure: the devices taken x the node's pressure, the sum over the sets of accepted kinds in
  the mix that include the node's, of the set's share of the GPU demand / the share of the
  pool's devices it accepts. Without it, stranding sent CPU-heavy unconstrained pods to the T4,
  V100 and P100 nodes that type-constrained pods need (a derived gpuspec20 trace: 6.81%
  unallocated against FGD's 5.54%).
Shapes and kind sets under MIN_SHARE of the GPU demand do not count towards scarcity or pressure.
Ties go to the node first in pool order; a fractional member takes the device with the largest
decrease (lowest index on ties), as in FGD.

Figures (seeds 42-51: the shipped traces, derived gpuspec traces, FGD, and the packing floor of
benchmarks/fgd_floor.py) are in docs/benchmarks.md.
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from computegrid.core.placement.base import PlacementRequest, register_policy
from computegrid.core.placement.fgd import FragmentationAware
from computegrid.core.placement.fragmentation import SCALAR_BATCH, TypicalPod, sigmoid_thresholds
from computegrid.core.pool import BoolArray, FloatArray, IntArray, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE

#: a choice slot that is not a choice (decreases are exact and may be negative)
NO_CHOICE = -(2**62)
#: charge for opening an entirely free node without filling it, in milli-devices
RESERVE_MILLI = MILLI_PER_DEVICE // 2
#: charge per unit of scarcity for opening an entirely free node, in milli-devices
SCARCITY_MILLI = 10 * MILLI_PER_DEVICE
#: a shape counts towards scarcity, and a set of accepted kinds towards pressure, once it carries this
#: share of the mix's GPU demand: rarer ones are noise, and a static preference among near-equal kinds
#: would fill them one after the other
MIN_SHARE = 0.01


class FgdBalance(FragmentationAware):
    name = "fgd-balance"

    def set_mix(self, mix: tuple[TypicalPod, ...]) -> None:
        """Use `mix` from now on; also takes its GPU per CPU and per memory (count-weighted sums)."""
        super().set_mix(mix)
        self._static_pool: PoolSnapshot | None = None
        self._static: tuple[FloatArray, FloatArray] = (np.zeros(0), np.zeros(0))
        self._thresholds = sigmoid_thresholds(self.model.total_weight)
        self.thresholds = np.array(self._thresholds, dtype=np.int64)
        shapes = self.model.mix
        gpu = sum(t.milli_per_device * t.devices * t.count for t in shapes)
        cpu = sum(t.cpu_milli * t.count for t in shapes)
        memory = sum(t.memory_mb * t.count for t in shapes)
        #: milli-GPU the mix asks per milli-CPU and per MiB (0: that resource does not limit)
        self.gpu_per_cpu = gpu / cpu if gpu and cpu else 0.0
        self.gpu_per_mb = gpu / memory if gpu and memory else 0.0

    # ------------------------------------------------------------------ choice scores: FGD's exact decrease

    def batch_choice_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """FGD's fragmentation decrease per node and device choice; NO_CHOICE where not a choice."""
        before, after, valid = self.model.choices(pool, req, rows)
        return np.where(valid, before[:, None] - after, NO_CHOICE).astype(np.int64)

    def row_choice_scores_uncached(self, pool: PoolSnapshot, req: PlacementRequest, row: int) -> list[int]:
        """`batch_choice_scores` of one node, in pure Python."""
        before, after = self.model.choices_row(pool, req, row)
        return [NO_CHOICE if a is None else before - a for a in after]

    # ------------------------------------------------------------------ node scores: less the charges

    def node_scores(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """FGD's sigmoid score (0..100) of the best choice's decrease less the charges, per node of `rows`.

        Exact differences, unsquashed, would rank every node strictly: a static preference among
        kinds then fills them one after the other (placement_scale: 700 of 30,000 jobs failed).
        """
        if len(rows) <= SCALAR_BATCH:
            thresholds = self._thresholds
            return np.array([bisect_right(thresholds, self.row_node_score(pool, req, row)
                                          - self.row_charge(pool, req, row)) for row in rows.tolist()],
                            dtype=np.int64)
        decrease = super().node_scores(pool, req, rows)
        net = decrease - self.charges(pool, req, rows)
        squashed: IntArray = np.searchsorted(self.thresholds, net, side="right").astype(np.int64)
        return squashed

    def row_charge(self, pool: PoolSnapshot, req: PlacementRequest, row: int) -> int:
        """`charges` of one node, in pure Python (the same float operations, so the same integer)."""
        taken = req.devices_per_node * req.milli_per_device if req.milli_per_node else 0
        gpu = int(pool.free_milli[row])
        cpu = int(pool.cpu_free[row])
        memory = int(pool.mem_free[row])
        before = self.row_stranded(gpu, cpu, memory)
        after = self.row_stranded(gpu - taken, cpu - req.cpu_milli, memory - req.memory_mb)
        count = int(pool.dev_count[row])
        opens = count > 0 and gpu == count * MILLI_PER_DEVICE
        scarcity, pressure = self.static_values(pool)
        milli = (after - before + (RESERVE_MILLI if opens and taken < count * MILLI_PER_DEVICE else 0)
                 + (SCARCITY_MILLI * float(scarcity[row]) if opens else 0.0) + taken * float(pressure[row]))
        return round(milli * self.model.total_weight)

    def row_stranded(self, gpu: int, cpu: int, memory: int) -> float:
        """`stranded` of one state, in pure Python."""
        usable = float(gpu)
        if self.gpu_per_cpu:
            usable = min(usable, cpu * self.gpu_per_cpu)
        if self.gpu_per_mb:
            usable = min(usable, memory * self.gpu_per_mb)
        return max(0.0, gpu - usable)

    def charges(self, pool: PoolSnapshot, req: PlacementRequest, rows: IntArray) -> IntArray:
        """Stranding increase, reserve, scarcity and pressure charges of one member on `rows` (weighted milli)."""
        taken = req.devices_per_node * req.milli_per_device if req.milli_per_node else 0
        gpu = pool.free_milli[rows]
        before = self.stranded(gpu, pool.cpu_free[rows], pool.mem_free[rows])
        after = self.stranded(gpu - taken, pool.cpu_free[rows] - req.cpu_milli, pool.mem_free[rows] - req.memory_mb)
        count = pool.dev_count[rows]
        opens = (count > 0) & (gpu == count * MILLI_PER_DEVICE)
        scarcity, pressure = self.static_values(pool)
        milli = (after - before + np.where(opens & (taken < count * MILLI_PER_DEVICE), RESERVE_MILLI, 0)
                 + np.where(opens, SCARCITY_MILLI * scarcity[rows], 0.0) + taken * pressure[rows])
        return np.rint(milli * self.model.total_weight).astype(np.int64)

    def stranded(self, gpu: IntArray, cpu: IntArray, memory: IntArray) -> FloatArray:
        """Free GPU (milli) that free CPU and memory cannot feed at the mix's ratios."""
        usable = gpu.astype(np.float64)
        if self.gpu_per_cpu:
            usable = np.minimum(usable, cpu * self.gpu_per_cpu)
        if self.gpu_per_mb:
            usable = np.minimum(usable, memory * self.gpu_per_mb)
        stranded: FloatArray = np.maximum(0.0, gpu - usable)
        return stranded

    def scarcity(self, pool: PoolSnapshot) -> FloatArray:
        """Per node: sum over the mix's multi-device shapes an empty copy could host of share x nodes / hosts."""
        return self.static_values(pool)[0]

    def pressure(self, pool: PoolSnapshot) -> FloatArray:
        """Per node: sum over the sets of accepted kinds in the mix that include the node's, of the set's
        share of the mix's GPU demand (if at least MIN_SHARE) / the share of the pool's devices it accepts."""
        return self.static_values(pool)[1]

    def static_values(self, pool: PoolSnapshot) -> tuple[FloatArray, FloatArray]:
        """(scarcity, pressure): static for a pool and mix (total devices, CPU, memory, kinds), kept for the
        last pool seen (set_mix forgets them)."""
        if self._static_pool is pool:
            return self._static
        node_class, classes = self.model.access(pool)
        scarcity = np.zeros(pool.node_count, dtype=np.float64)
        pressure = np.zeros(pool.node_count, dtype=np.float64)
        demand = sum(t.milli_per_device * t.devices * t.count for t in self.model.mix)
        kind_sets: dict[frozenset[str], tuple[float, BoolArray]] = {}  # GPU share and the nodes it accepts
        for t, shape in enumerate(self.model.mix):
            if not shape.milli_per_device or not demand:
                continue
            accepts = classes[node_class, t] & (pool.dev_count > 0)
            gpu_share = shape.milli_per_device * shape.devices * shape.count / demand
            if shape.devices >= 2 and gpu_share >= MIN_SHARE:
                hosts = (accepts & (pool.dev_count >= shape.devices) & (pool.cpu_total >= shape.cpu_milli)
                         & (pool.mem_total >= shape.memory_mb))
                n_hosts = int(np.count_nonzero(hosts))
                if n_hosts:
                    share = shape.count / self.model.total_weight
                    scarcity += np.where(hosts, share * pool.node_count / n_hosts, 0.0)
            if shape.models:
                earlier = kind_sets.get(shape.models, (0.0, accepts))[0]
                kind_sets[shape.models] = (earlier + gpu_share, accepts)
        devices = int(pool.dev_count.sum())
        for share, accepts in kind_sets.values():
            supply = int(pool.dev_count[accepts].sum()) / devices
            if share >= MIN_SHARE and supply:
                pressure += np.where(accepts, share / supply, 0.0)
        self._static_pool, self._static = pool, (scarcity, pressure)
        return self._static


register_policy(FgdBalance.name, FgdBalance)
register_policy("default", FgdBalance)
