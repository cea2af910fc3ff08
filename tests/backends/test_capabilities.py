"""Each backend's declared capabilities match its refusals: a request they exclude is one it refuses,
and a request they allow is one it takes (up to the point where the engine itself would be called)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from computegrid.agent.agent import Agent
from computegrid.backends.base import InventoryDevice, NodePart, RunRequest, SubmitRefused
from computegrid.backends.local import LocalBackend
from computegrid.backends.ray import RayBackend, _Node
from computegrid.backends.slurm import SlurmBackend
from computegrid.core.capabilities import ANY, EngineCapabilities
from computegrid.core.catalog import default_catalog
from computegrid.services import bootstrap
from computegrid.store.db import Database
from computegrid.store.models import Site

_ids = itertools.count(1)


class _Engine(Exception):
    """Raised where the backend would call its engine: every check before it passed."""


def request(*, share: bool = False, image: bool = False, nodes: int = 1, model: str = "T4",
            parts: int | None = None) -> RunRequest:
    """A probe: one T4 (or half of one) per node, `nodes` ranks, `parts` of them on this site."""
    count = nodes if parts is None else parts
    return RunRequest(job_id=next(_ids), attempt=1, nodes=nodes, run="true", image="busybox:1" if image else None,
                      workdir=None, envs={}, milli_per_device=500 if share else 1000, cpu_milli=1000, memory_mb=512,
                      parts=tuple(NodePart(rank=r, hostname=f"h{r}", device_indices=(0,), device_models=(model,))
                                  for r in range(count)))


def excluded(caps: EngineCapabilities, run: RunRequest) -> bool:
    models = {m for p in run.parts for m in p.device_models}
    return caps.refusal(milli_per_device=run.milli_per_device, image=run.image is not None, nodes=run.nodes,
                        models=models) is not None


def refuses(submit: Any, run: RunRequest) -> bool:
    try:
        submit(run)
    except SubmitRefused:
        return True
    except _Engine:
        return False
    return False


PROBES = {
    "whole device": {},
    "device share": {"share": True},
    "container image": {"image": True},
    "gang": {"nodes": 2},
    "image gang": {"nodes": 2, "image": True},
    "other model": {"model": "A100-80G"},
}


@pytest.mark.parametrize("probe", PROBES)
def test_local_capabilities_match_its_refusals(tmp_path: Path, probe: str) -> None:
    backend = LocalBackend(tmp_path, declared=[InventoryDevice(index=0, model="T4", memory_gb=16.0)], hostname="h0")
    # A local agent drives one node, so it holds one part of a gang: the rest run under other agents.
    run = request(parts=1, **PROBES[probe])
    assert excluded(backend.capabilities, run) == refuses(backend.submit, run)


@pytest.mark.parametrize("probe", PROBES)
def test_slurm_capabilities_match_its_refusals(tmp_path: Path, probe: str) -> None:
    backend = SlurmBackend(tmp_path, gres_models={"tesla_t4": "T4"})

    def submit(run: RunRequest) -> None:
        def engine() -> None:
            raise _Engine
        backend._lock = engine  # type: ignore[method-assign]  # sbatch is next: stop before it
        try:
            backend.submit(run)
        except _Engine:
            backend._gres(run)  # what _sbatch_args asks of the request
            raise

    run = request(**PROBES[probe])
    assert backend.capabilities.models == frozenset({"T4"})
    assert excluded(backend.capabilities, run) == refuses(submit, run)


class _RayJobs:
    def submit_job(self, **kwargs: Any) -> str:
        raise _Engine


@pytest.mark.parametrize("probe", PROBES)
def test_ray_capabilities_match_its_refusals(tmp_path: Path, probe: str) -> None:
    backend = RayBackend(tmp_path, resource_models={"GPU_T4": "T4"})
    backend._client = _RayJobs()
    backend._job = lambda engine_id: None  # type: ignore[method-assign]
    backend._nodes = lambda: [_Node(hostname=f"h{r}", node_id=f"id{r}",  # type: ignore[method-assign]
                                    total={"CPU": 64.0, "memory": 2.0**40, "GPU_T4": 4.0}) for r in range(2)]
    run = request(**PROBES[probe])
    assert excluded(backend.capabilities, run) == refuses(backend.submit, run)


@pytest.mark.parametrize("probe", [p for p in PROBES if p != "other model"])  # models: None (see below)
def test_kubernetes_capabilities_match_its_refusals(probe: str) -> None:
    kubernetes = pytest.importorskip("computegrid.backends.kubernetes")
    caps = kubernetes.KubernetesBackend.capabilities
    run = request(**PROBES[probe])
    assert excluded(caps, run) == refuses(lambda r: kubernetes.job_manifest(r, catalog=default_catalog()), run)


def test_kubernetes_models_are_those_its_inventory_can_list() -> None:
    """models None: the inventory lists only devices of models with a resource name, and those it takes."""
    kubernetes = pytest.importorskip("computegrid.backends.kubernetes")
    assert kubernetes.KubernetesBackend.capabilities.models is None
    run = request(model="MI300X")  # an AMD model: amd.com/gpu
    assert not refuses(lambda r: kubernetes.job_manifest(r, catalog=default_catalog()), run)


def test_capabilities_round_trip_and_undeclared_means_any() -> None:
    caps = EngineCapabilities(shares=False, images=True, gangs=True, models=frozenset({"T4", "V100"}))
    assert EngineCapabilities.from_json(caps.to_json()) == caps
    assert EngineCapabilities.from_json("") == ANY
    assert ANY.refusal(milli_per_device=500, image=True, nodes=4, models={"T4"}) is None
    assert caps.refusal(milli_per_device=500, image=False, nodes=1) == "device shares"
    assert caps.refusal(milli_per_device=1000, image=False, nodes=1, models={"A100-80G"}) == "model A100-80G"
    with pytest.raises(ValueError, match="unknown capability"):
        EngineCapabilities.from_dict({"shares": True, "gpus": 1})


def test_agent_declares_its_engine_when_it_registers(db: Database, tmp_path: Path) -> None:
    from computegrid.api.app import create_app
    from computegrid.api.deps import AppState
    from computegrid.services.clock import SystemClock
    from tests.backends.test_agent_reattach import in_process_client

    clock = SystemClock()
    with db.transaction() as session:
        bootstrap.ensure_platform(session=session, now_ms=clock.now_ms(), site=bootstrap.LocalSite())
        key = bootstrap.key_for(session=session, user_name=bootstrap.AGENT_USER, existing=None,
                                now_ms=clock.now_ms())[0]
    with db.sessions() as session:
        assert session.query(Site).filter_by(name="local").one().capabilities == ""  # not declared yet
    app = create_app(AppState(db=db, catalog=default_catalog(), clock=clock))
    Agent(in_process_client(app, key), LocalBackend(tmp_path), site="local", node_name="n1").register()
    with db.sessions() as session:
        stored = session.query(Site).filter_by(name="local").one().capabilities
    assert EngineCapabilities.from_json(stored) == LocalBackend.capabilities
