"""An app built from the environment, for `computegrid serve` (uvicorn workers import this)."""

from __future__ import annotations

from fastapi import FastAPI

from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.core.catalog import default_catalog
from computegrid.services.clock import SystemClock
from computegrid.store.db import Database, default_database_url


def app_from_env() -> FastAPI:
    """The API over COMPUTEGRID_DATABASE_URL (or the default SQLite); no scheduler in this process."""
    return create_app(AppState(db=Database(default_database_url()), catalog=default_catalog(),
                               clock=SystemClock()))
