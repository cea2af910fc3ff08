"""An in-process API over a real database, with two tenants, two providers and a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import accounts, sites
from computegrid.services.clock import ManualClock
from computegrid.services.principal import Principal
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database
from computegrid.store.models import Base


@dataclass
class World:
    db: Database
    clock: ManualClock
    app_client: TestClient
    keys: dict[str, str]
    scheduler: Scheduler

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.as_(who), **kwargs.pop("headers", {})}
        return self.app_client.request(method, path, headers=headers, **kwargs)

    def counts(self) -> dict[str, int]:
        """Rows per table: a request that fails must leave these unchanged."""
        with self.db.sessions() as session:
            return {t.name: session.scalar(select(func.count()).select_from(t)) or 0
                    for t in Base.metadata.sorted_tables}

    def register_node(self, who: str, site: str, name: str, *, cpus: int = 8, memory_mb: int = 32768,
                      devices: list[dict[str, Any]] | None = None) -> int:
        response = self.call(who, "POST", "/v1/agent/register", json={
            "site": site, "name": name, "cpu_milli": cpus * 1000, "memory_mb": memory_mb, "devices": devices or []})
        assert response.status_code == 200, response.text
        return int(response.json()["node_id"])


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    clock = ManualClock()
    catalog = default_catalog()
    now = clock.now_ms()
    keys: dict[str, str] = {}
    with db.transaction() as session:
        for tenant in ("alpha", "beta"):
            accounts.create_tenant(session=session, name=tenant, now_ms=now)
        for provider in ("p1", "p2"):
            accounts.create_provider(session=session, name=provider, now_ms=now)
        op, key = accounts.create_user(session=session, name="op", role="operator", tenant="alpha", now_ms=now)
        keys["op"] = key.token
        for name, role, tenant, provider in (("alice", "tenant", "alpha", None), ("bob", "tenant", "beta", None),
                                             ("prov1", "provider", None, "p1"), ("prov2", "provider", None, "p2")):
            _, key = accounts.create_user(session=session, name=name, role=role, tenant=tenant, provider=provider,
                                          now_ms=now)
            keys[name] = key.token
        operator = Principal(op.id, "op", "operator", op.tenant_id, None)
        sites.create_site(session=session, principal=operator, name="s1", region="yangtze-delta", tier="core",
                          backend="local", electricity_fen_per_kwh="60", provider="p1", now_ms=now)
        sites.create_site(session=session, principal=operator, name="s2", region="guizhou", tier="hub",
                          backend="local", electricity_fen_per_kwh="35", provider="p2", now_ms=now)
    scheduler = Scheduler(db=db, policy=get_policy("first-fit"), catalog=catalog, clock=clock,
                          heartbeat_timeout_ms=30_000)
    state = AppState(db=db, catalog=catalog, clock=clock, scheduler_wake=scheduler.wake)
    with TestClient(create_app(state)) as client:
        yield World(db=db, clock=clock, app_client=client, keys=keys, scheduler=scheduler)
