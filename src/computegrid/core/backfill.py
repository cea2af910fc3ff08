"""The pieces of a scheduler pass that the live scheduler and the simulator share, around `queueing.Reservation`.

- `head_reservation`: the blocked head's EASY reservation, on the nodes that could ever hold one of its
  members (up, and past its filters), counting whole devices.
- `whole_release` / `placement_parts`: a placement as a future release, or as the devices a backfill takes.
- `place_at_site`: a placement restricted to one site (a deferred job's planned site).
- `deadline_due`: whether a job is so close to its latest start that it outranks the head's reservation.

Times are epoch ms. A job without a time limit ends at `NEVER_MS` (it never frees anything, as far as a
reservation can tell).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementPolicy,
    PlacementRequest,
    RttTable,
    feasible_nodes,
)
from computegrid.core.pool import PoolSnapshot
from computegrid.core.queueing import Release, Reservation
from computegrid.core.units import MILLI_PER_DEVICE

NEVER_MS = 2**62
DEADLINE_SLACK_MS = 15 * 60_000  # a job this close to its latest start outranks the head's reservation


def expected_end_ms(now_ms: int, time_limit_ms: int | None) -> int:
    """When a job started now is expected to end: now + its time limit, or `NEVER_MS` without one."""
    return NEVER_MS if time_limit_ms is None else now_ms + time_limit_ms


def head_reservation(pool: PoolSnapshot, req: PlacementRequest, job_id: int, now_ms: int,
                     releases: Sequence[Release], rtt: RttTable | None = None) -> Reservation | None:
    """The head's reservation (see the module docstring); `releases` in end order, rows of `pool`.

    None for a head that asks for no device, or that never fits (not enough eligible nodes, or not until
    jobs without a time limit end).
    """
    per_node = req.devices_per_node
    if per_node == 0:
        return None
    eligible = feasible_nodes(pool, req, rtt, empty=True).node_mask & pool.up
    if int(np.count_nonzero(eligible)) < req.nodes:
        return None
    free_now = np.where(eligible, pool.free_whole, 0).tolist()
    mask = eligible.tolist()
    kept = [(end, [(row, n) for row, n in parts if mask[row]]) for end, parts in releases]
    return Reservation.plan(job_id, now_ms, free_now, [r for r in kept if r[1]], per_node, req.nodes)


def placement_parts(pool: PoolSnapshot, placement: Placement) -> list[tuple[int, int]]:
    """A placement as [(node row, devices)], each device counted whole (a share takes it from the head)."""
    return [(pool.node_row[a.node_id], len(a.device_indices)) for a in placement.allocations]


def whole_release(pool: PoolSnapshot, placement: Placement, end_ms: int) -> Release:
    """A placement's whole devices as a release at `end_ms`: (end, [(node row, devices)]); shares are left
    out (a share freed does not make a whole device free)."""
    return end_ms, [(pool.node_row[a.node_id], len(a.device_indices)) for a in placement.allocations
                    if a.milli_per_device >= MILLI_PER_DEVICE]


def place_at_site(policy: PlacementPolicy, pool: PoolSnapshot, req: PlacementRequest, site: str,
                  rtt: RttTable | None = None) -> Placement | PlacementFailure:
    """The policy's placement of `req` on `site`'s nodes only."""
    saved = pool.up
    pool.up = saved & (pool.site == site)
    try:
        return policy.place(pool, req, rtt)
    finally:
        pool.up = saved


def place_preferring(policy: PlacementPolicy, pool: PoolSnapshot, req: PlacementRequest, site: str,
                     rtt: RttTable | None = None) -> Placement | PlacementFailure:
    """At `site` if it fits there, else anywhere (a deferred job's deadline wins over its planned site)."""
    outcome = place_at_site(policy, pool, req, site, rtt)
    return outcome if isinstance(outcome, Placement) else policy.place(pool, req, rtt)


def deadline_due(latest_start_ms: int | None, now_ms: int) -> bool:
    """Whether a job must start now to meet its deadline (within `DEADLINE_SLACK_MS` of its latest start)."""
    return latest_start_ms is not None and now_ms + DEADLINE_SLACK_MS >= latest_start_ms
