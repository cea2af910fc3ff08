"""The placement contract: a request, a pool snapshot, and a Placement or a PlacementFailure.

Every policy shares the same feasibility filters (`feasible_nodes`), so a failure
always says which constraint excluded how much capacity, whatever the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from computegrid.core.jobs import JobSpec
from computegrid.core.pool import BoolArray, IntArray, NodeAllocation, PoolSnapshot
from computegrid.core.units import MILLI_PER_DEVICE


@dataclass(frozen=True)
class PlacementRequest:
    """What a job needs, per node, for `nodes` nodes (a gang: all or nothing).

    Units: `milli_per_node` milli-devices (< 1000 a share of one device, else whole devices),
    `cpu_milli` milli-CPUs, `memory_mb` MiB, `min_device_memory_gb` GB, `max_rtt_ms` milliseconds.

    Heterogeneity (both optional; the defaults change nothing): `workload` names the job's workload
    class in the throughput table (e.g. Gavel's "ResNet-50 (batch size 64)"), and `model_preference`
    lists accepted models best first (see `preference.prefer_models`, which fills it from measured
    throughput per fen). A score-based policy then places on the first model in that order that has
    room (see `ScoredPolicy.place`).
    """

    models: frozenset[str] = frozenset()
    milli_per_node: int = 0
    min_device_memory_gb: float = 0.0
    cpu_milli: int = 1000
    memory_mb: int = 1024
    nodes: int = 1
    tier: str | None = None
    user_region: str | None = None
    max_rtt_ms: int | None = None
    workload: str | None = None
    model_preference: tuple[str, ...] = ()
    max_price_fen_per_du: int | None = None  # only nodes priced at most this (unpriced nodes pass)
    image: bool = False  # the job names a container image: only engines that run images take it
    gang_spread: str = "site"  # a gang (nodes > 1) lands whole on one site, or on one region ("region")
    within: tuple[str, str] | None = None  # only nodes of this ("site" | "region", name); set by gang placement

    @classmethod
    def from_spec(cls, spec: JobSpec) -> PlacementRequest:
        res = spec.resources
        return cls(
            models=res.models,
            milli_per_node=res.milli_per_node,
            min_device_memory_gb=float(res.min_device_memory_gb or 0),
            cpu_milli=res.cpu_milli,
            memory_mb=res.memory_mb,
            nodes=spec.nodes,
            tier=spec.routing.tier,
            user_region=spec.routing.user_region,
            max_rtt_ms=spec.routing.max_rtt_ms,
            workload=spec.workload,
            max_price_fen_per_du=spec.max_price_fen_per_du,
            image=spec.image is not None,
            gang_spread=spec.gang_spread,
        )

    @property
    def devices_per_node(self) -> int:
        """Whole devices per node; a fractional request takes a share of one device."""
        return max(1, self.milli_per_node // MILLI_PER_DEVICE) if self.milli_per_node else 0

    @property
    def milli_per_device(self) -> int:
        return min(self.milli_per_node, MILLI_PER_DEVICE)

    @property
    def engine_needs(self) -> tuple[str, ...]:
        """What the request asks of a site's engine beyond devices, CPU and memory (see core.capabilities)."""
        needs = []
        if 0 < self.milli_per_node < MILLI_PER_DEVICE:
            needs.append("device shares")
        if self.image:
            needs.append("container images")
        if self.nodes > 1:
            needs.append("multi-node gangs")
        return tuple(needs)


@dataclass(frozen=True)
class Placement:
    allocations: tuple[NodeAllocation, ...]
    policy: str


@dataclass(frozen=True)
class PlacementFailure:
    """Why nothing was placed: (constraint, nodes it excluded) in the order the filters ran."""

    exclusions: tuple[tuple[str, int], ...]
    detail: str = ""

    def __str__(self) -> str:
        parts = [f"{what} excluded {count} node{'s' if count != 1 else ''}" for what, count in self.exclusions
                 if count]
        if self.detail:
            parts.append(self.detail)
        return "; ".join(parts) if parts else "the pool has no nodes"


RttTable = Mapping[tuple[str, str], int]


def rtt_between(table: RttTable, a: str, b: str) -> int | None:
    """Round-trip time in ms between regions; 0 within a region; None when the table does not know."""
    if a == b:
        return 0
    return table.get((a, b), table.get((b, a)))


@dataclass
class Feasibility:
    node_mask: BoolArray
    fitting_devices: IntArray  # per node: devices that can take the per-device share now
    exclusions: list[tuple[str, int]] = field(default_factory=list)


def device_eligibility(pool: PoolSnapshot, req: PlacementRequest) -> tuple[BoolArray, IntArray, BoolArray]:
    """Devices of the accelerator kind the request accepts (model and memory), cached on the pool.

    Returns (per device: eligible, per node: eligible device count, per node: every device eligible).
    """
    key = ("eligible", req.models, req.min_device_memory_gb)
    hit = pool.static_cache.get(key)
    if hit is None:
        ok = (pool.dev_mem_gb >= req.min_device_memory_gb) & pool.dev_engine_ok
        if req.models:
            codes = [pool.model_code[m] for m in req.models if m in pool.model_code]
            ok &= np.isin(pool.dev_model_code, np.array(codes, dtype=np.int64))
        counts = np.bincount(pool.dev_node[ok], minlength=pool.node_count).astype(np.int64)
        hit = (ok, counts, (counts == pool.dev_count) & (pool.dev_count > 0))
        pool.static_cache[key] = hit
    return hit


def _tier_mask(pool: PoolSnapshot, tier: str) -> BoolArray:
    key = ("tier", tier)
    hit = pool.static_cache.get(key)
    if hit is None:
        hit = pool.static_cache[key] = np.asarray(pool.tier == tier, dtype=np.bool_)
    return hit


def _latency_mask(pool: PoolSnapshot, table: RttTable, user_region: str, max_rtt_ms: int) -> BoolArray:
    # Keyed by the table's identity (the table is kept in the entry so the identity stays unique).
    key = ("latency", id(table), user_region, max_rtt_ms)
    hit = pool.static_cache.get(key)
    if hit is None or hit[0] is not table:
        by_region = {reg: (r := rtt_between(table, user_region, str(reg))) is not None and r <= max_rtt_ms
                     for reg in set(pool.region.tolist())}
        hit = (table, np.array([by_region[reg] for reg in pool.region], dtype=np.bool_))
        pool.static_cache[key] = hit
    return hit[1]


_EMPTY_RTT: dict[tuple[str, str], int] = {}


def latency_filter_name(pool: PoolSnapshot, table: RttTable, user_region: str, max_rtt_ms: int) -> str:
    """The latency filter as a failure names it: the limit, and the nearest pool region it excludes with its
    round trip (ms), or the regions it excludes for want of a known round trip. Cached like the mask."""
    key = ("latency-name", id(table), user_region, max_rtt_ms)
    hit = pool.static_cache.get(key)
    if hit is None or hit[0] is not table:
        far: list[tuple[int, str]] = []
        unknown: list[str] = []
        for reg in sorted({str(r) for r in pool.region.tolist()}):
            rtt = rtt_between(table, user_region, reg)
            if rtt is None:
                unknown.append(reg)
            elif rtt > max_rtt_ms:
                far.append((rtt, reg))
        name = f"latency (want <= {max_rtt_ms} ms from {user_region}"
        if far:
            name += f"; nearest excluded: {min(far)[1]} at {min(far)[0]} ms"
        elif unknown:
            name += f"; no round trip known to {', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}"
        hit = pool.static_cache[key] = (table, name + ")")
    return str(hit[1])


def engine_mask(pool: PoolSnapshot, req: PlacementRequest) -> BoolArray | None:
    """Nodes whose site's engine takes what the request needs (shares, images, gangs); None: no need."""
    needs = req.engine_needs
    if not needs:
        return None
    key = ("engine", needs)
    hit = pool.static_cache.get(key)
    if hit is None:
        mask = np.ones(pool.node_count, dtype=np.bool_)
        for need in needs:
            mask &= _engine_column(pool, need)
        hit = pool.static_cache[key] = mask
    return hit


def _engine_column(pool: PoolSnapshot, need: str) -> BoolArray:
    columns = {"device shares": pool.takes_shares, "container images": pool.takes_images,
               "multi-node gangs": pool.takes_gangs}
    return columns[need]


def _engine_name(req: PlacementRequest) -> str:
    return f"engine (want one that takes {' and '.join(req.engine_needs)})"


def _within_mask(pool: PoolSnapshot, within: tuple[str, str]) -> BoolArray:
    """Nodes of one site or one region (`within` = ("site" | "region", name))."""
    key = ("within", within)
    hit = pool.static_cache.get(key)
    if hit is None:
        column = pool.site if within[0] == "site" else pool.region
        hit = pool.static_cache[key] = np.asarray(column == within[1], dtype=np.bool_)
    return hit


def _within_name(within: tuple[str, str]) -> str:
    return f"{within[0]} (want {within[1]})"


def _price_mask(pool: PoolSnapshot, limit: int) -> BoolArray:
    """Nodes whose current price per du is within the limit; not cached, since prices move."""
    return np.asarray((pool.price <= limit) | (pool.price < 0), dtype=np.bool_)


def _price_name(limit: int) -> str:
    return f"price (want <= {limit} fen/du)"


#: every node (the default `part` of `feasible_mask`)
WHOLE_POOL = slice(None)
NodePart = slice | IntArray  # some node rows: a slice of the pool, or an array of rows


def _devices_fit(pool: PoolSnapshot, req: PlacementRequest, candidates: BoolArray,
                 part: NodePart = WHOLE_POOL) -> BoolArray:
    """Per node of `part`: enough devices of an accepted kind can take the share now (exact on `candidates`,
    a mask over the same nodes)."""
    dev_ok, counts, all_ok = device_eligibility(pool, req)
    need = req.devices_per_node
    want = MILLI_PER_DEVICE if req.milli_per_node >= MILLI_PER_DEVICE else req.milli_per_device
    if req.milli_per_node >= MILLI_PER_DEVICE:
        fits = all_ok[part] & (pool.free_whole[part] >= need)
    else:
        fits = all_ok[part] & (pool.max_free[part] >= want)
    partial = np.flatnonzero(candidates & ~all_ok[part] & (counts[part] >= need))
    if len(partial):
        rows = np.arange(pool.node_count, dtype=np.int64)[part]
        for at in partial.tolist():  # nodes with devices of several kinds: count device by device
            start, stop = pool.node_devices(int(rows[at]))
            free = pool.dev_free[start:stop][dev_ok[start:stop]]
            fits[at] = int(np.count_nonzero(free >= want)) >= need
    return fits


def static_mask(pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None = None) -> BoolArray | None:
    """The filters that do not move with allocations: tier, latency and (for a request with devices)
    nodes whose devices are all of an accepted kind; None when they exclude no node that has devices.

    On a pool of uniform nodes (one kind of device per node) a node is feasible exactly when it is up,
    passes this mask, and its free CPU, memory and devices fit (see `scored.moving_fit`).
    """
    mask: BoolArray | None = None
    if req.tier is not None:
        mask = _tier_mask(pool, req.tier)
    engine = engine_mask(pool, req)
    if engine is not None:
        mask = engine if mask is None else mask & engine
    if req.within is not None:
        inside = _within_mask(pool, req.within)
        mask = inside if mask is None else mask & inside
    if req.user_region is not None and req.max_rtt_ms is not None:
        near = _latency_mask(pool, rtt if rtt is not None else _EMPTY_RTT, req.user_region, req.max_rtt_ms)
        mask = near if mask is None else mask & near
    if req.max_price_fen_per_du is not None:
        cheap = _price_mask(pool, req.max_price_fen_per_du)
        mask = cheap if mask is None else mask & cheap
    if req.milli_per_node:
        key = ("kinds-mask", req.models, req.min_device_memory_gb)
        kinds = pool.static_cache.get(key)
        if kinds is None:
            all_ok = device_eligibility(pool, req)[2]
            # None when every node with devices qualifies (a device request never fits a node without any)
            kinds = pool.static_cache[key] = (None if bool((all_ok == (pool.dev_count > 0)).all()) else all_ok,)
        if kinds[0] is not None:
            mask = kinds[0] if mask is None else mask & kinds[0]
    return mask


def feasible_mask(pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None = None,
                  part: NodePart = WHOLE_POOL) -> BoolArray:
    """Nodes that could take one member of the gang now (the fast path of `feasible_nodes`, no counts).

    Uses the pool's cached static masks and per-node aggregates, so its cost is a few vector
    operations over the nodes whatever the number of devices. With `part` (a slice of node rows, or an
    array of them), the mask of those nodes only, in that order.
    """
    mask = pool.up[part] & (pool.cpu_free[part] >= req.cpu_milli) & (pool.mem_free[part] >= req.memory_mb)
    if req.tier is not None:
        mask &= _tier_mask(pool, req.tier)[part]
    engine = engine_mask(pool, req)
    if engine is not None:
        mask &= engine[part]
    if req.within is not None:
        mask &= _within_mask(pool, req.within)[part]
    if req.user_region is not None and req.max_rtt_ms is not None:
        mask &= _latency_mask(pool, rtt if rtt is not None else _EMPTY_RTT, req.user_region, req.max_rtt_ms)[part]
    if req.max_price_fen_per_du is not None:
        mask &= _price_mask(pool, req.max_price_fen_per_du)[part]
    if req.milli_per_node:
        mask &= _devices_fit(pool, req, mask, part)
    return mask


def feasible_nodes(pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None = None,
                   *, empty: bool = False) -> Feasibility:
    """Nodes that could take one member of the gang, with counts of what each filter excluded.

    With `empty=True` the pool is judged as if nothing were allocated and every node
    were up: "could this job ever fit here?".
    """
    n = pool.node_count
    mask = np.ones(n, dtype=np.bool_)
    exclusions: list[tuple[str, int]] = []

    def apply(name: str, keep: BoolArray) -> None:
        nonlocal mask
        new = mask & keep
        exclusions.append((name, int(mask.sum() - new.sum())))
        mask = new

    if not empty:
        apply("node down", pool.up)
    if req.tier is not None:
        apply(f"tier (want {req.tier})", _tier_mask(pool, req.tier))
    engine = engine_mask(pool, req)
    if engine is not None and not empty:  # capabilities change when an agent re-registers: the job waits
        apply(_engine_name(req), engine)
    if req.within is not None:
        apply(_within_name(req.within), _within_mask(pool, req.within))
    if req.user_region is not None and req.max_rtt_ms is not None:
        table = rtt if rtt is not None else _EMPTY_RTT
        apply(latency_filter_name(pool, table, req.user_region, req.max_rtt_ms),
              _latency_mask(pool, table, req.user_region, req.max_rtt_ms))
    if req.max_price_fen_per_du is not None and not empty:  # prices move: "ever fits" ignores today's price
        apply(_price_name(req.max_price_fen_per_du), _price_mask(pool, req.max_price_fen_per_du))
    cpu = pool.cpu_total if empty else pool.cpu_free
    mem = pool.mem_total if empty else pool.mem_free
    fitting = np.zeros(n, dtype=np.int64)
    if req.milli_per_node:
        kind_ok, kinds, _ = device_eligibility(pool, req)
        need = req.devices_per_node
        apply(f"accelerator ({need} x {'|'.join(sorted(req.models)) or 'any'})", kinds >= need)
        want = MILLI_PER_DEVICE if req.milli_per_node >= MILLI_PER_DEVICE else req.milli_per_device
        now_ok = kind_ok if empty else kind_ok & (pool.dev_free >= want)
        fitting = np.bincount(pool.dev_node[now_ok], minlength=n).astype(np.int64)
        apply("devices in use", fitting >= need)
    apply(f"cpu (want {req.cpu_milli / 1000:g})", cpu >= req.cpu_milli)
    apply(f"memory (want {req.memory_mb} MiB)", mem >= req.memory_mb)
    return Feasibility(node_mask=mask, fitting_devices=fitting, exclusions=exclusions)


def failure(pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None, found: int) -> PlacementFailure:
    """The PlacementFailure for a request that found `found` feasible nodes, with the filters' counts.

    The same filters and order as `feasible_nodes`, from the fast masks (no per-device counts).
    """
    mask = np.ones(pool.node_count, dtype=np.bool_)
    exclusions: list[tuple[str, int]] = []
    steps: list[tuple[str, BoolArray]] = [("node down", pool.up)]
    if req.tier is not None:
        steps.append((f"tier (want {req.tier})", _tier_mask(pool, req.tier)))
    engine = engine_mask(pool, req)
    if engine is not None:
        steps.append((_engine_name(req), engine))
    if req.within is not None:
        steps.append((_within_name(req.within), _within_mask(pool, req.within)))
    if req.user_region is not None and req.max_rtt_ms is not None:
        table = rtt if rtt is not None else _EMPTY_RTT
        steps.append((latency_filter_name(pool, table, req.user_region, req.max_rtt_ms),
                      _latency_mask(pool, table, req.user_region, req.max_rtt_ms)))
    if req.max_price_fen_per_du is not None:
        steps.append((_price_name(req.max_price_fen_per_du), _price_mask(pool, req.max_price_fen_per_du)))
    for name, keep in steps:
        new = mask & keep
        exclusions.append((name, int(np.count_nonzero(mask)) - int(np.count_nonzero(new))))
        mask = new
    if req.milli_per_node:
        need = req.devices_per_node
        kinds = device_eligibility(pool, req)[1] >= need
        new = mask & kinds
        exclusions.append((f"accelerator ({need} x {'|'.join(sorted(req.models)) or 'any'})",
                           int(np.count_nonzero(mask)) - int(np.count_nonzero(new))))
        mask = new
        new = mask & _devices_fit(pool, req, mask)
        exclusions.append(("devices in use", int(np.count_nonzero(mask)) - int(np.count_nonzero(new))))
        mask = new
    for name, keep in ((f"cpu (want {req.cpu_milli / 1000:g})", pool.cpu_free >= req.cpu_milli),
                       (f"memory (want {req.memory_mb} MiB)", pool.mem_free >= req.memory_mb)):
        new = mask & keep
        exclusions.append((name, int(np.count_nonzero(mask)) - int(np.count_nonzero(new))))
        mask = new
    return PlacementFailure(tuple(exclusions), failure_detail(pool, req, found))


def failure_detail(pool: PoolSnapshot, req: PlacementRequest, found: int) -> str:
    """The words after the exclusions: an engine need no site meets, and a gang's shortfall."""
    detail = f"gang needs {req.nodes} nodes, {found} fit" if req.nodes > 1 else ""
    lacking = [need for need in req.engine_needs if not bool((_engine_column(pool, need) & pool.up).any())]
    if lacking and pool.node_count:
        detail = "; ".join(filter(None, (f"no site whose engine takes {' or '.join(lacking)}", detail)))
    return detail


def eligible_devices(pool: PoolSnapshot, row: int, req: PlacementRequest) -> IntArray:
    """Device rows on node `row` of the accepted kind that can take the per-device share now."""
    start, stop = pool.node_devices(row)
    ok = device_eligibility(pool, req)[0][start:stop].tolist()
    want = MILLI_PER_DEVICE if req.milli_per_node >= MILLI_PER_DEVICE else req.milli_per_device
    free = pool.dev_free[start:stop].tolist()  # a node has few devices: plain Python beats numpy calls
    return np.array([start + j for j, f in enumerate(free) if ok[j] and f >= want], dtype=np.int64)


def pick_devices(pool: PoolSnapshot, row: int, req: PlacementRequest,
                 order: Callable[[IntArray], IntArray] | None = None) -> tuple[int, ...]:
    """Device indices on node `row` for the request; lowest index first unless `order` ranks them."""
    if not req.milli_per_node:
        return ()
    candidates = eligible_devices(pool, row, req)
    if order is not None:
        candidates = order(candidates)
    return tuple(int(pool.dev_index[r]) for r in candidates[: req.devices_per_node])


def allocation_for(pool: PoolSnapshot, row: int, req: PlacementRequest,
                   order: Callable[[IntArray], IntArray] | None = None) -> NodeAllocation:
    """The NodeAllocation of one gang member on node `row` (devices chosen by `pick_devices`)."""
    return NodeAllocation(
        node_id=int(pool.node_ids[row]),
        device_indices=pick_devices(pool, row, req, order),
        milli_per_device=req.milli_per_device if req.milli_per_node else 0,
        cpu_milli=req.cpu_milli,
        memory_mb=req.memory_mb,
    )


def place_preferring(place_one: Callable[[PoolSnapshot, PlacementRequest, RttTable | None],
                                         Placement | PlacementFailure],
                     pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None,
                     group_score: Callable[[PoolSnapshot, PlacementRequest, Placement], int] | None = None,
                     place_gang: Callable[[PoolSnapshot, PlacementRequest, RttTable | None],
                                          Placement | PlacementFailure] | None = None,
                     ) -> Placement | PlacementFailure:
    """Place `req` honouring its `model_preference` with `place_one` (a policy's placement without one).

    Each preferred model is tried alone, in order, and the first that fits wins. Only if none does is the
    request tried on every accepted model together (which can only succeed where one node or one gang
    mixes kinds); that result, or its failure (the same as without a preference), is returned.
    A gang (nodes > 1) is placed whole on one site or region: by `place_gang` when the policy has its own
    (same result, faster), else by `gang.place_whole_gang` with `group_score`.
    """
    if req.nodes > 1 and req.within is None:
        if place_gang is not None:
            return _place_models(place_gang, pool, req, rtt)
        from computegrid.core.placement.gang import place_whole_gang  # gang builds on this module

        def whole(p: PoolSnapshot, r: PlacementRequest, t: RttTable | None) -> Placement | PlacementFailure:
            return place_whole_gang(place_one, p, r, t, group_score)

        return _place_models(whole, pool, req, rtt)
    return _place_models(place_one, pool, req, rtt)


def _place_models(place_one: Callable[[PoolSnapshot, PlacementRequest, RttTable | None],
                                      Placement | PlacementFailure],
                  pool: PoolSnapshot, req: PlacementRequest, rtt: RttTable | None) -> Placement | PlacementFailure:
    """`place_preferring`'s model preference (see there)."""
    plain = replace(req, model_preference=()) if req.model_preference else req
    for model in req.model_preference:
        if req.models and model not in req.models:
            continue
        outcome = place_one(pool, replace(plain, models=frozenset((model,))), rtt)
        if isinstance(outcome, Placement):
            return outcome
    return place_one(pool, plain, rtt)


class PlacementPolicy(Protocol):
    name: str

    def place(self, pool: PoolSnapshot, req: PlacementRequest,
              rtt: RttTable | None = None) -> Placement | PlacementFailure:
        """Choose nodes and devices for the request without changing the pool."""
        ...


_POLICIES: dict[str, Callable[..., PlacementPolicy]] = {}


def register_policy(name: str, factory: Callable[..., PlacementPolicy]) -> None:
    """Register a policy factory under `name` (aliases are further registrations of the same factory)."""
    _POLICIES[name] = factory


def policy_names() -> list[str]:
    """The registered policy names, sorted."""
    return sorted(_POLICIES)


def get_policy(name: str, **options: Any) -> PlacementPolicy:
    """A new instance of the policy registered under `name`; raises KeyError listing the known ones.

    `options` go to the policy's constructor (e.g. `rng=` for `random`, `typical=` for `fgd`).
    """
    if name not in _POLICIES:
        raise KeyError(f"unknown placement policy {name!r}; known: {', '.join(sorted(_POLICIES))}")
    return _POLICIES[name](**options)
