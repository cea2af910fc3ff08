"""Read the openb node and pod lists (alibaba/clusterdata cluster-trace-gpu-v2023) into core types.

Node list columns: sn, cpu_milli, memory_mib, gpu, model. Pod list columns: name, cpu_milli,
memory_mib, num_gpu, gpu_milli[, gpu_spec, ...]. A pod asks num_gpu x gpu_milli milli-GPU;
gpu_spec ("V100M16|V100M32") lists the GPU models it accepts, empty for any.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from computegrid.core.placement import PlacementRequest
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE

#: GPU memory (GB) of the openb models, for DeviceInfo; "G2"/"G3" are unnamed in the trace.
OPENB_GPU_MEMORY_GB = {"P100": 16.0, "T4": 16.0, "V100M16": 16.0, "V100M32": 32.0, "A10": 24.0, "G2": 0.0,
                       "G3": 0.0}


@dataclass(frozen=True)
class OpenbNode:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int
    model: str


@dataclass(frozen=True)
class OpenbPod:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    gpu_spec: str

    @property
    def gpu_milli_total(self) -> int:
        """Milli-GPU the pod asks for in total."""
        return self.num_gpu * self.gpu_milli


def read_nodes(path: Path) -> list[OpenbNode]:
    """The node list; raises ValueError naming the line of a malformed row."""
    nodes = []
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                nodes.append(OpenbNode(row["sn"], int(row["cpu_milli"]), int(row["memory_mib"]), int(row["gpu"]),
                                       (row.get("model") or "").strip()))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: bad node row ({exc})") from exc
    return nodes


def read_pods(path: Path) -> list[OpenbPod]:
    """The pod list; raises ValueError naming the line of a malformed row."""
    pods = []
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                pod = OpenbPod(row["name"], int(row["cpu_milli"]), int(row["memory_mib"]), int(row["num_gpu"]),
                               int(row["gpu_milli"]), (row.get("gpu_spec") or "").strip())
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line}: bad pod row ({exc})") from exc
            if pod.num_gpu > 1 and pod.gpu_milli != MILLI_PER_DEVICE:
                raise ValueError(f"{path}:{line}: a multi-GPU pod must take whole GPUs (gpu_milli 1000)")
            pods.append(pod)
    return pods


def pod_request(pod: OpenbPod) -> PlacementRequest:
    """The PlacementRequest of one pod (a single-node job)."""
    models = frozenset(m for m in pod.gpu_spec.split("|") if m)
    return PlacementRequest(models=models, milli_per_node=pod.gpu_milli_total if pod.num_gpu else 0,
                            cpu_milli=pod.cpu_milli, memory_mb=pod.memory_mib)


def build_pool(nodes: Sequence[OpenbNode]) -> PoolSnapshot:
    """A pool of the nodes in the given order (node_id = position), one site, all up."""
    infos = [NodeInfo(node_id=i, site="openb", region="openb", tier="hub", up=True, cpu_milli=n.cpu_milli,
                      memory_mb=n.memory_mib) for i, n in enumerate(nodes)]
    devices = [DeviceInfo(node_id=i, index=k, model=n.model, memory_gb=OPENB_GPU_MEMORY_GB.get(n.model, 0.0))
               for i, n in enumerate(nodes) for k in range(n.gpus)]
    return PoolSnapshot(infos, devices)


#: gpu_spec values and their counts among the GPU pods of the first 220 rows of Alibaba's
#: openb_pod_list_gpuspec33.csv (alibaba/clusterdata, cluster-trace-gpu-v2023/csv), tallied by hand.
GPUSPEC33_SPECS = {"T4": 33, "V100M16|V100M32": 13, "G2": 10, "P100": 5, "P100|V100M16|V100M32": 3,
                   "P100|T4|V100M16|V100M32": 2, "G2|P100|T4|V100M16|V100M32": 2, "G3": 2}


def with_gpu_specs(pods: Sequence[OpenbPod], pct: int, seed: int = 0) -> list[OpenbPod]:
    """A gpuspec-style variant of a pod list: `pct`% of its GPU pods (chosen by `seed`) get a gpu_spec.

    Alibaba publishes such variants (openb_pod_list_gpuspec05 ... gpuspec33: the default trace with
    type constraints on some GPU pods). This derives one the same way when the published file is not
    at hand; the specs are drawn with the weights of GPUSPEC33_SPECS. Pods that already carry a spec
    keep it. Raises ValueError for pct outside 0..100.
    """
    if not 0 <= pct <= 100:
        raise ValueError(f"pct must be 0..100, got {pct}")
    rng = np.random.default_rng(seed)
    gpu_rows = [i for i, p in enumerate(pods) if p.num_gpu and not p.gpu_spec]
    chosen = rng.choice(len(gpu_rows), size=round(len(gpu_rows) * pct / 100), replace=False)
    specs = list(GPUSPEC33_SPECS)
    weights = np.array(list(GPUSPEC33_SPECS.values()), dtype=np.float64)
    drawn = rng.choice(len(specs), size=len(chosen), p=weights / weights.sum())
    out = list(pods)
    for row, spec in zip(chosen.tolist(), drawn.tolist(), strict=True):
        i = gpu_rows[row]
        out[i] = OpenbPod(out[i].name, out[i].cpu_milli, out[i].memory_mib, out[i].num_gpu, out[i].gpu_milli,
                          specs[spec])
    return out
