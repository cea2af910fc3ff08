"""The Kubernetes backend: each job attempt is a batch/v1 Job, created through the official `kubernetes` client.

One Job per attempt, named `cg-<job>-<attempt>` (the engine id) in the site's namespace. A request of one
node is a plain Job with one pod; a gang of several nodes of this site is an Indexed Job with one pod per
node. Pods ask for whole accelerators by the extended resource their vendor's device plugin registers
(`nvidia.com/gpu`, `huawei.com/Ascend910`, ...), are pinned to the nodes the control plane chose by
`kubernetes.io/hostname`, and select the model by the node label that named it in the inventory. With a
Kueue queue the Job carries `kueue.x-k8s.io/queue-name` and is created suspended, for Kueue to admit.

Everything this backend needs lives in the cluster: the request is an annotation on the Job and its pods,
status is read from the Job and its pods, logs from the pods, usage from the pods' start and finish times.
The one thing kept in `work_dir` is what a cancel leaves (the outcome, usage and output up to the cancel),
because cancelling deletes the Job; losing it only turns a cancelled attempt's status into `unknown`.

The builders (`job_manifest`, `inventory_from_nodes`, `status_from_job`, `usage_from_pods`) are pure
functions over the client's model objects; `docs/backends/kubernetes.md` says what is and is not tested.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from computegrid.backends.base import (
    MAX_LOG_READ,
    EngineState,
    ExecStatus,
    Inventory,
    InventoryDevice,
    LogRead,
    RunRequest,
    SubmitRefused,
    UsageSlice,
    read_log_file,
)
from computegrid.core.capabilities import EngineCapabilities
from computegrid.core.catalog import Catalog, UnknownAccelerator, default_catalog

if TYPE_CHECKING:  # the client ships no type information: these are Any to mypy, names for the reader
    from kubernetes.client import ApiClient, V1Job, V1Node, V1Pod

log = logging.getLogger(__name__)

MODEL_LABEL = "computegrid.io/accelerator-model"  # node label naming the catalog model (or an alias)
HOSTNAME_LABEL = "kubernetes.io/hostname"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_ID_LABEL = "computegrid.io/job-id"
ATTEMPT_LABEL = "computegrid.io/attempt"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "computegrid"
REQUEST_ANNOTATION = "computegrid.io/request"  # the request's parts, as JSON, on the Job and its pods
NAME_ANNOTATION = "computegrid.io/name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # annotation the job controller sets on pods
CONTAINER = "main"
DEFAULT_NAMESPACE = "computegrid"
DEFAULT_IMAGE = "python:3.11-slim"
DEFAULT_TTL_S = 7 * 24 * 3600  # finished Jobs (and their pods and logs) are removed by Kubernetes after this
MAX_LOG_SNAPSHOT = 8 * 1024 * 1024  # output kept per pod when a cancel deletes the Job

# GPU Feature Discovery (NVIDIA/k8s-device-plugin, docs/gpu-feature-discovery/README.md, "Generated Labels"):
# the product name as NVML reports it with spaces turned into dashes, e.g. NVIDIA-A100-SXM4-80GB, Tesla-T4;
# memory in MiB. With time-slicing or MPS, `nvidia.com/gpu.sharing-strategy` says so (the plugin's README,
# "Catalog of Labels"), `nvidia.com/gpu.replicas` counts the shares per GPU, and the product may gain `-SHARED`.
NVIDIA_PRODUCT_LABEL = "nvidia.com/gpu.product"
NVIDIA_MEMORY_LABEL = "nvidia.com/gpu.memory"
NVIDIA_REPLICAS_LABEL = "nvidia.com/gpu.replicas"
NVIDIA_SHARING_LABEL = "nvidia.com/gpu.sharing-strategy"
# AMD's node labeller (ROCm/k8s-device-plugin, cmd/k8s-node-labeller), e.g. AMD_Instinct_MI300X_OAM.
AMD_PRODUCT_LABELS = ("amd.com/gpu.product-name", "beta.amd.com/gpu.product-name")

# Catalog vendor (or catalog model, which wins over its vendor) -> the extended resource its device plugin
# registers with the kubelet. Where each name comes from:
DEFAULT_RESOURCE_NAMES: dict[str, str] = {
    # NVIDIA/k8s-device-plugin, README "Running GPU Jobs": `nvidia.com/gpu`.
    "nvidia": "nvidia.com/gpu",
    # ROCm/k8s-device-plugin, example/pod/alexnet-gpu.yaml: limits `amd.com/gpu`.
    "amd": "amd.com/gpu",
    # Ascend/ascend-device-plugin (now in Ascend/mind-cluster), pkg/common/constants.go:
    # HuaweiAscend910 = "huawei.com/Ascend910", HuaweiAscend310P = "huawei.com/Ascend310P". The 910B is
    # advertised as Ascend910 there. ASSUMPTION: Ascend910B-32G (Atlas 300I A2) too; not confirmed.
    "huawei": "huawei.com/Ascend910",
    "Ascend310P": "huawei.com/Ascend310P",
    # Cambricon/cambricon-k8s-device-plugin, device-plugin/README.md "Running MLU Jobs": `cambricon.com/mlu`
    # (with --enable-device-type the plugin uses per-type names such as cambricon.com/mlu370 instead).
    "cambricon": "cambricon.com/mlu",
    # Deep-Spark/ix-device-plugin (Iluvatar CoreX), pkg/dpm/plugin.go ResourceName = "iluvatar.com/gpu" and the
    # README's examples. Older releases and HAMi's documents use `iluvatar.ai/gpu`: set resource_names then.
    "iluvatar": "iluvatar.com/gpu",
    # ASSUMPTION: Moore Threads' device plugin is not a public repository; `mthreads.com/gpu` is the name its
    # KUAE cloud-native guide (docs.mthreads.com) and HAMi's documents give. Not read at the source.
    "moorethreads": "mthreads.com/gpu",
    # ASSUMPTION: BirenTechnology/k8s-device-plugin (gitee) was not read; `birentech.com/gpu` is the whole-card
    # name HAMi's documents quote from it (SVI partitions are birentech.com/1-2-gpu and 1-4-gpu).
    "biren": "birentech.com/gpu",
    # ASSUMPTION: Hygon's DCU device plugin was not found in a public repository; `hygon.com/dcu` is the name
    # HAMi and GPUStack use for it.
    "hygon": "hygon.com/dcu",
    # ASSUMPTION: Kunlunxin's device plugin is not public; `kunlunxin.com/xpu` is the whole-device name in HAMi's
    # documents.
    "kunlunxin": "kunlunxin.com/xpu",
    # ASSUMPTION: Enflame's device plugin (gcu-operator) was not read; `enflame.com/gcu` is the name HAMi's
    # documents use; Enflame's feature discovery labels nodes enflame.com/gcu.count and enflame.com/gcu.model.
    "enflame": "enflame.com/gcu",
}

# Why a fraction of a device is refused, per vendor: extended resources are whole numbers, and sharing is a
# device-plugin configuration on the cluster's side that this backend does not request.
SHARING = {
    "nvidia": "NVIDIA's plugin shares a GPU by time-slicing or MPS, advertising each share as one whole "
              "nvidia.com/gpu (or nvidia.com/gpu.shared) unit, without guaranteeing the share's size",
    "huawei": "the Ascend plugin shares an NPU only as pre-split vNPU templates, under other resource names "
              "(huawei.com/Ascend910-<n>c, huawei.com/Ascend310P-<n>c)",
    "cambricon": "the Cambricon plugin shares an MLU only in its env-share, SR-IOV or sMLU modes, set on the node",
    "iluvatar": "the Iluvatar plugin shares a GPU only by node-wide time-slicing replicas",
    "biren": "Biren shares a card only as pre-made SVI partitions (birentech.com/1-2-gpu, 1-4-gpu)",
}
NO_SHARING = "this backend knows no way to ask its device plugin for a share of one device"

_ENGINE_ID = re.compile(r"^cg-(\d+)-(\d+)$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60, "n": Decimal("1e-9"), "u": Decimal("1e-6"),
    "m": Decimal("1e-3"), "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}


def _client() -> Any:
    """The official client's `kubernetes.client` module, imported only when this backend is used."""
    try:
        from kubernetes import client
    except ImportError as exc:
        raise ValueError("the kubernetes backend needs the official client: "
                         "pip install 'computegrid[kubernetes]'") from exc
    return client


