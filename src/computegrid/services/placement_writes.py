"""The rows an on-demand placement writes, in bulk: the job's update, its allocations and its event.

On PostgreSQL each table takes one statement per batch, its values as array parameters (`unnest`), so a
batch of 500 placements is three round trips whatever its size; elsewhere (SQLite) one executemany per
table. Both write the same rows; the caller holds the jobs' row locks and runs the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.engine import Connection

from computegrid.store.models import Job, JobAllocation, JobEvent

_UPDATE_JOBS = text(
    "UPDATE jobs SET attempt = v.attempt, site_id = v.site_id, state_reason = v.reason, state = :state,"
    " placed_ms = :now, updated_ms = :now, price_kind = :price_kind, price_fen_per_du = NULL"
    " FROM unnest(CAST(:job_id AS INTEGER[]), CAST(:attempt AS INTEGER[]), CAST(:site_id AS INTEGER[]),"
    " CAST(:reason AS TEXT[])) AS v(job_id, attempt, site_id, reason) WHERE jobs.id = v.job_id")
_INSERT_ALLOCATIONS = text(
    "INSERT INTO job_allocations (job_id, attempt, node_id, rank, device_indices, milli_per_device, cpu_milli,"
    " memory_mb, active)"
    " SELECT job_id, attempt, node_id, rank, device_indices, milli_per_device, cpu_milli, memory_mb, TRUE"
    " FROM unnest(CAST(:job_id AS INTEGER[]), CAST(:attempt AS INTEGER[]), CAST(:node_id AS INTEGER[]),"
    " CAST(:rank AS INTEGER[]), CAST(:device_indices AS TEXT[]), CAST(:milli_per_device AS INTEGER[]),"
    " CAST(:cpu_milli AS BIGINT[]), CAST(:memory_mb AS BIGINT[])) WITH ORDINALITY"
    " AS v(job_id, attempt, node_id, rank, device_indices, milli_per_device, cpu_milli, memory_mb, n) ORDER BY n")
_INSERT_EVENTS = text(
    "INSERT INTO job_events (job_id, at_ms, from_state, to_state, reason)"
    " SELECT job_id, at_ms, from_state, to_state, reason FROM unnest(CAST(:job_id AS INTEGER[]),"
    " CAST(:at_ms AS BIGINT[]), CAST(:from_state AS TEXT[]), CAST(:to_state AS TEXT[]), CAST(:reason AS TEXT[]))"
    " WITH ORDINALITY AS v(job_id, at_ms, from_state, to_state, reason, n) ORDER BY n")
_ALLOCATION_COLUMNS = ("job_id", "attempt", "node_id", "rank", "device_indices", "milli_per_device", "cpu_milli",
                       "memory_mb")
_EVENT_COLUMNS = ("job_id", "at_ms", "from_state", "to_state", "reason")


def array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal of ints or strings: one text parameter, parsed by the server, costs far
    less than the driver's per-element array adaptation."""
    if values and isinstance(values[0], str):
        return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
    return "{" + ",".join(map(str, map(int, values))) + "}"


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, str]:
    return {name: array_literal([row[name] for row in rows]) for name in names}


def write_placements(conn: Connection, *, now_ms: int, state: str, price_kind: str,
                     job_rows: Sequence[dict[str, Any]], alloc_rows: Sequence[dict[str, Any]],
                     event_rows: Sequence[dict[str, Any]]) -> None:
    """Update the placed jobs (`job_rows`: job_id, attempt, site_id, reason) to `state` at `now_ms` with no
    fixed price, and insert their active allocations and their events (rows keyed by column name)."""
    if not job_rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(_UPDATE_JOBS, {"state": state, "now": now_ms, "price_kind": price_kind,
                                    **_columns(job_rows, ("job_id", "attempt", "site_id", "reason"))})
        conn.execute(_INSERT_ALLOCATIONS, _columns(alloc_rows, _ALLOCATION_COLUMNS))
        conn.execute(_INSERT_EVENTS, _columns(event_rows, _EVENT_COLUMNS))
        return
    jobs = Job.__table__
    conn.execute(update(jobs).where(jobs.c.id == bindparam("job_id")).values(  # type: ignore[arg-type]
        attempt=bindparam("attempt"), site_id=bindparam("site_id"), placed_ms=now_ms, updated_ms=now_ms,
        state=state, state_reason=bindparam("reason"), price_kind=price_kind, price_fen_per_du=None), job_rows)
    conn.execute(insert(JobAllocation), [{**row, "active": True} for row in alloc_rows])
    conn.execute(insert(JobEvent), event_rows)
