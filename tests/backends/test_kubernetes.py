"""The Kubernetes backend, tested without a Kubernetes API server.

No Kubernetes API server runs here, and none is imitated. These tests check two things only:
- the objects this backend sends through the official `kubernetes` client: the batch/v1 Job built with the
  client's own model classes and turned by `ApiClient().sanitize_for_serialization` into the JSON an API
  server would receive (resource requests by vendor resource name, node selectors, the Kueue label and
  suspend, Indexed gangs, time limits, refusals);
- the parsing of objects the client returns: V1Node, V1Job and V1Pod objects, several of them built from
  API-shaped JSON by the client's own deserializer, mapped to inventory, status and usage.
A few tests drive the backend's methods with stand-ins for BatchV1Api/CoreV1Api that return canned client
objects and raise the client's ApiException; they check this module's handling (409 on create, errors as
one-line messages, cancel, log offsets) and say nothing of what a server would answer.

NOT covered, because no server runs: a real API server's admission and validation of these Jobs (beyond
the client models' own type checks), scheduling, the device plugins and what they advertise, Kueue's
admission, pod logs as the kubelet serves them, RBAC, watch/list behaviour, and the timing of the job
controller's conditions. See docs/backends/kubernetes.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

k8s = pytest.importorskip("kubernetes.client")

from kubernetes.client import ApiClient  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from kubernetes.utils import parse_quantity as client_parse_quantity  # noqa: E402

from computegrid.backends import EngineState, NodePart, RunRequest, SubmitRefused, get_backend  # noqa: E402
from computegrid.backends.kubernetes import (  # noqa: E402
    COMPLETION_INDEX,
    DEFAULT_RESOURCE_NAMES,
    MODEL_LABEL,
    QUEUE_LABEL,
    REQUEST_ANNOTATION,
    KubernetesApiError,
    KubernetesBackend,
    amd_product_model,
    api_error_message,
    create,
    inventory_from_nodes,
    job_manifest,
    node_model,
    nvidia_product_model,
    parse_quantity,
    quantity_mib,
    quantity_milli,
    resource_name_for,
    status_from_job,
    usage_from_pods,
)
from computegrid.core.catalog import default_catalog, parse_catalog  # noqa: E402
from computegrid.core.data import packaged_text  # noqa: E402

T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def wire(obj: Any) -> Any:
    """The JSON the client would send: its own serializer over its own model objects."""
    return ApiClient().sanitize_for_serialization(obj)


def parsed(data: dict[str, Any], klass: str) -> Any:
    """An object as the client hands back an API response: its own deserializer over API-shaped JSON."""
    text = json.dumps(data)
    try:
        return ApiClient().deserialize(text, klass, "application/json")  # the pydantic-based client (v37 here)
    except TypeError:  # older swagger-based clients take a response with .data (untested here)
        return ApiClient().deserialize(type("Response", (), {"data": text})(), klass)


def request(*, devices: int = 0, model: str = "", hosts: tuple[str, ...] = ("gpu-a",), ranks: tuple[int, ...] = (),
            run: str | None = "python train.py", image: str | None = None, milli: int = 1000,
            time_limit_s: int | None = 3600, envs: dict[str, str] | None = None, nodes: int | None = None,
            job_id: int = 41, attempt: int = 1) -> RunRequest:
    ranks = ranks or tuple(range(len(hosts)))
    parts = tuple(NodePart(rank=r, hostname=h, device_indices=tuple(range(devices)),
                           device_models=tuple(model for _ in range(devices)))
                  for r, h in zip(ranks, hosts, strict=True))
    return RunRequest(job_id=job_id, attempt=attempt, nodes=nodes or len(hosts), run=run, image=image,
                      workdir="/data/run", envs=envs or {"SEED": "3"}, milli_per_device=milli if devices else 0,
                      cpu_milli=2000, memory_mb=8192, parts=parts, time_limit_s=time_limit_s, name="train")


def container(body: dict[str, Any]) -> dict[str, Any]:
    containers = body["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env_of(body: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(body)["env"]}


# -- the Job sent to the API server

def test_an_nvidia_request_asks_for_whole_gpus_by_resource_name_on_its_node() -> None:
    job = job_manifest(request(devices=2, model="A100-80G"), namespace="site-a")
    assert isinstance(job, k8s.V1Job)
    body = wire(job)
    assert body["apiVersion"] == "batch/v1" and body["kind"] == "Job"
    assert body["metadata"]["name"] == "cg-41-1" and body["metadata"]["namespace"] == "site-a"
    assert body["metadata"]["labels"] == {"computegrid.io/job-id": "41", "computegrid.io/attempt": "1",
                                          "app.kubernetes.io/managed-by": "computegrid"}
    spec = body["spec"]
    assert spec["backoffLimit"] == 0 and "completionMode" not in spec and "suspend" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "gpu-a", MODEL_LABEL: "A100-80G"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    main = container(body)
    expected = {"cpu": "2000m", "memory": "8192Mi", "nvidia.com/gpu": "2"}
    assert main["resources"] == {"requests": expected, "limits": expected}
    assert main["command"] == ["bash", "-lc", "python train.py"]
    assert main["image"] == "python:3.11-slim" and main["workingDir"] == "/data/run"
    assert env_of(body) == {"SEED": "3", "COMPUTEGRID_JOB_ID": "41", "COMPUTEGRID_ATTEMPT": "1",
                            "COMPUTEGRID_NUM_NODES": "1", "COMPUTEGRID_NODE_RANK": "0"}
    assert "CUDA_VISIBLE_DEVICES" not in env_of(body)  # the device plugin says which GPUs the container sees
    stored = json.loads(spec["template"]["metadata"]["annotations"][REQUEST_ANNOTATION])
    assert stored["parts"] == [{"rank": 0, "hostname": "gpu-a", "devices": [0, 1], "models": ["A100-80G"] * 2}]
    # The JSON parses back into the client's Job model unchanged (the client's own type checks pass).
    assert wire(parsed(body, "V1Job")) == body


@pytest.mark.parametrize(("model", "resource"), [("Ascend910B", "huawei.com/Ascend910"),
                                                 ("Ascend910B-32G", "huawei.com/Ascend910"),
                                                 ("Ascend310P", "huawei.com/Ascend310P")])
def test_an_ascend_request_asks_for_the_huawei_resource(model: str, resource: str) -> None:
    body = wire(job_manifest(request(devices=8, model=model)))
    assert container(body)["resources"]["limits"][resource] == "8"
    assert body["spec"]["template"]["spec"]["nodeSelector"][MODEL_LABEL] == model


def test_the_model_is_selected_by_the_label_the_node_carries() -> None:
    node_labels = {"gpu-a": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                   "npu-1": {MODEL_LABEL: "910B"}}  # an alias of Ascend910B, as the operator wrote it
    gpu = wire(job_manifest(request(devices=1, model="H100-80G"), node_labels=node_labels))
    assert gpu["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "gpu-a",
                                                               "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    npu = wire(job_manifest(request(devices=1, model="Ascend910B", hosts=("npu-1",)), node_labels=node_labels))
    assert npu["spec"]["template"]["spec"]["nodeSelector"][MODEL_LABEL] == "910B"


def test_a_cpu_only_request_pins_the_node_and_asks_for_no_device() -> None:
    body = wire(job_manifest(request()))
    pod = body["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "gpu-a"} and "tolerations" not in pod
    assert container(body)["resources"]["limits"] == {"cpu": "2000m", "memory": "8192Mi"}


def test_a_kueue_queue_labels_the_job_and_creates_it_suspended() -> None:
    body = wire(job_manifest(request(devices=1, model="T4"), queue="team-a"))
    assert body["metadata"]["labels"][QUEUE_LABEL] == "team-a"
    assert body["spec"]["suspend"] is True
    assert QUEUE_LABEL not in body["spec"]["template"]["metadata"]["labels"]
    plain = wire(job_manifest(request(devices=1, model="T4")))
    assert QUEUE_LABEL not in plain["metadata"]["labels"] and "suspend" not in plain["spec"]


def test_a_gang_of_two_nodes_is_an_indexed_job_with_one_pod_per_node() -> None:
    body = wire(job_manifest(request(devices=4, model="H100-80G", hosts=("gpu-a", "gpu-b"))))
    spec = body["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {MODEL_LABEL: "H100-80G"}  # the hosts are in the affinity, one per pod
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [[(e["key"], e["operator"], e["values"]) for e in t["matchExpressions"]] for t in terms] == [
        [("kubernetes.io/hostname", "In", ["gpu-a"]), (MODEL_LABEL, "In", ["H100-80G"])],
        [("kubernetes.io/hostname", "In", ["gpu-b"]), (MODEL_LABEL, "In", ["H100-80G"])]]
    spread = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spread[0]["labelSelector"]["matchLabels"]["computegrid.io/job-id"] == "41"
    assert env_of(body)["COMPUTEGRID_NODE_RANK"] == {
        "fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
    assert env_of(body)["COMPUTEGRID_NUM_NODES"] == "2"
    assert container(body)["resources"]["limits"]["nvidia.com/gpu"] == "4"  # per pod


def test_a_site_holding_later_ranks_of_a_gang_tells_each_pod_its_rank() -> None:
    run = request(devices=1, model="T4", hosts=("gpu-c", "gpu-d"), ranks=(2, 3), nodes=4)
    command = container(wire(job_manifest(run)))["command"]
    assert command[:2] == ["bash", "-lc"]
    for index, rank in ((0, "2"), (1, "3")):  # the prelude, run by bash as the container would run it
        out = subprocess.run(["bash", "-c", command[2].replace("python train.py", "echo $COMPUTEGRID_NODE_RANK")],
                             env={"JOB_COMPLETION_INDEX": str(index), "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == rank
    with pytest.raises(SubmitRefused, match="rank"):
        job_manifest(request(devices=1, model="T4", hosts=("gpu-c", "gpu-d"), ranks=(2, 3), nodes=4, run=None,
                             image="trainer:1"))


def test_the_time_limit_is_the_jobs_active_deadline() -> None:
    assert wire(job_manifest(request(time_limit_s=600)))["spec"]["activeDeadlineSeconds"] == 600
    assert "activeDeadlineSeconds" not in wire(job_manifest(request(time_limit_s=None)))["spec"]


def test_an_image_without_run_keeps_the_images_own_command() -> None:
    main = container(wire(job_manifest(request(run=None, image="nvcr.io/nvidia/pytorch:24.01-py3"))))
    assert main["image"] == "nvcr.io/nvidia/pytorch:24.01-py3" and "command" not in main
    with pytest.raises(SubmitRefused, match="give `run`"):
        job_manifest(request(run=None, image=None))


def test_the_engines_own_variables_are_not_overridden_and_bad_names_are_refused() -> None:
    body = wire(job_manifest(request(envs={"COMPUTEGRID_JOB_ID": "999", "OK": "1"})))
    assert [e["name"] for e in container(body)["env"]].count("COMPUTEGRID_JOB_ID") == 1
    assert env_of(body)["COMPUTEGRID_JOB_ID"] == "41"
    with pytest.raises(SubmitRefused, match="environment variable"):
        job_manifest(request(envs={"1BAD=": "x"}))


@pytest.mark.parametrize(("model", "why"), [("A100-80G", "time-slicing"), ("Ascend910B", "vNPU"),
                                             ("MTT-S4000", "knows no way")])
def test_a_fraction_of_a_device_is_refused_saying_why(model: str, why: str) -> None:
    with pytest.raises(SubmitRefused, match="whole devices") as refused:
        job_manifest(request(devices=1, model=model, milli=500))
    assert why in str(refused.value)


def test_a_model_without_a_resource_name_is_refused() -> None:
    with pytest.raises(SubmitRefused, match="not a catalog accelerator"):
        job_manifest(request(devices=1, model="Z9000"))
    header = packaged_text("accelerators.csv").splitlines()[0]
    acme = parse_catalog(header + "\nX1,,acme,x,16,,,,,,,,test row\n")
    with pytest.raises(SubmitRefused, match="resource_names"):
        job_manifest(request(devices=1, model="X1"), catalog=acme)
    body = wire(job_manifest(request(devices=1, model="X1"), catalog=acme, resource_names={"acme": "acme.com/npu"}))
    assert container(body)["resources"]["limits"]["acme.com/npu"] == "1"


def test_resource_names_cover_every_catalog_vendor_and_can_be_overridden() -> None:
    for entry in default_catalog().models:
        name = resource_name_for(entry.model)
        domain, _, resource = name.partition("/")
        assert "." in domain and resource, name
    assert {"hygon", "enflame"} <= set(DEFAULT_RESOURCE_NAMES)  # vendors whose rows hold few figures so far
    assert resource_name_for("BI-V100") == "iluvatar.com/gpu"
    assert resource_name_for("BI-V100", resource_names={"iluvatar": "iluvatar.ai/gpu"}) == "iluvatar.ai/gpu"
    assert resource_name_for("MI300X") == "amd.com/gpu" and resource_name_for("MLU370-X8") == "cambricon.com/mlu"


# -- quantities

@pytest.mark.parametrize(("text", "milli"), [("7910m", 7910), ("8", 8000), ("0.5", 500), ("1500000u", 1500),
                                              ("250000000n", 250), ("1e1", 10000), ("2k", 2_000_000)])
def test_cpu_quantities(text: str, milli: int) -> None:
    assert quantity_milli(text) == milli
    assert parse_quantity(text) == client_parse_quantity(text)


@pytest.mark.parametrize(("text", "mib"), [("32Gi", 32768), ("64453796Ki", 62943), ("1Ti", 1048576),
                                            ("1000M", 953), ("268435456", 256), ("1.5Gi", 1536), ("1E", 953674316406)])
def test_memory_quantities(text: str, mib: int) -> None:
    assert quantity_mib(text) == mib
    assert parse_quantity(text) == client_parse_quantity(text)


@pytest.mark.parametrize("text", ["", "Gi", "12X", "1.2.3", "--1"])
def test_malformed_quantities_are_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)
    assert parse_quantity(3) == Decimal(3)


# -- nodes -> inventory

def node(name: str, *, labels: dict[str, str], allocatable: dict[str, str], ready: bool = True,
         cordoned: bool = False, taints: tuple[tuple[str, str], ...] = ()) -> Any:
    return k8s.V1Node(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1NodeSpec(unschedulable=cordoned or None,
                            taints=[k8s.V1Taint(key=k, effect=e) for k, e in taints] or None),
        status=k8s.V1NodeStatus(allocatable=allocatable, conditions=[
            k8s.V1NodeCondition(type="MemoryPressure", status="False"),
            k8s.V1NodeCondition(type="Ready", status="True" if ready else "Unknown")]))


def running_pod(node_name: str, limits: dict[str, str], phase: str = "Running") -> Any:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=f"p-{node_name}-{phase}", namespace="other"),
                     spec=k8s.V1PodSpec(node_name=node_name, containers=[k8s.V1Container(
                         name="c", resources=k8s.V1ResourceRequirements(requests=limits, limits=limits))]),
                     status=k8s.V1PodStatus(phase=phase))


def test_inventory_from_nodes_reads_allocatable_resources_labels_and_state() -> None:
    nodes = [
        node("ip-10-0-0-1.internal", labels={"kubernetes.io/hostname": "gpu-a", MODEL_LABEL: "A100-80G"},
             allocatable={"cpu": "7910m", "memory": "64453796Ki", "nvidia.com/gpu": "8", "pods": "110"},
             taints=(("nvidia.com/gpu", "NoSchedule"),)),  # tolerated by this backend's GPU pods
        node("gpu-b", labels={"kubernetes.io/hostname": "gpu-b", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
             allocatable={"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "4"}, cordoned=True),
        node("npu-1", labels={MODEL_LABEL: "Ascend910B"},
             allocatable={"cpu": "192", "memory": "1Ti", "huawei.com/Ascend910": "8"}, ready=False),
        node("cp-1", labels={"node-role.kubernetes.io/control-plane": ""}, allocatable={"cpu": "4", "memory": "8Gi"},
             taints=(("node-role.kubernetes.io/control-plane", "NoSchedule"),)),
        node("gpu-x", labels={}, allocatable={"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}),
    ]
    pods = [running_pod("ip-10-0-0-1.internal", {"cpu": "1500m", "memory": "1Gi", "nvidia.com/gpu": "3"}),
            running_pod("ip-10-0-0-1.internal", {"cpu": "4", "nvidia.com/gpu": "4"}, phase="Succeeded")]
    a, b, npu, cp, x = inventory_from_nodes(nodes, pods)
    assert (a.hostname, a.cpu_milli, a.memory_mb, a.state) == ("gpu-a", 7910, 62943, "up")
    assert [(d.index, d.model, d.source) for d in a.devices] == [(i, "A100-80G", "engine") for i in range(8)]
    assert [d.in_use for d in a.devices] == [True] * 3 + [False] * 5  # the finished pod holds nothing
    assert a.cpu_milli_free == 7910 - 1500
    assert (b.hostname, b.state, [d.model for d in b.devices]) == ("gpu-b", "drained", ["H100-80G"] * 4)
    assert b.cpu_milli_free == 64000
    assert (npu.hostname, npu.state, len(npu.devices), npu.memory_mb) == ("npu-1", "down", 8, 1048576)
    assert (cp.state, cp.devices) == ("drained", ())
    assert x.devices == ()  # GPUs no label names: not listed (the control plane needs a catalog model)
    # Without the cluster's pods the backend does not know what is in use, and says so with None.
    assert inventory_from_nodes(nodes[:1])[0].cpu_milli_free is None


def test_inventory_from_a_node_as_the_api_returns_it() -> None:
    raw = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "gpu-z", "labels": {"kubernetes.io/hostname": "gpu-z",
                                                    "nvidia.com/gpu.product": "Tesla-V100-SXM2-16GB",
                                                    "nvidia.com/gpu.memory": "16384", "nvidia.com/gpu.count": "8"},
                        "creationTimestamp": "2026-01-02T03:04:05Z"},
           "spec": {"podCIDR": "10.244.1.0/24"},
           "status": {"capacity": {"cpu": "96", "memory": "790724908Ki", "nvidia.com/gpu": "8"},
                      "allocatable": {"cpu": "95500m", "memory": "780000000Ki", "nvidia.com/gpu": "8"},
                      "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                      "lastHeartbeatTime": "2026-11-30T10:00:00Z",
                                      "lastTransitionTime": "2026-01-02T03:05:00Z"}]}}
    [inv] = inventory_from_nodes([parsed(raw, "V1Node")])
    assert (inv.hostname, inv.cpu_milli, inv.memory_mb, inv.state) == ("gpu-z", 95500, 761718, "up")
    assert {d.model for d in inv.devices} == {"V100-16G"} and len(inv.devices) == 8


def test_a_node_whose_gpus_are_time_sliced_lists_no_whole_gpus() -> None:
    shared = node("gpu-s", labels={"nvidia.com/gpu.product": "Tesla-T4-SHARED", "nvidia.com/gpu.replicas": "4",
                                   "nvidia.com/gpu.sharing-strategy": "time-slicing"},
                  allocatable={"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "8"})
    assert inventory_from_nodes([shared])[0].devices == ()


PRODUCTS = [
    ("NVIDIA-A100-SXM4-80GB", None, "A100-80G"), ("NVIDIA-A100-SXM4-40GB", None, "A100-40G"),
    ("NVIDIA-A100-PCIE-40GB", None, "A100-40G"), ("NVIDIA-A100-80GB-PCIe", None, "A100-80G"),
    ("NVIDIA-A100-SXM4", "81920", "A100-80G"), ("NVIDIA-A100-SXM4", None, None),
    ("A100-SXM4-40GB-MIG-1g.5gb", "5120", None), ("NVIDIA-A800-SXM4-80GB", None, "A800-80G"),
    ("NVIDIA-A800-40GB-PCIe", None, "A800-40G"),
    ("Tesla-V100-SXM2-16GB", None, "V100-16G"), ("Tesla-V100-SXM2-32GB", None, "V100-32G"),
    ("Tesla-T4", None, "T4"), ("Tesla-T4-SHARED", None, "T4"), ("Tesla-P100-PCIE-16GB", None, "P100-16G"),
    ("Tesla-K80", None, "K80"), ("NVIDIA-H100-80GB-HBM3", None, "H100-80G"), ("NVIDIA-H100-NVL", None, None),
    ("NVIDIA-H200", None, "H200-141G"), ("NVIDIA-H800", None, "H800-80G"), ("NVIDIA-H20", None, "H20"),
    ("NVIDIA-A10", None, "A10"), ("NVIDIA-A10G", None, None), ("NVIDIA-L4", None, "L4"), ("NVIDIA-L20", None, "L20"),
    ("NVIDIA-L40S", None, "L40S"), ("NVIDIA-L40", None, None), ("NVIDIA-GeForce-RTX-4090", None, "RTX4090"),
    ("NVIDIA-GeForce-RTX-4090-D", None, None), ("GeForce-GT-710", None, None),
]


@pytest.mark.parametrize(("product", "memory", "model"), PRODUCTS)
def test_nvidia_product_labels_map_to_catalog_models(product: str, memory: str | None, model: str | None) -> None:
    assert nvidia_product_model(product, memory) == model
    if model is not None:
        default_catalog().get(model)


def test_every_catalog_nvidia_model_has_a_product_label_case() -> None:
    nvidia = {e.model for e in default_catalog().models if e.vendor == "nvidia"}
    assert nvidia <= {model for _, _, model in PRODUCTS}


def test_amd_product_labels_and_the_model_label_win() -> None:
    assert amd_product_model("AMD_Instinct_MI300X_OAM") == "MI300X"
    assert amd_product_model("AMD_Instinct_MI325_OAM") is None
    both = {MODEL_LABEL: "A100-40G", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert node_model(both) == ("A100-40G", MODEL_LABEL, "A100-40G")
    assert node_model({MODEL_LABEL: "not-a-model", "nvidia.com/gpu.product": "Tesla-T4"}) == (
        "T4", "nvidia.com/gpu.product", "Tesla-T4")
    assert node_model({"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}) == (
        "MI300X", "amd.com/gpu.product-name", "AMD_Instinct_MI300X_OAM")


# -- jobs and pods -> status and usage

def job_json(*, conditions: tuple[dict[str, Any], ...] = (), suspend: bool | None = None,
             queue: str | None = None, active: int = 0, ready: int = 0, deleting: bool = False,
             deadline: int | None = 3600, start: bool = True, completion: bool = False) -> dict[str, Any]:
    labels = {"computegrid.io/job-id": "41", "computegrid.io/attempt": "1"}
    if queue:
        labels[QUEUE_LABEL] = queue
    meta: dict[str, Any] = {"name": "cg-41-1", "namespace": "computegrid", "labels": labels,
                            "creationTimestamp": "2026-11-30T09:59:00Z"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T10:05:00Z"
    status: dict[str, Any] = {"active": active, "ready": ready, "conditions": list(conditions)}
    if start:
        status["startTime"] = "2026-11-30T09:59:30Z"
    if completion:
        status["completionTime"] = "2026-11-30T10:10:00Z"
    spec: dict[str, Any] = {"backoffLimit": 0, "template": {"spec": {"containers": [{"name": "main", "image": "x"}],
                                                                     "restartPolicy": "Never"}}}
    if deadline:
        spec["activeDeadlineSeconds"] = deadline
    if suspend is not None:
        spec["suspend"] = suspend
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec, "status": status}


def condition(kind: str, reason: str = "", message: str = "", at: str = "2026-11-30T10:10:00Z") -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": at,
            "lastProbeTime": at}


def pod_json(index: int = 0, *, node: str | None = "gpu-a", phase: str = "Running", state: dict[str, Any] | None = None,
             scheduled: dict[str, Any] | None = None, hosts: tuple[str, ...] = ("gpu-a",),
             devices: int = 2) -> dict[str, Any]:
    parts = [{"rank": i, "hostname": h, "devices": list(range(devices)), "models": ["A100-80G"] * devices}
             for i, h in enumerate(hosts)]
    request_text = json.dumps({"cpu_milli": 2000, "memory_mb": 8192, "milli_per_device": 1000, "nodes": len(hosts),
                               "parts": parts})
    status: dict[str, Any] = {"phase": phase}
    if state is not None:
        status["containerStatuses"] = [{"name": "main", "image": "x", "imageID": "", "ready": phase == "Running",
                                        "restartCount": 0, "state": state}]
    if scheduled is not None:
        status["conditions"] = [scheduled]
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "x"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"cg-41-1-{index}-abcde", "uid": f"uid-{index}",
                         "creationTimestamp": "2026-11-30T09:59:31Z",
                         "labels": {"computegrid.io/job-id": "41", "computegrid.io/attempt": "1"},
                         "annotations": {COMPLETION_INDEX: str(index), REQUEST_ANNOTATION: request_text}},
            "spec": spec, "status": status}


RUNNING = {"running": {"startedAt": "2026-11-30T10:00:00Z"}}


def terminated(code: int, reason: str = "Error", end: str = "2026-11-30T10:09:59Z") -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": reason, "startedAt": "2026-11-30T10:00:00Z", "finishedAt": end}}


def status_of(job: dict[str, Any], *pods: dict[str, Any]) -> Any:
    return status_from_job(parsed(job, "V1Job"), [parsed(p, "V1Pod") for p in pods])


def test_no_job_is_unknown() -> None:
    assert status_from_job(None).state == EngineState.UNKNOWN


def test_a_suspended_job_waits_for_kueue() -> None:
    status = status_of(job_json(suspend=True, queue="team-a", start=False))
    assert status.state == EngineState.QUEUED and "Kueue" in status.reason and "team-a" in status.reason
    evicted = status_of(job_json(suspend=True, queue="team-a", conditions=(
        condition("Suspended", "JobSuspended", "Preempted to accommodate a higher priority Workload"),)))
    assert "Preempted" in evicted.reason


def test_a_pending_pod_says_why_it_waits() -> None:
    unschedulable = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}
    status = status_of(job_json(active=1), pod_json(node=None, phase="Pending", scheduled=unschedulable))
    assert status.state == EngineState.QUEUED
    assert status.reason == "not scheduled: Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    pulling = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"trainer:9\""}}
    assert status_of(job_json(active=1), pod_json(phase="Pending", state=pulling)).reason.startswith("ImagePullBackOff")
    assert "job controller" in status_of(job_json(active=0)).reason


def test_a_running_pod_makes_the_attempt_running_from_its_start() -> None:
    status = status_of(job_json(active=1, ready=1), pod_json(state=RUNNING))
    assert (status.state, status.started_ms) == (EngineState.RUNNING, T0_MS)


def test_a_complete_job_succeeded() -> None:
    status = status_of(job_json(conditions=(condition("Complete"),), completion=True),
                       pod_json(phase="Succeeded", state=terminated(0, "Completed")))
    assert (status.state, status.exit_code, status.started_ms) == (EngineState.SUCCEEDED, 0, T0_MS)
    assert status.ended_ms == T0_MS + 600_000


def test_a_failed_job_reports_the_pods_exit_code() -> None:
    failed = condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    status = status_of(job_json(conditions=(failed,)), pod_json(phase="Failed", state=terminated(7)))
    assert (status.state, status.exit_code, status.reason) == (EngineState.FAILED, 7, "exit code 7")
    oom = status_of(job_json(conditions=(failed,)), pod_json(phase="Failed", state=terminated(137, "OOMKilled")))
    assert (oom.exit_code, oom.reason) == (137, "exit code 137 (OOMKilled)")
    gang = status_of(job_json(conditions=(failed,)),
                     pod_json(0, phase="Succeeded", state=terminated(0, "Completed"), hosts=("gpu-a", "gpu-b")),
                     pod_json(1, node="gpu-b", phase="Failed", state=terminated(3), hosts=("gpu-a", "gpu-b")))
    assert gang.exit_code == 3
    bare = status_of(job_json(conditions=(condition("Failed", "PodFailurePolicy", "Container main failed"),)))
    assert (bare.exit_code, bare.reason) == (None, "PodFailurePolicy: Container main failed")
    evicted = pod_json(phase="Failed")
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    status = status_of(job_json(conditions=(failed,)), evicted)
    assert (status.exit_code, status.reason) == (None, "Evicted: The node was low on resource: memory.")


def test_a_job_past_its_deadline_failed_on_its_time_limit() -> None:
    deadline = condition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
    status = status_of(job_json(conditions=(deadline,), deadline=600))
    assert status.state == EngineState.FAILED and "time limit of 600 s" in status.reason


def test_a_job_being_deleted_is_cancelled() -> None:
    status = status_of(job_json(active=1, deleting=True), pod_json(state=RUNNING))
    assert (status.state, status.ended_ms) == (EngineState.CANCELLED, T0_MS + 300_000)


def test_usage_comes_from_the_pods_start_and_finish_times_and_requests() -> None:
    hosts = ("gpu-a", "gpu-b")
    pods = [parsed(pod_json(0, node="gpu-b", phase="Succeeded", state=terminated(0, "Completed"), hosts=hosts),
                   "V1Pod"),
            parsed(pod_json(1, node="gpu-a", state=RUNNING, hosts=hosts), "V1Pod"),
            parsed(pod_json(2, node=None, phase="Pending", hosts=("gpu-a", "gpu-b", "gpu-c")), "V1Pod")]
    now = T0_MS + 60_000
    usage = usage_from_pods(pods, now_ms=now)
    by_host = {h: [u for u in usage if u.hostname == h] for h in hosts}
    assert [(u.device_index, u.cpu_milli, u.share_milli, u.model) for u in by_host["gpu-b"]] == [
        (-1, 2000, 0, None), (0, 0, 1000, "A100-80G"), (1, 0, 1000, "A100-80G")]
    assert {(u.start_ms, u.end_ms) for u in by_host["gpu-b"]} == {(T0_MS, T0_MS + 599_000)}
    assert {(u.start_ms, u.end_ms) for u in by_host["gpu-a"]} == {(T0_MS, now)}  # still running: until now
    assert len(usage) == 6  # the pending pod held nothing yet
    # Where a node's name is not its kubernetes.io/hostname, the inventory's mapping attributes the pod.
    renamed = [parsed(pod_json(1, node="ip-10-0-0-2.internal", state=RUNNING, hosts=hosts), "V1Pod")]
    assert {u.hostname for u in usage_from_pods(renamed, now, {"ip-10-0-0-2.internal": "gpu-a"})} == {"gpu-a"}


def test_api_errors_become_one_line_messages() -> None:
    forbidden = ApiException(status=403, reason="Forbidden", body=json.dumps({
        "kind": "Status", "message": 'jobs.batch is forbidden: User "system:serviceaccount:cg:agent" cannot create '
                                    'resource "jobs" in API group "batch" in the namespace "computegrid"'}))
    text = api_error_message(forbidden, "create Job cg-1-1")
    assert text.startswith("Kubernetes API: could not create Job cg-1-1: 403 Forbidden: jobs.batch is forbidden")
    assert "\n" not in text
    assert api_error_message(ConnectionRefusedError(111, "Connection refused"), "list nodes") == (
        "Kubernetes API: could not list nodes: ConnectionRefusedError: [Errno 111] Connection refused")


# -- the backend's methods, with stand-ins for the client's API classes (not a server)

class StandInBatch:
    """Records calls the backend makes to BatchV1Api; returns canned client objects. Not an API server."""

    def __init__(self, create_error: ApiException | None = None, job: dict[str, Any] | None = None) -> None:
        self.create_error, self.job = create_error, job
        self.created: list[Any] = []
        self.deleted: list[tuple[str, str, str]] = []

    def create_namespaced_job(self, namespace: str, body: Any) -> Any:
        self.created.append(body)
        if self.create_error is not None:
            raise self.create_error
        return body

    def read_namespaced_job(self, name: str, namespace: str) -> Any:
        if self.job is None:
            raise ApiException(status=404, reason="Not Found")
        return parsed(self.job, "V1Job")

    def delete_namespaced_job(self, name: str, namespace: str, propagation_policy: str) -> None:
        self.deleted.append((name, namespace, propagation_policy))
        self.job = None


class StandInCore:
    """Returns canned pods and per-pod output for CoreV1Api's calls. Not an API server or a kubelet."""

    def __init__(self, pods: list[dict[str, Any]], output: dict[str, bytes]) -> None:
        self.pods, self.output = pods, output

    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        assert label_selector == "computegrid.io/job-id=41,computegrid.io/attempt=1"
        return k8s.V1PodList(items=[parsed(p, "V1Pod") for p in self.pods])

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str, limit_bytes: int | None,
                                _preload_content: bool) -> Any:
        assert container == "main" and _preload_content is False
        data = self.output[name]
        return type("Response", (), {"data": data[:limit_bytes] if limit_bytes else data})()


