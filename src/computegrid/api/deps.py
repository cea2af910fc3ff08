"""Typed dependencies: the application state and the current principal."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from prometheus_client import CollectorRegistry

from computegrid.api.metrics import RequestMetrics
from computegrid.core.catalog import Catalog
from computegrid.core.placement.base import RttTable
from computegrid.core.pool import PoolSnapshot
from computegrid.services import accounts, regions
from computegrid.services.clock import Clock
from computegrid.services.errors import Unauthorized
from computegrid.services.pool_state import load_pool
from computegrid.services.principal import Principal
from computegrid.services.scheduler import SchedulerWake
from computegrid.services.submissions import SubmissionWriter
from computegrid.store.db import Database

AUTH_CACHE_S = 5.0
SHAPE_CACHE_S = 2.0


@dataclass
class AppState:
    db: Database
    catalog: Catalog
    clock: Clock
    scheduler_wake: SchedulerWake | None = None
    registry: CollectorRegistry | None = None
    http: RequestMetrics | None = None
    writer: SubmissionWriter | None = None
    _auth: dict[str, tuple[float, Principal]] = field(default_factory=dict)
    _shape: tuple[float, PoolSnapshot] | None = None
    _regions: tuple[float, set[str], RttTable] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def principal_for(self, token: str) -> Principal:
        """Authenticate, caching a verified key for a few seconds (a revoked key stops within that)."""
        now = time.monotonic()
        hit = self._auth.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        with self.db.reading() as session:
            principal = accounts.authenticate(session=session, token=token)
        if len(self._auth) > 10_000:
            self._auth.clear()
        self._auth[token] = (now + AUTH_CACHE_S, principal)
        return principal

    def forget_keys(self) -> None:
        self._auth.clear()

    def pool_shape(self) -> PoolSnapshot:
        """Total capacity of the pool (no allocations), cached briefly for admission checks."""
        now = time.monotonic()
        with self._lock:
            if self._shape is not None and self._shape[0] > now:
                return self._shape[1]
        with self.db.reading() as session:
            shape = load_pool(session=session, with_allocations=False)
        with self._lock:
            self._shape = (now + SHAPE_CACHE_S, shape)
        return shape

    def forget_shape(self) -> None:
        with self._lock:
            self._shape = None

    def regions(self) -> tuple[set[str], RttTable]:
        """The region names a job may give as `placement.user_region`, and the latency table admission judges
        `max_rtt_ms` by (built-in plus operators' round trips), cached briefly like the pool's shape."""
        now = time.monotonic()
        with self._lock:
            if self._regions is not None and self._regions[0] > now:
                return self._regions[1], self._regions[2]
        with self.db.reading() as session:
            names, rtt = regions.known_regions(session), regions.load_rtt(session)
        with self._lock:
            self._regions = (now + SHAPE_CACHE_S, names, rtt)
        return names, rtt

    def forget_regions(self) -> None:
        with self._lock:
            self._regions = None


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.computegrid
    return state


StateDep = Annotated[AppState, Depends(get_state)]
# Declared so /docs offers an "Authorize" box; `get_principal` reads the header itself.
API_KEY_HEADER = APIKeyHeader(name="Authorization", auto_error=False,
                              description="'Bearer cg_...' (X-API-Key: cg_... also works)")


async def get_principal(request: Request, state: StateDep) -> Principal:
    # Async so it runs on the event loop: a cached key costs no thread hand-off.
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    token = token or request.headers.get("x-api-key", "").strip()
    if not token:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    return state.principal_for(token)


async def principal_dependency(request: Request, state: StateDep,
                               _key: str | None = Depends(API_KEY_HEADER)) -> Principal:
    return await get_principal(request, state)


CurrentPrincipal = Annotated[Principal, Depends(principal_dependency)]