class KubernetesApiError(RuntimeError):
    """A call to the API server failed for a reason that may pass (server error, no connection)."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What the client raises when no answer came: urllib3's errors (MaxRetryError, ...), socket errors, and a
    response its models could not parse (pydantic's ValidationError is a ValueError)."""
    from urllib3.exceptions import HTTPError

    return (HTTPError, OSError, ValueError)


def api_error_message(exc: BaseException, action: str) -> str:
    """One line for a failed API call: the HTTP status and reason, and the server's own message."""
    status = getattr(exc, "status", None)
    if status is None:  # not an ApiException: the connection itself failed
        inner = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps the error that ended the retries
        cause = inner if isinstance(inner, BaseException) else exc
        return f"Kubernetes API: could not {action}: {type(cause).__name__}: {cause}"
    text = f"Kubernetes API: could not {action}: {status} {getattr(exc, 'reason', '') or ''}".rstrip()
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = str(body)[:300]
        if message:
            text += f": {message}"
    return text


# -- quantities

def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("7910m", "32Gi", "64453796Ki", "1e3", "2") as a number."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise ValueError(f"not a Kubernetes quantity: {value!r}") from exc
    return number * _SUFFIX.get(match.group(2) or "", Decimal(1))


def quantity_milli(value: str | int | float) -> int:
    """A CPU quantity in millicores, rounded up as Kubernetes does ("7910m" -> 7910, "2" -> 2000)."""
    return math.ceil(parse_quantity(value) * 1000)