def backend(tmp_path: Path, batch: StandInBatch, core: StandInCore | None = None) -> KubernetesBackend:
    made = KubernetesBackend(work_dir=tmp_path, api_client=ApiClient())
    made.batch, made.core = batch, core or StandInCore([], {})
    made._node_labels = {"gpu-a": {}, "gpu-b": {}}
    return made


def test_submit_is_idempotent_on_409_and_refuses_what_the_server_rejects(tmp_path: Path) -> None:
    conflict = StandInBatch(ApiException(status=409, reason="Conflict"))
    assert backend(tmp_path, conflict).submit(request(devices=1, model="T4")) == "cg-41-1"
    invalid = ApiException(status=422, reason="Unprocessable Entity", body=json.dumps({
        "message": 'Job.batch "cg-41-1" is invalid: spec.template.spec.containers[0].image: Required value'}))
    with pytest.raises(SubmitRefused, match="422 Unprocessable Entity: Job.batch"):
        backend(tmp_path, StandInBatch(invalid)).submit(request())
    with pytest.raises(KubernetesApiError, match="500 Internal Server Error"):
        backend(tmp_path, StandInBatch(ApiException(status=500, reason="Internal Server Error"))).submit(request())
    sent = StandInBatch()
    backend(tmp_path, sent).submit(request(devices=1, model="T4"))
    assert wire(sent.created[0])["metadata"]["name"] == "cg-41-1"


