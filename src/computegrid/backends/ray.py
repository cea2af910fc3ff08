"""The Ray backend: each attempt is a job submitted through a Ray cluster's Jobs API.

Nodes are the cluster's alive Ray nodes. A node is named by a `cg_node_<name>` custom resource when it has
one (scripts/ray-up.sh gives the head `cg_node_head` and the second node `cg_node_worker1`), else by its Ray
node id. Accelerators are Ray custom resources mapped to catalog models (`resource_models`, default
{"GPU_A100": "A100-80G"}); a node with {"GPU_A100": 2} lists devices 0 and 1 of model A100-80G.

The engine id is the job's submission id, `cg-<job>-<attempt>`, so a second submit finds the first. The job
runs ray_launcher.py as its driver (shipped as source in the runtime env: the cluster needs only Ray); the
driver places one placement-group bundle per part (STRICT_SPREAD across nodes for a gang), each bundle
pinned to its part's node, and runs the part's command there. See docs/backends/ray.md.

The agent never joins the cluster (no `ray.init()`): jobs go through `ray.job_submission`, inventory through
the dashboard's HTTP API. `ray` is imported only when a job call is first made.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from computegrid.backends import ray_launcher
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
)
from computegrid.core.capabilities import EngineCapabilities

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_MODELS = {"GPU_A100": "A100-80G"}
NODE_PREFIX = "cg_node_"
PIN = 0.001  # how much of a node's cg_node_<name> resource a bundle takes to land on that node
META_KEY = "computegrid"
ENTRYPOINT = ("{python} -c \"import os; exec(compile(os.environ['" + ray_launcher.SOURCE_ENV
              + "'], 'computegrid_ray_launcher.py', 'exec'))\"")
# Lines the Jobs API writes at the top of every job's log, before the driver's own output.
_PREAMBLE = ("Runtime env is setting up.", "Running entrypoint for job ")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _camel(name: str) -> str:
    """The dashboard's key mangling (ray.dashboard.utils.to_camel_case): GPU_A100 -> GPUA100."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _strip_preamble(text: str) -> str:
    while True:
        line, newline, rest = text.partition("\n")
        if newline and (_PREAMBLE[0] in line or line.startswith(_PREAMBLE[1])):
            text = rest
        else:
            return text


@dataclass
class _Node:
    hostname: str
    node_id: str
    total: dict[str, float]
    pin: dict[str, float] = field(default_factory=dict)  # bundle resources that land on this node
    selector: dict[str, str] = field(default_factory=dict)  # or a bundle label selector, when no cg_node_


