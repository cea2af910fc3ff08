"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when it answers.

PostgreSQL is used when COMPUTEGRID_TEST_DATABASE_URL is set, or when this machine's
server answers at 127.0.0.1:5432 (database `test`). Each test run gets its own schema,
so runs never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from computegrid.store.db import Database
from computegrid.store.migrate import upgrade
from computegrid.store.models import Base

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_base_url() -> str | None:
    url = os.environ.get("COMPUTEGRID_TEST_DATABASE_URL")
    if url:
        return url
    return PG_DEFAULT if _pg_answers() else None


_SCHEMA = f"cg_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
_pg_ready = False


def postgres_url() -> str:
    """A URL whose search_path is this run's own schema (created and migrated once)."""
    global _pg_ready
    base = postgres_base_url()
    assert base is not None
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{_SCHEMA}"
    if not _pg_ready:
        admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {_SCHEMA}"))
        admin.dispose()
        db = Database(url)
        upgrade(db.engine)
        db.dispose()
        _pg_ready = True
    return url


def _drop_pg_schema() -> None:
    base = postgres_base_url()
    if base is None or not _pg_ready:
        return
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {_SCHEMA} CASCADE"))
    admin.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _drop_pg_schema()


def database_kinds() -> list[str]:
    return ["sqlite", "postgres"] if postgres_base_url() else ["sqlite"]


def fresh_database_url(kind: str, tmp_path: Path) -> str:
    """An empty, migrated database of the given kind."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'computegrid.db'}"
        db = Database(url)
        upgrade(db.engine)
        db.dispose()
        return url
    url = postgres_url()
    db = Database(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.dispose()
    return url


@pytest.fixture(params=database_kinds())
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def db(db_kind: str, tmp_path: Path) -> Iterator[Database]:
    database = Database(fresh_database_url(db_kind, tmp_path))
    yield database
    database.dispose()