def quantity_mib(value: str | int | float) -> int:
    """A memory quantity in whole MiB, rounded down ("32Gi" -> 32768, "64453796Ki" -> 62943)."""
    return int(parse_quantity(value) // (Decimal(2) ** 20))


# -- models and resource names

def resource_name_for(model: str, catalog: Catalog | None = None,
                      resource_names: Mapping[str, str] | None = None) -> str:
    """The extended resource a pod requests for one device of catalog `model`; SubmitRefused when none is known."""
    catalog = catalog or default_catalog()
    try:
        entry = catalog.get(model)
    except UnknownAccelerator as exc:
        raise SubmitRefused(f"{model!r} is not a catalog accelerator model, so it has no Kubernetes resource") from exc
    names = {**DEFAULT_RESOURCE_NAMES, **(resource_names or {})}
    found = names.get(entry.model) or names.get(entry.vendor)
    if not found:
        raise SubmitRefused(f"no Kubernetes resource name is known for {entry.model} (vendor {entry.vendor}); "
                            f"give the backend resource_names={{'{entry.vendor}': '<domain>/<resource>'}}")
    return found


def _gb_of(text: str) -> int | None:
    match = re.search(r"(\d+)GB", text)
    return int(match.group(1)) if match else None


def nvidia_product_model(product: str, memory_mib: str | None = None) -> str | None:
    """The catalog model for a GPU Feature Discovery `nvidia.com/gpu.product` value, or None.

    MIG slices and variants the catalog does not list (H100 NVL, A10G, L40, RTX 4090 D, ...) give None:
    label those nodes with the model label instead.
    """
    name = product.strip().upper().removesuffix("-SHARED")
    if "-MIG-" in name:
        return None
    for prefix in ("NVIDIA-", "TESLA-", "GEFORCE-"):
        name = name.removeprefix(prefix)
    gb = _gb_of(name)
    try:
        mem_gb = int(memory_mib) / 1024 if memory_mib else None
    except ValueError:
        mem_gb = None

    def by_memory(small: str, large: str, limit_gb: int) -> str | None:
        size = gb if gb is not None else mem_gb
        return None if size is None else (large if size > limit_gb else small)

    if "NVL" in name:
        return None
    rules: list[tuple[str, str | None]] = [
        (r"^H200($|-)", "H200-141G"),
        (r"^H100($|-)", "H100-80G"),
        (r"^H800($|-)", "H800-80G"),
        (r"^H20($|-)", "H20"),
        (r"^A100($|-)", by_memory("A100-40G", "A100-80G", 60)),
        (r"^A800($|-)", by_memory("A800-40G", "A800-80G", 60)),
        (r"^A10($|-)", "A10"),
        (r"^L40S($|-)", "L40S"),
        (r"^L20($|-)", "L20"),
        (r"^L4($|-)", "L4"),
        (r"^T4($|-)", "T4"),
        (r"^V100($|-)", by_memory("V100-16G", "V100-32G", 24)),
        (r"^P100($|-)", "P100-16G" if (gb or round(mem_gb or 0)) >= 15 else None),
        (r"^K80($|-)", "K80"),
        (r"^RTX-4090$", "RTX4090"),
    ]
    for pattern, model in rules:
        if re.search(pattern, name):
            return model
    return None


def amd_product_model(product: str) -> str | None:
    """The catalog model for an AMD node-labeller product name (e.g. AMD_Instinct_MI300X_OAM), or None."""
    name = product.upper().replace("-", "_")
    for token, model in (("MI300X", "MI300X"), ("MI250X", "MI250X")):
        if re.search(rf"(^|_){token}($|_)", name):
            return model
    return None


def node_model(labels: Mapping[str, str], *, model_label: str = MODEL_LABEL,
               catalog: Catalog | None = None) -> tuple[str, str, str] | None:
    """(catalog model, label key, label value) of the label that names a node's accelerator model, or None.

    The model label (a catalog model or alias) wins; then NVIDIA's and AMD's feature-discovery labels.
    """
    catalog = catalog or default_catalog()
    candidates: list[tuple[str, str, str | None]] = []
    if model_label in labels:
        candidates.append((model_label, labels[model_label], labels[model_label]))
    if NVIDIA_PRODUCT_LABEL in labels:
        value = labels[NVIDIA_PRODUCT_LABEL]
        candidates.append((NVIDIA_PRODUCT_LABEL, value, nvidia_product_model(value, labels.get(NVIDIA_MEMORY_LABEL))))
    for key in AMD_PRODUCT_LABELS:
        if key in labels:
            candidates.append((key, labels[key], amd_product_model(labels[key])))
    for key, value, name in candidates:
        if not name:
            continue
        try:
            return catalog.get(name).model, key, value
        except UnknownAccelerator:
            log.warning("node label %s=%s names no catalog model", key, value)
    return None


def _nvidia_shared(labels: Mapping[str, str], allocatable: Mapping[str, str]) -> bool:
    """The node's NVIDIA plugin advertises shares (time-slicing or MPS), not whole GPUs."""
    if labels.get(NVIDIA_SHARING_LABEL, "none") not in ("", "none"):
        return True
    try:
        if int(labels.get(NVIDIA_REPLICAS_LABEL, "1")) > 1:
            return True
    except ValueError:
        return True
    return labels.get(NVIDIA_PRODUCT_LABEL, "").upper().endswith("-SHARED") or "nvidia.com/gpu.shared" in allocatable


# -- inventory

def _ready(node: Any) -> bool:
    for condition in (node.status.conditions if node.status else None) or []:
        if condition.type == "Ready":
            return bool(condition.status == "True")
    return False


def _untolerated_taints(node: Any, tolerated: set[str]) -> list[str]:
    taints = (node.spec.taints if node.spec else None) or []
    return [f"{t.key}:{t.effect}" for t in taints
            if t.effect in ("NoSchedule", "NoExecute") and t.key not in tolerated]


def _pod_requests(pod: Any, name: str) -> Decimal:
    """What a pod's containers ask for of resource `name` (limits stand for requests left unset)."""
    total = Decimal(0)
    for container in (pod.spec.containers if pod.spec else None) or []:
        res = container.resources
        if res is None:
            continue
        value = (res.requests or {}).get(name) or (res.limits or {}).get(name)
        if value is not None:
            total += parse_quantity(value)
    return total


def inventory_from_nodes(nodes: Sequence[V1Node], pods: Sequence[V1Pod] | None = None, *,
                         model_label: str = MODEL_LABEL, resource_names: Mapping[str, str] | None = None,
                         catalog: Catalog | None = None) -> list[Inventory]:
    """One Inventory per node, from its allocatable resources and labels.

    Devices are the node's allocatable count of its model's extended resource, indexed 0..n-1 (the device
    plugin, not this index, picks the physical device). With `pods` (the cluster's unfinished pods), as many
    devices as pods on the node hold are marked in use, and cpu_milli_free is what their requests leave.
    A node that is cordoned, or tainted against pods that tolerate only device taints, is "drained"; one
    whose Ready condition is not True is "down".
    """
    catalog = catalog or default_catalog()
    names = {**DEFAULT_RESOURCE_NAMES, **(resource_names or {})}
    result = []
    for node in nodes:
        meta, status = node.metadata, node.status
        if meta is None:
            continue
        labels = dict(meta.labels or {})
        hostname = labels.get(HOSTNAME_LABEL) or meta.name or ""
        allocatable = dict((status.allocatable if status else None) or {})
        cpu_milli = quantity_milli(allocatable.get("cpu", "0"))
        memory_mb = quantity_mib(allocatable.get("memory", "0"))
        on_node = [p for p in pods or () if p.spec and p.spec.node_name == meta.name
                   and (p.status is None or p.status.phase not in ("Succeeded", "Failed"))]
        devices: tuple[InventoryDevice, ...] = ()
        found = node_model(labels, model_label=model_label, catalog=catalog)
        if found is not None:
            model = found[0]
            try:
                resource = resource_name_for(model, catalog, resource_names)
            except SubmitRefused as refused:
                log.warning("node %s: %s", meta.name, refused)
                resource = ""
            count = int(parse_quantity(allocatable.get(resource, "0"))) if resource else 0
            if count and catalog.get(model).vendor == "nvidia" and _nvidia_shared(labels, allocatable):
                log.warning("node %s shares its GPUs (time-slicing or MPS): its %s are shares, not whole "
                            "%s, so it lists no devices", meta.name, resource, model)
                count = 0
            used = int(sum((_pod_requests(p, resource) for p in on_node), Decimal(0))) if resource else 0
            devices = tuple(InventoryDevice(index=i, model=model, source="engine",
                                            in_use=pods is not None and i < used) for i in range(count))
        else:
            present = [k for k in set(names.values()) if parse_quantity(allocatable.get(k, "0")) > 0]
            if present:
                log.warning("node %s has %s but no label naming a catalog model; label it %s=<model>",
                            meta.name, ", ".join(sorted(present)), model_label)
        cpu_free = None
        if pods is not None:
            used_cpu = sum((_pod_requests(p, "cpu") for p in on_node), Decimal(0))
            cpu_free = max(0, cpu_milli - math.ceil(used_cpu * 1000))
        state = "up"
        if not _ready(node):
            state = "down"
        elif (node.spec and node.spec.unschedulable) or _untolerated_taints(node, set(names.values())):
            state = "drained"
        result.append(Inventory(hostname=hostname, cpu_milli=cpu_milli, memory_mb=memory_mb, devices=devices,
                                cpu_milli_free=cpu_free, state=state))
    return result


# -- the Job

def engine_id_for(job_id: int, attempt: int) -> str:
    return f"cg-{job_id}-{attempt}"


def _parse_engine_id(engine_id: str) -> tuple[int, int]:
    match = _ENGINE_ID.match(engine_id)
    if not match:
        raise ValueError(f"not a kubernetes engine id: {engine_id!r}")
    return int(match.group(1)), int(match.group(2))


def _request_json(run: RunRequest) -> str:
    return json.dumps({
        "cpu_milli": run.cpu_milli, "memory_mb": run.memory_mb, "milli_per_device": run.milli_per_device,
        "nodes": run.nodes,
        "parts": [{"rank": p.rank, "hostname": p.hostname, "devices": list(p.device_indices),
                   "models": list(p.device_models)} for p in run.parts],
    }, separators=(",", ":"), sort_keys=True)


def _model_selector(model: str, labels: Mapping[str, str] | None, model_label: str,
                    catalog: Catalog) -> tuple[str, str]:
    """The node label (key, value) that selects `model` on a node with `labels` (as the inventory read it)."""
    if labels:
        found = node_model(labels, model_label=model_label, catalog=catalog)
        if found is not None and found[0] == model:
            return found[1], found[2]
    return model_label, model


def job_manifest(run: RunRequest, *, namespace: str = DEFAULT_NAMESPACE, queue: str | None = None,
                 model_label: str = MODEL_LABEL, resource_names: Mapping[str, str] | None = None,
                 image_default: str = DEFAULT_IMAGE, node_labels: Mapping[str, Mapping[str, str]] | None = None,
                 ttl_seconds_after_finished: int | None = DEFAULT_TTL_S,
                 catalog: Catalog | None = None) -> V1Job:
    """The batch/v1 Job for one attempt, as official client model objects; SubmitRefused if it cannot be asked.

    `node_labels` maps a hostname to its node's labels (from the inventory), so the model is selected by
    the label the node really carries; a node not in it is selected by `model_label=<catalog model>`.
    """
    k8s = _client()
    catalog = catalog or default_catalog()
    if not run.parts:
        raise SubmitRefused("the request names no node")
    if run.run is None and not run.image:
        raise SubmitRefused("give `run` (a command) or `image` (to run its default command)")
    for key in run.envs:
        if not _ENV_NAME.match(key):
            raise SubmitRefused(f"{key!r} is not a valid environment variable name for Kubernetes")
    counts = {len(p.device_indices) for p in run.parts}
    if len(counts) > 1:
        raise SubmitRefused("the parts hold different numbers of devices; one Job's pods are all alike")
    devices = counts.pop()
    resource = model = None
    if devices:
        model = run.device_model
        if model is None:
            raise SubmitRefused("the devices name no single catalog model")
        resource = resource_name_for(model, catalog, resource_names)
        if run.milli_per_device < 1000:
            vendor = catalog.get(model).vendor
            raise SubmitRefused(
                f"a share of {run.milli_per_device}/1000 of a {model} cannot be asked of Kubernetes: extended "
                f"resources such as {resource} are whole devices, and {SHARING.get(vendor, NO_SHARING)}")

    name = engine_id_for(run.job_id, run.attempt)
    labels = {JOB_ID_LABEL: str(run.job_id), ATTEMPT_LABEL: str(run.attempt), MANAGED_BY_LABEL: MANAGED_BY}
    annotations = {REQUEST_ANNOTATION: _request_json(run)}
    if run.name:
        annotations[NAME_ANNOTATION] = run.name
    job_labels = dict(labels)
    if queue:
        job_labels[QUEUE_LABEL] = queue

    gang = len(run.parts) > 1
    ranks = [p.rank for p in run.parts]
    ours = {"COMPUTEGRID_JOB_ID", "COMPUTEGRID_ATTEMPT", "COMPUTEGRID_NUM_NODES", "COMPUTEGRID_NODE_RANK"}
    env = [k8s.V1EnvVar(name=k, value=str(v)) for k, v in sorted(run.envs.items()) if k not in ours]
    env += [k8s.V1EnvVar(name="COMPUTEGRID_JOB_ID", value=str(run.job_id)),
            k8s.V1EnvVar(name="COMPUTEGRID_ATTEMPT", value=str(run.attempt)),
            k8s.V1EnvVar(name="COMPUTEGRID_NUM_NODES", value=str(run.nodes))]
    prelude = ""
    if not gang:
        env.append(k8s.V1EnvVar(name="COMPUTEGRID_NODE_RANK", value=str(ranks[0])))
    elif ranks == list(range(len(ranks))):  # the completion index is the rank
        env.append(k8s.V1EnvVar(name="COMPUTEGRID_NODE_RANK", value_from=k8s.V1EnvVarSource(
            field_ref=k8s.V1ObjectFieldSelector(field_path=f"metadata.annotations['{COMPLETION_INDEX}']"))))
    elif run.run is not None:  # this site holds ranks other than 0..n-1 of a larger gang
        prelude = (f"ranks=({' '.join(str(r) for r in ranks)}); "
                   "export COMPUTEGRID_NODE_RANK=\"${ranks[$JOB_COMPLETION_INDEX]}\"\n")
    else:
        raise SubmitRefused(f"this site holds ranks {ranks} of the gang; an image run without `run` cannot be "
                            "told its rank (give `run`)")

    quantities: dict[str, str] = {}
    if run.cpu_milli > 0:
        quantities["cpu"] = f"{run.cpu_milli}m"
    if run.memory_mb > 0:
        quantities["memory"] = f"{run.memory_mb}Mi"
    if resource:
        quantities[resource] = str(devices)
    container = k8s.V1Container(
        name=CONTAINER, image=run.image or image_default, env=env, working_dir=run.workdir or None,
        command=["bash", "-lc", prelude + run.run] if run.run is not None else None,
        resources=k8s.V1ResourceRequirements(requests=dict(quantities), limits=dict(quantities)))

    selector: dict[str, str] = {}
    affinity = None
    model_keys = ([_model_selector(model, (node_labels or {}).get(p.hostname), model_label, catalog)
                   for p in run.parts] if model else [])
    if not gang:
        selector[HOSTNAME_LABEL] = run.parts[0].hostname
        if model_keys:
            selector[model_keys[0][0]] = model_keys[0][1]
    else:
        if model_keys and len(set(model_keys)) == 1:
            selector[model_keys[0][0]] = model_keys[0][1]
        terms = []
        for i, part in enumerate(run.parts):
            exprs = [k8s.V1NodeSelectorRequirement(key=HOSTNAME_LABEL, operator="In", values=[part.hostname])]
            if model_keys:
                exprs.append(k8s.V1NodeSelectorRequirement(key=model_keys[i][0], operator="In",
                                                           values=[model_keys[i][1]]))
            terms.append(k8s.V1NodeSelectorTerm(match_expressions=exprs))
        affinity = k8s.V1Affinity(
            node_affinity=k8s.V1NodeAffinity(
                required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(node_selector_terms=terms)),
            pod_anti_affinity=k8s.V1PodAntiAffinity(required_during_scheduling_ignored_during_execution=[
                k8s.V1PodAffinityTerm(topology_key=HOSTNAME_LABEL,
                                      label_selector=k8s.V1LabelSelector(match_labels=dict(labels)))]))
    tolerations = ([k8s.V1Toleration(key=resource, operator="Exists", effect="NoSchedule")] if resource else None)

    pod_spec = k8s.V1PodSpec(containers=[container], restart_policy="Never", node_selector=selector or None,
                             affinity=affinity, tolerations=tolerations, automount_service_account_token=False)
    limit = run.time_limit_s if run.time_limit_s and run.time_limit_s > 0 else None
    spec = k8s.V1JobSpec(
        template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=dict(labels), annotations=annotations),
                                       spec=pod_spec),
        backoff_limit=0, active_deadline_seconds=limit, ttl_seconds_after_finished=ttl_seconds_after_finished,
        suspend=True if queue else None,
        completion_mode="Indexed" if gang else None,
        completions=len(run.parts) if gang else None, parallelism=len(run.parts) if gang else None)
    job: V1Job = k8s.V1Job(api_version="batch/v1", kind="Job", spec=spec, metadata=k8s.V1ObjectMeta(
        name=name, namespace=namespace, labels=job_labels, annotations=dict(annotations)))
    return job


