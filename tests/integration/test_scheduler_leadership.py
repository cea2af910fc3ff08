"""On PostgreSQL only one scheduler leads (advisory lock); a second waits rather than double-placing."""

from __future__ import annotations

import pytest

from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services.clock import ManualClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database


def make(db: Database) -> Scheduler:
    return Scheduler(db=db, policy=get_policy("first-fit"), catalog=default_catalog(), clock=ManualClock())


def test_second_scheduler_waits_for_the_leader(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite runs one embedded scheduler; leadership is a PostgreSQL lock")
    first, second = make(db), make(db)
    try:
        assert first.acquire_leadership() is True
        assert second.acquire_leadership() is False
        assert first.acquire_leadership() is True  # the leader keeps it
        first.release_leadership()
        assert second.acquire_leadership() is True
        assert first.acquire_leadership() is False
        # A leader that dies takes its lock with its connection.
        assert second._leader is not None
        second._leader.invalidate()
        second._leader = None
        assert first.acquire_leadership() is True
    finally:
        first.release_leadership()
        second.release_leadership()