def test_logs_of_a_gang_follow_rank_order_and_byte_offsets(tmp_path: Path) -> None:
    hosts = ("gpu-a", "gpu-b")
    pods = [pod_json(0, state=RUNNING, hosts=hosts), pod_json(1, node="gpu-b", state=RUNNING, hosts=hosts)]
    core = StandInCore(pods, {"cg-41-1-0-abcde": b"zero\n", "cg-41-1-1-abcde": b"one\n"})
    made = backend(tmp_path, StandInBatch(job=job_json(active=2)), core)
    assert made.logs("cg-41-1", 0).data == b"----- rank 0 -----\nzero\n"  # rank 1 waits for rank 0 to finish
    core.pods[0] = pod_json(0, phase="Succeeded", state=terminated(0, "Completed"), hosts=hosts)
    whole = b"----- rank 0 -----\nzero\n----- rank 1 -----\none\n"
    assert made.logs("cg-41-1", 0).data == whole
    read = made.logs("cg-41-1", 20)
    assert (read.data, read.next_offset) == (whole[20:], len(whole))
    assert made.logs("cg-41-1", len(whole)).data == b""


def test_cancel_deletes_the_job_and_keeps_its_outcome_usage_and_output(tmp_path: Path) -> None:
    batch = StandInBatch(job=job_json(active=1, ready=1))
    core = StandInCore([pod_json(state=RUNNING)], {"cg-41-1-0-abcde": b"begun\n"})
    made = backend(tmp_path, batch, core)
    made.cancel("cg-41-1")
    assert batch.deleted == [("cg-41-1", "computegrid", "Background")]
    status = made.status("cg-41-1")
    assert (status.state, status.started_ms) == (EngineState.CANCELLED, T0_MS)
    assert made.logs("cg-41-1", 0).data == b"begun\n"
    assert [u.device_index for u in made.usage("cg-41-1")] == [-1, 0, 1]
    assert made.submit(request()) == "cg-41-1" and batch.created == []  # never started again
    again = backend(tmp_path, StandInBatch())  # a restarted agent finds what the cancel left
    assert again.status("cg-41-1").state == EngineState.CANCELLED
    assert again.status("cg-99-1").state == EngineState.UNKNOWN