# -- status, usage and logs from what the API returns

def _ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def _main_status(pod: Any) -> Any:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return next((s for s in statuses if s.name == CONTAINER), statuses[0] if statuses else None)


def _times(pod: Any) -> tuple[int | None, int | None]:
    """(started, finished) of a pod's main container, in epoch ms; None where it has not."""
    status = _main_status(pod)
    state = status.state if status is not None else None
    if state is None:
        return None, None
    if state.terminated is not None:
        return _ms(state.terminated.started_at), _ms(state.terminated.finished_at)
    if state.running is not None:
        return _ms(state.running.started_at), None
    return None, None


def _index(pod: Any) -> int:
    annotations = (pod.metadata.annotations if pod.metadata else None) or {}
    try:
        return int(annotations.get(COMPLETION_INDEX, 0))
    except ValueError:
        return 0


def _ordered(pods: Sequence[Any]) -> list[Any]:
    """One pod per completion index (the newest), in index order."""
    newest: dict[int, Any] = {}
    for pod in pods:
        i = _index(pod)
        created = pod.metadata.creation_timestamp if pod.metadata else None
        old = newest.get(i)
        if old is None or (created and (old.metadata.creation_timestamp is None
                                        or created > old.metadata.creation_timestamp)):
            newest[i] = pod
    return [newest[i] for i in sorted(newest)]


