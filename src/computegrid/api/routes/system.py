"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from computegrid.api.deps import StateDep
from computegrid.api.metrics import registry_for

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz(state: StateDep) -> dict[str, str]:
    with state.db.reading() as session:
        session.execute(text("SELECT 1"))
    return {"status": "ok", "database": state.db.engine.dialect.name}


@router.get("/metrics")
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(registry_for(state)), media_type=CONTENT_TYPE_LATEST)
