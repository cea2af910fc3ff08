"""The packing floor: the least GPU any placement can leave unallocated, from device shares alone.

A fractional job takes a share (milli-devices < 1000) of one device; shares on one device add up
to at most 1000. Whole-device jobs need whole devices. Given the jobs that have arrived (shares
with their counts, and the whole-device demand), every placement leaves unallocated at least

    floor = min over the shares it drops of  max(gap + dropped, waste)

where gap = capacity - arrived demand, dropped = the milli of the shares not placed, and
waste = 1000 x (devices the placed shares need) - their milli: the whole-device jobs can use at
most the devices the shares leave whole. CPU, memory, node boundaries and arrival order can only
raise this, so it is a lower bound for every policy, online or offline.

The least devices for a multiset of shares is a bin-packing problem, solved here exactly as an
arc-flow integer program (Valério de Carvalho, 1999) with scipy's HiGHS MILP: one node per share
unit 0..1000, an arc per share size and start, and loss arcs. Shares on openb traces are
multiples of 10 milli, so the graph has 101 nodes and the program solves in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from computegrid.core.units import MILLI_PER_DEVICE


@dataclass(frozen=True)
class Floor:
    unallocated_milli: int  # the floor, in milli-devices
    devices_for_shares: int  # devices the placed shares take in the solution found (not minimised)
    dropped_milli: int  # shares left out at the optimum (0 unless dropping pays)
    optimal: bool  # the solver proved optimality (else the floor is the solver's best bound)


def packing_floor(shares: Mapping[int, int], capacity_milli: int, arrived_milli: int,
                  time_limit_s: float = 60.0, allow_drop: bool = True) -> Floor:
    """The floor for `shares` (milli per device -> count of jobs) arrived with `arrived_milli` in all.

    allow_drop=False fixes dropped at 0: the waste when every share is placed. That is no bound for
    a policy (one that fails a share has dropped it) but shows how much of a gap is packing.

    Raises ValueError for a share outside 1..999 or arrived demand above capacity.
    """
    if arrived_milli > capacity_milli:
        raise ValueError(f"arrived demand {arrived_milli} exceeds capacity {capacity_milli}")
    sizes = sorted(s for s, n in shares.items() if n > 0)
    if any(not 0 < s < MILLI_PER_DEVICE for s in sizes):
        raise ValueError(f"shares must be 1..{MILLI_PER_DEVICE - 1} milli, got {sizes}")
    gap = capacity_milli - arrived_milli
    if not sizes:
        return Floor(gap, 0, 0, True)
    unit = reduce(math.gcd, sizes, MILLI_PER_DEVICE)
    cap = MILLI_PER_DEVICE // unit
    # variables: share arcs (size, start), loss arcs (start), bins z, dropped d[size], t
    arcs = [(u, u + s // unit, k) for k, s in enumerate(sizes) for u in range(cap - s // unit + 1)]
    n_share, n_loss, n_types = len(arcs), cap, len(sizes)
    z = n_share + n_loss
    d0 = z + 1
    t = d0 + n_types
    n_vars = t + 1
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []

    def put(r: int, c: int, v: float) -> None:
        rows.append(r)
        cols.append(c)
        vals.append(v)

    r = cap + 1
    # flow conservation at nodes 0..cap: inflow - outflow = 0 (z carries cap back to 0);
    # row r + k: the arcs of size k placed + dropped = count
    for j, (u, v, k) in enumerate(arcs):
        put(v, j, 1.0)
        put(u, j, -1.0)
        put(r + k, j, 1.0)
    for u in range(cap):
        put(u + 1, n_share + u, 1.0)
        put(u, n_share + u, -1.0)
    put(0, z, 1.0)
    put(cap, z, -1.0)
    for k in range(n_types):
        put(r + k, d0 + k, 1.0)
    r += n_types
    # t >= gap + dropped ;  t >= 1000 z - sum(placed) = 1000 z - total + dropped
    total = sum(s * shares[s] for s in sizes)
    for k, s in enumerate(sizes):
        put(r, d0 + k, -float(s))
        put(r + 1, d0 + k, -float(s))
    put(r, t, 1.0)
    put(r + 1, t, 1.0)
    put(r + 1, z, -float(MILLI_PER_DEVICE))
    matrix = coo_matrix((vals, (rows, cols)), shape=(r + 2, n_vars)).tocsr()
    lower = np.concatenate([np.zeros(cap + 1), [float(shares[s]) for s in sizes], [float(gap), float(-total)]])
    upper = np.concatenate([np.zeros(cap + 1), [float(shares[s]) for s in sizes], [np.inf, np.inf]])
    cost = np.zeros(n_vars)
    cost[t] = 1.0
    upper_bounds = np.full(n_vars, np.inf)
    if not allow_drop:
        upper_bounds[d0:d0 + n_types] = 0.0
    result = milp(cost, constraints=LinearConstraint(matrix, lower, upper), integrality=np.ones(n_vars),
                  bounds=Bounds(0, upper_bounds), options={"time_limit": time_limit_s, "mip_rel_gap": 0.0})
    if result.x is None:
        raise RuntimeError(f"packing floor: solver gave no solution ({result.message})")
    x = np.rint(result.x).astype(np.int64)
    dropped = int(sum(int(x[d0 + k]) * s for k, s in enumerate(sizes)))
    optimal = result.status == 0
    value = int(x[t]) if optimal else int(math.floor(result.mip_dual_bound))
    return Floor(value, int(x[z]), dropped, optimal)
