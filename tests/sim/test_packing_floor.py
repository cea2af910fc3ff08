"""The packing floor against brute force on small instances, and its input checks."""

from __future__ import annotations

import itertools
import random

import pytest

from computegrid.sim.packing_floor import packing_floor


def min_devices(items: list[int]) -> int:
    """Fewest 1000-milli devices for `items`, by trying every assignment (tiny inputs only)."""
    best = len(items)
    for k in range(1, len(items) + 1):
        for assign in itertools.product(range(k), repeat=len(items)):
            loads = [0] * k
            for size, dev in zip(items, assign, strict=True):
                loads[dev] += size
            if max(loads) <= 1000:
                return k
    return best


def brute_floor(items: list[int], capacity: int, arrived: int) -> int:
    """min over the items dropped of max(gap + dropped, waste of the rest)."""
    gap = capacity - arrived
    best = None
    for mask in itertools.product((0, 1), repeat=len(items)):
        kept = [s for s, keep in zip(items, mask, strict=True) if keep]
        dropped = sum(items) - sum(kept)
        waste = min_devices(kept) * 1000 - sum(kept) if kept else 0
        value = max(gap + dropped, waste)
        best = value if best is None else min(best, value)
    assert best is not None
    return best


def test_three_large_shares_leave_one_whole_device_short():
    # 3 x 600 + one whole-device job on 3 devices: placing all strands 1,200; dropping one share, 800
    floor = packing_floor({600: 3}, capacity_milli=3000, arrived_milli=2800)
    assert floor.unallocated_milli == 800
    assert floor.dropped_milli == 600
    assert floor.optimal


def test_placing_every_share_gives_the_plain_waste():
    floor = packing_floor({600: 3}, capacity_milli=3000, arrived_milli=2800, allow_drop=False)
    assert (floor.unallocated_milli, floor.dropped_milli) == (1200, 0)


def test_perfectly_packable_shares_leave_only_the_gap():
    floor = packing_floor({500: 4, 250: 4}, capacity_milli=5000, arrived_milli=4000)
    assert (floor.unallocated_milli, floor.dropped_milli) == (1000, 0)


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force(seed):
    rng = random.Random(seed)
    items = [rng.choice([110, 230, 320, 470, 500, 650, 810]) for _ in range(rng.randint(1, 6))]
    whole = rng.randint(0, 3) * 1000
    capacity = (len(items) + whole // 1000 + rng.randint(0, 1)) * 1000
    arrived = sum(items) + whole
    if arrived > capacity:
        capacity = -(-arrived // 1000) * 1000
    counts: dict[int, int] = {}
    for s in items:
        counts[s] = counts.get(s, 0) + 1
    assert packing_floor(counts, capacity, arrived).unallocated_milli == brute_floor(items, capacity, arrived)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="exceeds capacity"):
        packing_floor({500: 1}, capacity_milli=1000, arrived_milli=2000)
    with pytest.raises(ValueError, match="shares must be"):
        packing_floor({1000: 1}, capacity_milli=2000, arrived_milli=1000)