def _finished(pod: Any) -> bool:
    status = _main_status(pod)
    phase = pod.status.phase if pod.status else None
    return phase in ("Succeeded", "Failed") or bool(status is not None and status.state is not None
                                                    and status.state.terminated is not None)


def _waiting_reason(pod: Any) -> str:
    for condition in (pod.status.conditions if pod.status else None) or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return f"not scheduled: {condition.reason or ''}: {condition.message or ''}".rstrip(": ")
    status = _main_status(pod)
    if status is not None and status.state is not None and status.state.waiting is not None:
        waiting = status.state.waiting
        return f"{waiting.reason or 'waiting'}: {waiting.message or ''}".rstrip(": ")
    return ""


def status_from_job(job: V1Job | None, pods: Sequence[V1Pod] = ()) -> ExecStatus:
    """What a Job (and, when given, its pods) says of the attempt. None (no such Job) is UNKNOWN."""
    if job is None:
        return ExecStatus(EngineState.UNKNOWN)
    meta, spec, st = job.metadata, job.spec, job.status
    conditions = {c.type: c for c in ((st.conditions if st else None) or []) if c.status == "True"}
    ordered = _ordered(pods)
    starts = [t for t in (_times(p)[0] for p in ordered) if t is not None]
    started = min(starts) if starts else _ms(st.start_time if st else None)
    ends = [t for t in (_times(p)[1] for p in ordered) if t is not None]
    if "Complete" in conditions:
        ended = _ms(st.completion_time if st else None) or _ms(conditions["Complete"].last_transition_time)
        return ExecStatus(EngineState.SUCCEEDED, 0, started, ended or (max(ends) if ends else None), "completed")
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None:
        code, why = None, ""
        for pod in ordered:
            status = _main_status(pod)
            term = status.state.terminated if status is not None and status.state is not None else None
            if term is not None and term.exit_code != 0:
                code, why = term.exit_code, term.reason or ""
                break
        if code is None:  # no container exit: a pod the kubelet failed or evicted may say why
            pod_failed = next((p for p in ordered if p.status is not None and p.status.phase == "Failed"
                               and p.status.reason), None)
            if pod_failed is not None:
                why = f"{pod_failed.status.reason}: {pod_failed.status.message or ''}".rstrip(": ")
        if failed.reason == "DeadlineExceeded":
            limit = spec.active_deadline_seconds if spec else None
            reason = f"stopped after its time limit of {limit} s (DeadlineExceeded)"
        elif code is not None:
            reason = f"exit code {code}" + (f" ({why})" if why and why not in ("Error", "Completed") else "")
        elif why:
            reason = why
        else:
            reason = f"{failed.reason or 'failed'}: {failed.message or ''}".rstrip(": ")
        ended = _ms(failed.last_transition_time) or (max(ends) if ends else None)
        return ExecStatus(EngineState.FAILED, code, started, ended, reason)
    if meta is not None and meta.deletion_timestamp is not None:
        return ExecStatus(EngineState.CANCELLED, None, started, _ms(meta.deletion_timestamp), "the Job was deleted")
    if spec is not None and spec.suspend:
        queue = (meta.labels or {}).get(QUEUE_LABEL) if meta is not None else None
        why = (conditions["Suspended"].message or "") if "Suspended" in conditions else ""
        text = f"waiting for Kueue to admit it to queue {queue!r}" if queue else "the Job is suspended"
        return ExecStatus(EngineState.QUEUED, reason=f"{text}: {why}" if why else text)
    if any(p.status is not None and p.status.phase == "Running" for p in ordered) or (st and (st.ready or 0) > 0):
        return ExecStatus(EngineState.RUNNING, started_ms=started)
    if ordered and all(_finished(p) for p in ordered):
        return ExecStatus(EngineState.RUNNING, started_ms=started)  # the job controller has yet to conclude
    reasons = [r for r in (_waiting_reason(p) for p in ordered) if r]
    if reasons:
        return ExecStatus(EngineState.QUEUED, reason=reasons[0])
    return ExecStatus(EngineState.QUEUED, reason="waiting for the job controller to create its pods")


