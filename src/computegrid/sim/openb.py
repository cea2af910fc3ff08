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
