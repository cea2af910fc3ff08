"""Free capacity per (site, model), kept beside a pool snapshot, for a cheap "could this fit anywhere?" test.

The federation's scheduler keeps many jobs waiting. Before it asks a placement policy (tens of
microseconds), it checks whether the request could fit at all: whole-device members need nodes whose
free whole devices reach the member size, among the (site, model) pairs the request may use. The check
is a necessary condition for any request (exact when the request asks for no CPU or memory), so it
never skips a job that could have been placed.

All allocation and release go through `Tracker.allocate/release`, which call the snapshot's own
`PoolSnapshot.allocate/release` (as the live scheduler does) and update a histogram per pair: how many
nodes have 0, 1, ... free whole devices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from computegrid.core.pool import NodeAllocation, PoolSnapshot
from computegrid.sim.pools import SimPool


class PairIndex:
    """The (site, model) pairs of a pool: index, site, region, tier and model of each, and each node's pair."""

    def __init__(self, pool: SimPool) -> None:
        keys = sorted({(s.name, n.model) for n, s in zip(pool.nodes, pool.node_site, strict=True) if n.devices})
        self.keys = keys
        self.index = {k: i for i, k in enumerate(keys)}
        site_of = {s.name: s for s in pool.sites}
        self.site = [k[0] for k in keys]
        self.model = [k[1] for k in keys]
        self.region = [site_of[k[0]].region for k in keys]
        self.tier = [site_of[k[0]].tier for k in keys]
        #: pair of each node row (-1 for a node without devices)
        self.node_pair = [self.index[(s.name, n.model)] if n.devices else -1
                          for n, s in zip(pool.nodes, pool.node_site, strict=True)]
        self.node_sizes: list[dict[int, int]] = [{} for _ in keys]
        self.devices = [0] * len(keys)
        for node, pair in zip(pool.nodes, self.node_pair, strict=True):
            if pair >= 0:
                sizes = self.node_sizes[pair]
                sizes[node.devices] = sizes.get(node.devices, 0) + 1
                self.devices[pair] += node.devices

    def __len__(self) -> int:
        return len(self.keys)

    def sizes(self, pairs: Iterable[int]) -> dict[int, int]:
        """Node counts by device count over `pairs`."""
        out: dict[int, int] = {}
        for p in pairs:
            for size, count in self.node_sizes[p].items():
                out[size] = out.get(size, 0) + count
        return out


class Tracker:
    """A pool snapshot and, per pair, the count of nodes by free whole devices (see the module docstring)."""

    def __init__(self, snap: PoolSnapshot, pairs: PairIndex) -> None:
        self.snap, self.pairs = snap, pairs
        width = int(snap.dev_count.max()) + 1 if snap.node_count else 1
        self.hist = [[0] * width for _ in range(len(pairs))]
        self.free = [0] * len(pairs)
        self.top = [0] * len(pairs)
        free_whole = snap.free_whole.tolist()
        for row, pair in enumerate(pairs.node_pair):
            if pair >= 0:
                self.hist[pair][free_whole[row]] += 1
                self.free[pair] += free_whole[row]
        for p in range(len(pairs)):
            self._retop(p)
        #: pairs whose free capacity grew since `take_dirty` was last called
        self.dirty: set[int] = set()

    def _retop(self, p: int) -> None:
        counts = self.hist[p]
        v = len(counts) - 1
        while v > 0 and not counts[v]:
            v -= 1
        self.top[p] = v

    def _apply(self, allocations: Sequence[NodeAllocation], release: bool) -> None:
        snap, node_pair = self.snap, self.pairs.node_pair
        rows = [snap.node_row[a.node_id] for a in allocations]
        before = [int(snap.free_whole[r]) for r in rows]
        if release:
            snap.release(allocations)
        else:
            snap.allocate(allocations)
        touched = set()
        for row, old in zip(rows, before, strict=True):
            pair = node_pair[row]
            new = int(snap.free_whole[row])
            if pair < 0 or new == old:
                continue
            counts = self.hist[pair]
            counts[old] -= 1
            counts[new] += 1
            self.free[pair] += new - old
            touched.add(pair)
        for pair in touched:
            self._retop(pair)
            if release:
                self.dirty.add(pair)

    def allocate(self, allocations: Sequence[NodeAllocation]) -> None:
        """`PoolSnapshot.allocate` (raises ValueError and changes nothing when the parts do not fit)."""
        self._apply(allocations, release=False)

    def release(self, allocations: Sequence[NodeAllocation]) -> None:
        """`PoolSnapshot.release`; the pairs that gained capacity become dirty."""
        self._apply(allocations, release=True)

    def take_dirty(self) -> set[int]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def could_fit(self, pairs: Sequence[int], per: int, members: int) -> bool:
        """Whether `members` distinct nodes among `pairs` each have `per` free whole devices now."""
        if members == 1:
            top = self.top
            return any(top[p] >= per for p in pairs)
        found = 0
        for p in pairs:
            if self.top[p] >= per:
                found += sum(self.hist[p][per:])
                if found >= members:
                    return True
        return False