def _request_of(pod: Any) -> dict[str, Any] | None:
    text = ((pod.metadata.annotations if pod.metadata else None) or {}).get(REQUEST_ANNOTATION)
    if not text:
        return None
    try:
        found: dict[str, Any] = json.loads(text)
    except ValueError:
        return None
    return found


def _part_of(pod: Any, request: dict[str, Any], hostnames: Mapping[str, str]) -> dict[str, Any]:
    """The request part a pod ran as: the one on the pod's node, else the one of its completion index."""
    parts: list[dict[str, Any]] = request.get("parts") or [{}]
    node = pod.spec.node_name if pod.spec else None
    node = hostnames.get(node, node) if node else None
    for part in parts:
        if node and part.get("hostname") == node:
            return part
    index = _index(pod)
    return parts[index] if index < len(parts) else parts[0]


def usage_from_pods(pods: Sequence[V1Pod], now_ms: int | None = None,
                    hostnames: Mapping[str, str] | None = None) -> list[UsageSlice]:
    """CPU and device shares each pod held, from its container's start to its finish (or now).

    A pod's slices name the host of the request part it ran as: the part on its node (`hostnames` maps a
    node name to its `kubernetes.io/hostname` where the two differ), else the part of its completion index.
    """
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    slices = []
    for pod in _ordered(pods):
        request = _request_of(pod)
        start, end = _times(pod)
        if request is None or start is None:
            continue
        end = end if end is not None else now
        part = _part_of(pod, request, hostnames or {})
        host = str(part.get("hostname", ""))
        slices.append(UsageSlice(-1, None, 0, int(request.get("cpu_milli", 0)), start, end, host))
        for index, model in zip(part.get("devices", []), part.get("models", []), strict=False):
            slices.append(UsageSlice(int(index), model or None, int(request.get("milli_per_device", 0)), 0,
                                     start, end, host))
    return slices


def _segment_header(pod: Any, pods_in_job: int) -> bytes:
    """Output of a gang is its ranks' outputs one after another, each under a line naming the rank."""
    if pods_in_job <= 1:
        return b""
    request = _request_of(pod) or {}
    parts = request.get("parts") or []
    index = _index(pod)
    rank = parts[index].get("rank", index) if index < len(parts) else index
    return f"----- rank {rank} -----\n".encode()


# -- the backend

@dataclass
class _Cancelled:
    """What a cancel keeps of an attempt whose Job it deletes."""

    status: dict[str, Any]
    usage: list[dict[str, Any]]
    log_file: str


