"""Prometheus metrics: request counters kept in memory, pool and job gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from computegrid.core.jobs import JobState
from computegrid.store.models import Device, Job, Node

if TYPE_CHECKING:
    from computegrid.api.deps import AppState


class StoreCollector(Collector):
    def __init__(self, state: AppState):
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.state.db.reading() as session:
            jobs = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            nodes = dict(session.execute(select(Node.state, func.count()).group_by(Node.state)).all())
            devices = session.execute(select(Device.model, Device.health, func.count())
                                      .group_by(Device.model, Device.health)).all()
        g = GaugeMetricFamily("computegrid_jobs", "Jobs by state", labels=["state"])
        for job_state in JobState:
            g.add_metric([job_state.value], jobs.get(job_state.value, 0))
        yield g
        g = GaugeMetricFamily("computegrid_nodes", "Nodes by state", labels=["state"])
        for node_state in ("up", "down"):
            g.add_metric([node_state], nodes.get(node_state, 0))
        yield g
        g = GaugeMetricFamily("computegrid_devices", "Devices by model and health", labels=["model", "health"])
        for model, health, count in devices:
            g.add_metric([model, health], count)
        yield g


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter("computegrid_http_requests", "HTTP requests", ["method", "status"],
                                registry=registry)
        self.latency = Histogram("computegrid_http_request_seconds", "HTTP request latency", ["method"],
                                 registry=registry)
        self.submitted = Counter("computegrid_jobs_submitted", "Jobs accepted", registry=registry)


def registry_for(state: AppState) -> CollectorRegistry:
    assert state.registry is not None, "create_app sets the registry"
    return state.registry
