"""Migration 0004 builds exactly the market tables of store/models_market.py (SQLite and PostgreSQL), and
the market's capacity helpers hold reserved devices back from a pool snapshot and let them out again."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot
from computegrid.services.market.capacity import Withholding, free_devices
from computegrid.store.db import Database
from computegrid.store.models import Base

MARKET = {"market_offers", "market_bids", "market_leases", "spot_index_points", "market_rounds"}


def test_migration_0004_matches_the_market_models(db: Database) -> None:
    assert set(Base.metadata.tables) >= MARKET
    with db.engine.connect() as conn:
        diffs: list[Any] = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diffs if any(t in str(d) for t in MARKET)] == []


def test_withholding_takes_free_devices_of_one_model_at_one_site_and_gives_them_back() -> None:
    pool = PoolSnapshot([NodeInfo(1, "s1", "r", "core", True, 8000, 8192), NodeInfo(2, "s1", "r", "core", True, 8000,
                                                                                   8192),
                         NodeInfo(3, "s2", "r", "hub", True, 8000, 8192)],
                        [DeviceInfo(1, 0, "A100-80G", 80), DeviceInfo(1, 1, "H100-80G", 80),
                         DeviceInfo(2, 0, "A100-80G", 80), DeviceInfo(3, 0, "A100-80G", 80)])
    assert free_devices(pool, "s1", "A100-80G") == 2
    held = Withholding(pool)
    held.apply({("s1", "A100-80G"): 1})
    assert free_devices(pool, "s1", "A100-80G") == 1 and free_devices(pool, "s2", "A100-80G") == 1
    held.release("s1", "A100-80G")
    assert free_devices(pool, "s1", "A100-80G") == 2
    held.reapply("s1", "A100-80G", used=1)  # a job of the block took one: nothing left to hold back
    assert free_devices(pool, "s1", "A100-80G") == 2
    held.apply({("s1", "A100-80G"): 5})  # more than is free: all that is free
    assert free_devices(pool, "s1", "A100-80G") == 0 and free_devices(pool, "s1", "H100-80G") == 1