def test_the_backend_loads_through_get_backend_and_rejects_declared_devices(tmp_path: Path) -> None:
    made = get_backend("kubernetes", work_dir=tmp_path, api_client=ApiClient(), namespace="site-a", queue="q")
    assert made.name == "kubernetes" and made.engine_id(5, 2) == "cg-5-2"
    with pytest.raises(ValueError, match="declared devices"):
        create(work_dir=tmp_path, api_client=ApiClient(), declared=[object()])
    with pytest.raises(ValueError, match="unexpected keyword"):
        create(work_dir=tmp_path, api_client=ApiClient(), namspace="typo")


def test_the_module_imports_without_the_client_and_says_what_is_missing() -> None:
    code = ("import sys; sys.modules['kubernetes'] = None\n"
            "import computegrid.backends.kubernetes as m\n"
            "try:\n    m.create(work_dir='/tmp/x')\nexcept ValueError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'computegrid[kubernetes]'" in out.stdout


# -- the real client, pointed at no server

def test_without_a_reachable_server_each_call_fails_with_one_line(tmp_path: Path) -> None:
    """The official client, unpatched, against a closed local port: what an agent sees when the API is down."""
    configuration = k8s.Configuration()
    configuration.host = "http://127.0.0.1:1"
    made = KubernetesBackend(work_dir=tmp_path, api_client=ApiClient(configuration))
    made._node_labels = {"gpu-a": {}}
    for action, call in (("list nodes", made.inventory), ("read Job cg-1-1", lambda: made.status("cg-1-1")),
                         ("create Job cg-41-1", lambda: made.submit(request())),
                         ("list Jobs", made.active_ids), ("list the pods", lambda: made.usage("cg-1-1"))):
        with pytest.raises(KubernetesApiError) as failed:
            call()
        assert str(failed.value).startswith(f"Kubernetes API: could not {action}"), str(failed.value)
        assert "Connection refused" in str(failed.value) and "\n" not in str(failed.value)


def test_the_create_request_the_client_would_send(tmp_path: Path) -> None:
    """The client's HTTP request for a submit, recorded at its REST layer and never sent (no response is made up)."""
    configuration = k8s.Configuration()
    configuration.host = "https://api.cluster.example:6443"
    client = ApiClient(configuration)
    recorded: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        recorded.append((args, kwargs))
        raise ConnectionRefusedError(111, "recorded, not sent")

    client.rest_client.request = record  # type: ignore[method-assign]
    made = KubernetesBackend(work_dir=tmp_path, api_client=client, namespace="site-a", queue="team-a")
    made._node_labels = {"gpu-a": {}}
    with pytest.raises(KubernetesApiError, match="recorded, not sent"):
        made.submit(request(devices=1, model="L40S"))
    [(args, kwargs)] = recorded
    assert args[:2] == ("POST", "https://api.cluster.example:6443/apis/batch/v1/namespaces/site-a/jobs")
    assert kwargs["body"] == wire(job_manifest(request(devices=1, model="L40S"), namespace="site-a", queue="team-a"))