class RayBackend:
    name = "ray"
    rank_logs = False  # one driver log: a gang's lines are prefixed [rank R] by the launcher

    @property
    def capabilities(self) -> EngineCapabilities:
        """Shares (fractional custom resources), commands not images, gangs (a placement group), and the
        models `resource_models` maps a Ray resource to."""
        return EngineCapabilities(shares=True, images=False, gangs=True,
                                  models=frozenset(self.resource_models.values()))

    def __init__(self, work_dir: str | Path, address: str = DEFAULT_ADDRESS,
                 resource_models: dict[str, str] | None = None, python: str = "python",
                 id_prefix: str = "cg", timeout_s: float = 10.0):
        self.work_dir = Path(work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.address = address.rstrip("/")
        self.resource_models = dict(resource_models if resource_models is not None else DEFAULT_MODELS)
        self.model_resources = {model: resource for resource, model in self.resource_models.items()}
        self.python = python
        self.id_prefix = id_prefix
        self.http = httpx.Client(base_url=self.address, timeout=timeout_s)
        self._client: Any = None
        self._launcher = Path(ray_launcher.__file__).read_text()
        self._placed: dict[str, int | None] = {}  # engine id -> when Ray placed its bundles (epoch ms)
        self._logs: OrderedDict[str, bytes] = OrderedDict()  # engine id -> the log as last fetched

    # -- the cluster
    @property
    def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.address)
        return self._client

    def _get(self, path: str) -> Any:
        response = self.http.get(path)
        response.raise_for_status()
        return response.json()

    def _nodes(self) -> list[_Node]:
        body = self._get("/api/v0/nodes?limit=10000")
        nodes = []
        for raw in body["data"]["result"]["result"]:
            if raw.get("state") != "ALIVE":
                continue
            total = {k: float(v) for k, v in (raw.get("resources_total") or {}).items()}
            names = sorted(k for k in total if k.startswith(NODE_PREFIX))
            if names:
                nodes.append(_Node(names[0].removeprefix(NODE_PREFIX), raw["node_id"], total, pin={names[0]: PIN}))
            else:
                nodes.append(_Node(raw["node_id"], raw["node_id"], total,
                                   selector={"ray.io/node-id": raw["node_id"]}))
        return sorted(nodes, key=lambda n: (n.hostname != "head", n.hostname))

    def _used(self) -> dict[str, dict[str, float]] | None:
        """Per node id, how much of each resource (by its dashboard-mangled name) is held; None if unknown."""
        try:
            report = self._get("/api/cluster_status")["data"]["clusterStatus"]["loadMetricsReport"]
            return {node: {k: float(v[0]) for k, v in usage.items()}
                    for node, usage in (report.get("usageByNode") or {}).items()}
        except (httpx.HTTPError, KeyError, TypeError, ValueError, IndexError):
            return None

    def inventory(self) -> list[Inventory]:
        nodes = self._nodes()
        used = self._used()
        held = self._held_by_us() if used and any(
            used.get(n.node_id, {}).get(_camel(r), 0) > 0 for n in nodes for r in self.resource_models) else {}
        inventories = []
        for node in nodes:
            node_used = (used or {}).get(node.node_id, {})
            devices: list[InventoryDevice] = []
            for resource, model in sorted(self.resource_models.items()):
                count = int(node.total.get(resource, 0))
                indices = list(range(len(devices), len(devices) + count))
                busy = min(count, math.ceil(node_used.get(_camel(resource), 0) - 1e-9))
                ours = [i for i in indices if i in held.get(node.hostname, set())][:busy]
                others = [i for i in indices if i not in ours][:busy - len(ours)]
                devices += [InventoryDevice(i, model, None, "engine", in_use=i in ours or i in others) for i in indices]
            cpu_milli = int(node.total.get("CPU", 0) * 1000)
            free = max(0, cpu_milli - int(node_used.get("CPU", 0) * 1000)) if used is not None else None
            inventories.append(Inventory(hostname=node.hostname, cpu_milli=cpu_milli,
                                         memory_mb=int(node.total.get("memory", 0)) // (1024 * 1024),
                                         devices=tuple(devices), cpu_milli_free=free))
        return inventories

    def _held_by_us(self) -> dict[str, set[int]]:
        held: dict[str, set[int]] = {}
        for job in self._our_jobs(active_only=True):
            for _, host, indices, _ in self._meta(job).get("parts", []):
                held.setdefault(host, set()).update(int(i) for i in indices)
        return held

    def telemetry(self) -> list[dict[str, Any]]:
        return []

    # -- jobs
    def engine_id(self, job_id: int, attempt: int) -> str:
        return f"{self.id_prefix}-{job_id}-{attempt}"

    def _job(self, engine_id: str) -> Any:
        """The job's JobDetails, or None when the cluster never saw it."""
        try:
            return self.client.get_job_info(engine_id)
        except RuntimeError as error:
            if "status code 404" in str(error) or "does not exist" in str(error):
                return None
            raise

    def _our_jobs(self, active_only: bool = False) -> list[Any]:
        jobs = [job for job in self.client.list_jobs()
                if (job.submission_id or "").startswith(f"{self.id_prefix}-") and META_KEY in (job.metadata or {})]
        if active_only:
            jobs = [job for job in jobs if str(job.status.value) in ("PENDING", "RUNNING")]
        return jobs

    @staticmethod
    def _meta(job: Any) -> dict[str, Any]:
        try:
            meta: dict[str, Any] = json.loads((job.metadata or {}).get(META_KEY, "{}"))
            return meta
        except ValueError:
            return {}

    def _ray_resources(self, run: RunRequest, node: _Node, index: int) -> dict[str, float]:
        part = run.parts[index]
        wanted: dict[str, float] = {}
        if run.cpu_milli > 0:
            wanted["CPU"] = run.cpu_milli / 1000
        if run.memory_mb > 0:
            wanted["memory"] = float(run.memory_mb * 1024 * 1024)
        per_model: dict[str, int] = {}
        for model in part.device_models or tuple("" for _ in part.device_indices):
            if not model:
                raise SubmitRefused(f"rank {part.rank} asks for devices {list(part.device_indices)} on "
                                    f"{part.hostname} without naming their model")
            if model not in self.model_resources:
                raise SubmitRefused(f"no Ray resource is mapped to model {model} (resource_models: "
                                    f"{json.dumps(self.resource_models)})")
            per_model[self.model_resources[model]] = per_model.get(self.model_resources[model], 0) + 1
        for resource, count in per_model.items():
            # Ray resources are fungible counts: a share of one device is a fraction of one unit; shares of
            # several devices are granted as whole units (Ray takes only whole numbers above 1).
            share = run.milli_per_device / 1000 if run.milli_per_device else 1.0
            wanted[resource] = round(share, 4) if count == 1 and share < 1 else float(count)
        wanted.update(node.pin)
        return wanted

    def _check_fits(self, run: RunRequest, nodes: dict[str, _Node], wants: list[dict[str, float]]) -> None:
        for part, want in zip(run.parts, wants, strict=True):
            node = nodes[part.hostname]
            short = {k: v for k, v in want.items() if v > node.total.get(k, 0) + 1e-9}
            if not short:
                continue
            biggest = {k: max((n.total.get(k, 0) for n in nodes.values()), default=0) for k in short}
            raise SubmitRefused(
                f"rank {part.rank} asks Ray for {_fmt(want)} on {part.hostname}, which has "
                f"{_fmt({k: node.total.get(k, 0) for k in short})} in all; the largest Ray node has "
                f"{_fmt(biggest)}: it would wait forever")

    def submit(self, run: RunRequest) -> str:
        engine_id = self.engine_id(run.job_id, run.attempt)
        if self._job(engine_id) is not None:
            return engine_id  # submitted before: never start an attempt twice
        if run.run is None or run.image is not None:
            raise SubmitRefused("the ray backend runs commands, not container images: give `run`, leave out `image`")
        if not run.parts:
            raise SubmitRefused("the request names no node to run on")
        nodes = {n.hostname: n for n in self._nodes()}
        missing = [p.hostname for p in run.parts if p.hostname not in nodes]
        if missing:
            raise SubmitRefused(f"no alive Ray node is named {', '.join(missing)} (alive: {', '.join(nodes)})")
        wants = [self._ray_resources(run, nodes[p.hostname], i) for i, p in enumerate(run.parts)]
        self._check_fits(run, nodes, wants)
        spread = len(run.parts) > 1 and len({p.hostname for p in run.parts}) == len(run.parts)
        env = dict(run.envs)
        env.update({"COMPUTEGRID_JOB_ID": str(run.job_id), "COMPUTEGRID_ATTEMPT": str(run.attempt),
                    "COMPUTEGRID_NUM_NODES": str(run.nodes)})
        spec = {
            "engine_id": engine_id, "run": run.run, "workdir": run.workdir, "env": env,
            "strategy": "STRICT_SPREAD" if spread else "PACK",
            "ranks": [{"rank": p.rank, "host": p.hostname, "devices": list(p.device_indices), "resources": want,
                       "label_selector": nodes[p.hostname].selector} for p, want in zip(run.parts, wants, strict=True)],
        }
        meta = {"job_id": run.job_id, "attempt": run.attempt, "cpu_milli": run.cpu_milli,
                "milli_per_device": run.milli_per_device,
                "parts": [[p.rank, p.hostname, list(p.device_indices), list(p.device_models)] for p in run.parts]}
        try:
            self.client.submit_job(
                entrypoint=ENTRYPOINT.format(python=self.python), submission_id=engine_id,
                runtime_env={"env_vars": {ray_launcher.SPEC_ENV: json.dumps(spec),
                                          ray_launcher.SOURCE_ENV: self._launcher}},
                metadata={META_KEY: json.dumps(meta), "name": run.name or engine_id})
        except RuntimeError:
            if self._job(engine_id) is not None:
                return engine_id  # a concurrent submit won
            raise
        return engine_id

    def _placed_ms(self, engine_id: str, final: bool = False) -> int | None:
        """When Ray placed the attempt's bundles: the launcher prints it near the top of the log."""
        if engine_id in self._placed:
            return self._placed[engine_id]
        for line in self._fetch_logs(engine_id, final).decode(errors="replace").splitlines()[:50]:
            if line.startswith(ray_launcher.PLACED):
                try:
                    self._placed[engine_id] = int(line.removeprefix(ray_launcher.PLACED).strip())
                    return self._placed[engine_id]
                except ValueError:
                    break
        if final:
            self._placed[engine_id] = None  # it never was; do not read the log again
        return None

    def status(self, engine_id: str) -> ExecStatus:
        job = self._job(engine_id)
        if job is None:
            return ExecStatus(EngineState.UNKNOWN)
        state = str(job.status.value)
        if state == "PENDING":
            return ExecStatus(EngineState.QUEUED, reason=job.message or "the Ray job is pending")
        started = self._placed_ms(engine_id, final=state != "RUNNING")
        ended = int(job.end_time) if job.end_time else None
        code = job.driver_exit_code
        if state == "RUNNING":
            if started is None:
                return ExecStatus(EngineState.QUEUED, reason="waiting for Ray to place the attempt's resources")
            return ExecStatus(EngineState.RUNNING, started_ms=started)
        if started is None and ended is not None:
            started = ended if state != "STOPPED" else None
        if state == "SUCCEEDED":
            return ExecStatus(EngineState.SUCCEEDED, 0 if code is None else int(code), started, ended, "exit code 0")
        if state == "STOPPED":
            return ExecStatus(EngineState.CANCELLED, None if code is None else int(code), started, ended,
                              "stopped on request")
        message = (job.message or "").splitlines()
        reason = f"exit code {code}" if code is not None else (message[0] if message else "the Ray job failed")
        return ExecStatus(EngineState.FAILED, None if code is None else int(code), started, ended, reason)

    def cancel(self, engine_id: str) -> None:
        if self._job(engine_id) is not None:
            self.client.stop_job(engine_id)

    def _fetch_logs(self, engine_id: str, final: bool = False) -> bytes:
        """The job's log without the Jobs API's preamble; while the job runs, only up to its last newline
        (so a line that is still being written is never handed out in two different shapes)."""
        try:
            text = self.client.get_job_logs(engine_id)
        except RuntimeError:
            return b""
        data = _strip_preamble(str(text)).encode()
        cut = data.rfind(b"\n") + 1
        if cut < len(data) and not final:
            job = self._job(engine_id)
            if job is None or str(job.status.value) in ("PENDING", "RUNNING"):
                data = data[:cut]
        self._logs[engine_id] = data
        self._logs.move_to_end(engine_id)
        while len(self._logs) > 32:
            self._logs.popitem(last=False)
        return data

    def logs(self, engine_id: str, offset: int, rank: int | None = None) -> LogRead:
        """Every rank's output, from the one driver log (`rank` other than None reads nothing)."""
        if rank is not None:
            return LogRead(data=b"", next_offset=offset)
        data = self._logs.get(engine_id, b"")
        if offset >= len(data):  # the log only grows: fetch again once the last copy is read
            data = self._fetch_logs(engine_id)
        chunk = data[offset:offset + MAX_LOG_READ]
        return LogRead(data=chunk, next_offset=offset + len(chunk))

    def usage(self, engine_id: str) -> list[UsageSlice]:
        job = self._job(engine_id)
        if job is None:
            return []
        start = self._placed_ms(engine_id, final=str(job.status.value) not in ("PENDING", "RUNNING"))
        if start is None:
            return []
        end = int(job.end_time) if job.end_time else _now_ms()
        meta = self._meta(job)
        slices = []
        for _, host, indices, models in meta.get("parts", []):
            slices.append(UsageSlice(-1, None, 0, int(meta.get("cpu_milli", 0)), start, end, host))
            for index, model in zip(indices, models, strict=True):
                slices.append(UsageSlice(int(index), model or None, int(meta.get("milli_per_device", 0)), 0,
                                         start, end, host))
        return slices

    def active_ids(self) -> list[str]:
        return sorted(job.submission_id for job in self._our_jobs(active_only=True))

    def renew_lease(self, term_ms: int, kill_ms: int) -> None:
        """Ray keeps its jobs without the agent; a returning agent stops those no longer assigned to it."""


def _fmt(resources: dict[str, float]) -> str:
    shown = {k: (round(v / 2**20) if k == "memory" else (int(v) if float(v).is_integer() else v))
             for k, v in resources.items()}
    return json.dumps(shown).replace('"memory": ', '"memory MiB": ')


def create(**options: Any) -> RayBackend:
    return RayBackend(**options)