class KubernetesBackend:
    name = "kubernetes"
    rank_logs = False  # a gang's pods' logs are read as one, each under a `----- rank R -----` line
    # Extended resources are whole devices (no shares); images yes; gangs as an Indexed Job. Models: None,
    # since the inventory lists only devices of models that have a resource name (`resource_name_for`).
    capabilities = EngineCapabilities(shares=False, images=True, gangs=True, models=None)

    def __init__(self, work_dir: str | Path, namespace: str = DEFAULT_NAMESPACE, kubeconfig: str | None = None,
                 context: str | None = None, in_cluster: bool | None = None, queue: str | None = None,
                 model_label: str = MODEL_LABEL, resource_names: Mapping[str, str] | None = None,
                 image_default: str = DEFAULT_IMAGE, api_client: ApiClient | None = None,
                 node_selector: str | None = None, ttl_seconds_after_finished: int | None = DEFAULT_TTL_S,
                 catalog: Catalog | None = None, declared: Sequence[Any] | None = None):
        if declared:
            raise ValueError("the kubernetes backend lists the cluster's nodes and their device-plugin resources; "
                             "declared devices (a site file) do not apply to it")
        self.work_dir = Path(work_dir).resolve()
        self.namespace = namespace
        self.queue = queue
        self.model_label = model_label
        self.resource_names = dict(resource_names or {})
        self.image_default = image_default
        self.node_selector = node_selector
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        self.catalog = catalog or default_catalog()
        self.api_client = api_client if api_client is not None else _connect(kubeconfig, context, in_cluster)
        k8s = _client()
        self.batch = k8s.BatchV1Api(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)
        self._node_labels: dict[str, dict[str, str]] = {}  # hostname -> its node's labels
        self._hostnames: dict[str, str] = {}  # node name -> kubernetes.io/hostname
        self._finished_log_sizes: dict[str, int] = {}  # pod uid -> bytes of a finished pod's output
        self._cancelled: dict[str, _Cancelled] = {}
        self._warned_pods = False

    # -- calls
    @contextmanager
    def _api(self, action: str) -> Iterator[None]:
        """Turn the client's errors into one-line messages (KubernetesApiError), never a traceback."""
        from kubernetes.client.exceptions import ApiException
        try:
            yield
        except ApiException as exc:
            raise KubernetesApiError(api_error_message(exc, action)) from None
        except _transport_errors() as exc:
            raise KubernetesApiError(api_error_message(exc, action)) from None

    # -- inventory
    def inventory(self) -> list[Inventory]:
        from kubernetes.client.exceptions import ApiException
        with self._api("list nodes"):
            nodes = self.core.list_node(label_selector=self.node_selector).items
        pods = None
        with self._api("list pods in all namespaces"):
            try:
                pods = self.core.list_pod_for_all_namespaces(
                    field_selector="status.phase!=Succeeded,status.phase!=Failed").items
            except ApiException as exc:
                if exc.status not in (401, 403):
                    raise
                if not self._warned_pods:  # RBAC allows no cluster-wide pod list: report without it
                    log.warning("devices in use and free CPU are not reported: %s",
                                api_error_message(exc, "list pods in all namespaces"))
                    self._warned_pods = True
        for node in nodes:
            labels = dict(node.metadata.labels or {})
            hostname = labels.get(HOSTNAME_LABEL) or node.metadata.name
            self._node_labels[hostname] = labels
            self._hostnames[node.metadata.name] = hostname
        return inventory_from_nodes(nodes, pods, model_label=self.model_label, resource_names=self.resource_names,
                                    catalog=self.catalog)

    def telemetry(self) -> list[dict[str, Any]]:
        return []  # the API server reports no device telemetry

    # -- jobs
    def engine_id(self, job_id: int, attempt: int) -> str:
        return engine_id_for(job_id, attempt)

    def submit(self, run: RunRequest) -> str:
        from kubernetes.client.exceptions import ApiException
        engine_id = self.engine_id(run.job_id, run.attempt)
        if self._cancel_record(engine_id) is not None:
            return engine_id  # cancelled here before: never start it again
        if any(p.hostname not in self._node_labels for p in run.parts) and run.devices_per_node:
            self.inventory()  # learn the labels that select the model on these nodes
        job = job_manifest(run, namespace=self.namespace, queue=self.queue, model_label=self.model_label,
                           resource_names=self.resource_names, image_default=self.image_default,
                           node_labels=self._node_labels, ttl_seconds_after_finished=self.ttl_seconds_after_finished,
                           catalog=self.catalog)
        try:
            self.batch.create_namespaced_job(namespace=self.namespace, body=job)
        except ApiException as exc:
            if exc.status == 409:  # AlreadyExists: this attempt was submitted before
                return engine_id
            message = api_error_message(exc, f"create Job {engine_id} in namespace {self.namespace}")
            if exc.status in (400, 403, 404, 422):  # the server will not take it as asked
                raise SubmitRefused(message) from None
            raise KubernetesApiError(message) from None
        except _transport_errors() as exc:
            raise KubernetesApiError(api_error_message(exc, f"create Job {engine_id}")) from None
        return engine_id

    def _read_job(self, engine_id: str) -> V1Job | None:
        from kubernetes.client.exceptions import ApiException
        _parse_engine_id(engine_id)
        with self._api(f"read Job {engine_id}"):
            try:
                job: V1Job = self.batch.read_namespaced_job(name=engine_id, namespace=self.namespace)
                return job
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise

    def _pods(self, engine_id: str) -> list[V1Pod]:
        job_id, attempt = _parse_engine_id(engine_id)
        with self._api(f"list the pods of {engine_id}"):
            found = self.core.list_namespaced_pod(
                namespace=self.namespace, label_selector=f"{JOB_ID_LABEL}={job_id},{ATTEMPT_LABEL}={attempt}")
        return list(found.items)

    def status(self, engine_id: str) -> ExecStatus:
        record = self._cancel_record(engine_id)
        if record is not None:
            values = dict(record.status)
            values["state"] = EngineState(values["state"])
            return ExecStatus(**values)
        job = self._read_job(engine_id)
        if job is None:
            return ExecStatus(EngineState.UNKNOWN)
        return status_from_job(job, self._pods(engine_id))

    def cancel(self, engine_id: str) -> None:
        """Delete the Job (its pods go in the background), keeping its outcome, usage and output here."""
        from kubernetes.client.exceptions import ApiException
        if self._cancel_record(engine_id) is not None:
            return
        job = self._read_job(engine_id)
        if job is None:
            return
        pods = self._pods(engine_id)
        status = status_from_job(job, pods)
        if status.state in (EngineState.SUCCEEDED, EngineState.FAILED):
            return  # already over: keep the Job for its status and logs
        now = time.time_ns() // 1_000_000
        try:
            output = self._full_output(pods)
        except KubernetesApiError as exc:  # the output is worth keeping, not worth leaving the job running for
            output = f"[computegrid: the output could not be read before the cancel: {exc}]\n".encode()
        self._save_cancel(engine_id, _Cancelled(
            status={"state": EngineState.CANCELLED.value, "exit_code": None, "started_ms": status.started_ms,
                    "ended_ms": now, "reason": "stopped on request"},
            usage=[asdict(u) for u in usage_from_pods(pods, now, self._hostnames)], log_file=""), output)
        try:
            with self._api(f"delete Job {engine_id}"):
                try:
                    self.batch.delete_namespaced_job(name=engine_id, namespace=self.namespace,
                                                     propagation_policy="Background")
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        except KubernetesApiError:
            self._forget_cancel(engine_id)  # it still runs: do not claim it stopped
            raise

    def logs(self, engine_id: str, offset: int, rank: int | None = None) -> LogRead:
        """Every rank's output, one pod after another (`rank` other than None reads nothing)."""
        if rank is not None:
            return LogRead(data=b"", next_offset=offset)
        record = self._cancel_record(engine_id)
        if record is not None:
            return read_log_file(record.log_file, offset)
        pods = _ordered(self._pods(engine_id))
        out = bytearray()
        end = offset + MAX_LOG_READ
        position = 0
        for pod in pods:
            header = _segment_header(pod, len(pods))
            finished = _finished(pod)
            uid = pod.metadata.uid or pod.metadata.name
            size = self._finished_log_sizes.get(uid) if finished else None
            if size is not None and position + len(header) + size <= offset:
                position += len(header) + size  # wholly before the offset: skip without reading
                continue
            if finished:
                body = self._pod_log(pod)
                self._finished_log_sizes[uid] = len(body)
            else:
                body = self._pod_log(pod, limit=max(1, end - position - len(header)))
            segment = header + body
            lo, hi = max(offset, position), min(end, position + len(segment))
            if hi > lo:
                out += segment[lo - position:hi - position]
            position += len(segment)
            if not finished or position >= end:
                break  # a later rank's output follows only once this one's is complete
        return LogRead(data=bytes(out), next_offset=offset + len(out))

    def _pod_log(self, pod: Any, limit: int | None = None) -> bytes:
        from kubernetes.client.exceptions import ApiException
        with self._api(f"read the log of pod {pod.metadata.name}"):
            try:
                response = self.core.read_namespaced_pod_log(
                    name=pod.metadata.name, namespace=self.namespace, container=CONTAINER, limit_bytes=limit,
                    _preload_content=False)
            except ApiException as exc:
                if exc.status in (400, 404):  # not started yet, or gone
                    return b""
                raise
        data = response.data
        return data if isinstance(data, bytes) else str(data).encode()

    def _full_output(self, pods: Sequence[Any]) -> bytes:
        ordered = _ordered(pods)
        return b"".join(_segment_header(p, len(ordered)) + self._pod_log(p, limit=MAX_LOG_SNAPSHOT) for p in ordered)

    def usage(self, engine_id: str) -> list[UsageSlice]:
        record = self._cancel_record(engine_id)
        if record is not None:
            return [UsageSlice(**u) for u in record.usage]
        return usage_from_pods(self._pods(engine_id), hostnames=self._hostnames)

    def active_ids(self) -> list[str]:
        with self._api(f"list Jobs in namespace {self.namespace}"):
            jobs = self.batch.list_namespaced_job(namespace=self.namespace,
                                                  label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}").items
        active = []
        for job in jobs:
            name = job.metadata.name
            if not _ENGINE_ID.match(name or "") or job.metadata.deletion_timestamp is not None:
                continue
            if status_from_job(job).state in (EngineState.QUEUED, EngineState.RUNNING):
                active.append(name)
        return sorted(active)

    def renew_lease(self, term_ms: int, kill_ms: int) -> None:
        """Kubernetes keeps its Jobs without the agent; a returning agent stops those no longer assigned to it."""

    # -- what a cancel leaves in work_dir
    def _cancel_dir(self) -> Path:
        return self.work_dir / "cancelled"

    def _cancel_record(self, engine_id: str) -> _Cancelled | None:
        _parse_engine_id(engine_id)
        if engine_id in self._cancelled:
            return self._cancelled[engine_id]
        path = self._cancel_dir() / f"{engine_id}.json"
        try:
            record = _Cancelled(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        self._cancelled[engine_id] = record
        return record

    def _save_cancel(self, engine_id: str, record: _Cancelled, output: bytes) -> None:
        directory = self._cancel_dir()
        directory.mkdir(parents=True, exist_ok=True)
        log_file = directory / f"{engine_id}.log"
        log_file.write_bytes(output)
        record.log_file = str(log_file)
        tmp = directory / f"{engine_id}.json.tmp"
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(directory / f"{engine_id}.json")
        self._cancelled[engine_id] = record

    def _forget_cancel(self, engine_id: str) -> None:
        self._cancelled.pop(engine_id, None)
        for suffix in (".json", ".log"):
            (self._cancel_dir() / f"{engine_id}{suffix}").unlink(missing_ok=True)


def _connect(kubeconfig: str | None, context: str | None, in_cluster: bool | None) -> ApiClient:
    """An ApiClient from a kubeconfig file, or the pod's service account when running in the cluster."""
    import os

    k8s = _client()
    from kubernetes import config as config_module
    from kubernetes.config.config_exception import ConfigException

    config: Any = config_module  # its loaders are untyped

    try:
        if kubeconfig is None and (in_cluster or (in_cluster is None and "KUBERNETES_SERVICE_HOST" in os.environ)):
            configuration = k8s.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            made: ApiClient = k8s.ApiClient(configuration)
        else:
            made = config.new_client_from_config(config_file=kubeconfig, context=context)
        return made
    except (ConfigException, OSError) as exc:
        where = kubeconfig or ("the in-cluster service account" if in_cluster else "the default kubeconfig")
        raise ValueError(f"cannot configure the Kubernetes client from {where}: {exc}") from None


def create(**options: Any) -> KubernetesBackend:
    try:
        return KubernetesBackend(**options)
    except TypeError as exc:
        raise ValueError(f"kubernetes backend: {exc}") from None


__all__ = ["DEFAULT_RESOURCE_NAMES", "KubernetesApiError", "KubernetesBackend", "api_error_message", "create",
           "inventory_from_nodes", "job_manifest", "node_model", "nvidia_product_model", "parse_quantity",
           "quantity_mib", "quantity_milli", "resource_name_for", "status_from_job", "usage_from_pods"]
