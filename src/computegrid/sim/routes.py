"""Where a job may run in each world: its placement requests, tried in order ("steps").

A step is one `core.placement.PlacementRequest` with the (site, model) pairs it allows and its shape.

Isolated world: one filter, the tenant's own region (`user_region` = the region, `max_rtt_ms` = 0, so
the latency filter keeps only that region's nodes), any model.

computegrid world:
- **Inference** (tier routing): core sites within the service's RTT of its users
  (`tier="core"`, `user_region`, `max_rtt_ms`); where no core city lies within the limit, the tier of the
  users' own region (whose RTT is 0, so it always qualifies). A placement is filtered by the RTT, so a
  latency-SLO violation cannot happen by construction (the world still checks every start).
  A live spec expresses each such request (`placement: {tier, user_region, max_rtt_ms}`), but the live
  scheduler does not pick the tier: the fallback is the tenant's choice of `tier` in its spec.
- **Training** (on-demand batch and deadline-tolerant jobs), as the live scheduler places a spec with a
  `workload` and no `placement.tier`: one request over every site, placed by the world's policy. It
  accepts every model, with `model_preference` from `core.placement.prefer_cheapest_work` over the live
  throughput table (`core.throughput.default_throughputs`, Gavel's measurements; the speeds the
  simulator extrapolates for other models, see `speed`, are not known to the live service) and the
  cheapest price per du posted for each model now (`Pricing.cheapest_posted`), as
  `services.scheduler` orders models on each pass. The world calls `reprice` when the posted prices
  move (a band edge), and waiting jobs take the new order.
A job that carries its own request (`Demand.requests`, e.g. built from a job spec as the live scheduler
builds it, see `live_replay`) has one step, that request, tried on every pass.
In a world with a market, spot (interruptible) jobs are not routed here: the market picks a (site, model)
for them (`spot_steps`); without one they are routed as training.

Shapes, in both worlds alike: a job of g GPUs asks for one node of g devices when the allowed nodes
include one that large; otherwise, and as a fallback when that does not fit now, a gang of members of
d devices on g/d distinct nodes, for each d that divides g and that enough allowed nodes can hold,
largest d first. Members may land on different models (the gang runs at its slowest member's speed).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from computegrid.core.catalog import Catalog
from computegrid.core.placement import PlacementRequest
from computegrid.core.placement.base import RttTable, rtt_between
from computegrid.core.placement.preference import prefer_cheapest_work
from computegrid.core.throughput import ThroughputTable
from computegrid.core.units import MILLI_PER_DEVICE
from computegrid.sim.capacity import PairIndex
from computegrid.sim.demand import INFERENCE, Demand


@dataclass(frozen=True)
class Step:
    """One placement request, the pairs it allows, and its shape (devices per member, members)."""

    request: PlacementRequest
    pairs: tuple[int, ...]
    per: int
    members: int
    precheck: bool = True  # whether `Tracker.could_fit` is a valid necessary condition for the request


@dataclass(eq=False)
class Route:
    """The steps of a kind of job, and the queue of waiting jobs that share them (arrival order)."""

    key: tuple[Any, ...]
    steps: tuple[Step, ...]
    pairs: tuple[int, ...]
    reason: str | None = None  # why no step can ever fit (then `steps` is empty)
    queue: deque[int] = field(default_factory=deque)
    blocked: bool = False
    always_retry: bool = False  # tried on every pass, as the live scheduler tries every pending job


def gang_shapes(gpus: int, sizes: dict[int, int]) -> list[tuple[int, int]]:
    """(devices per member, members) options for `gpus`, largest members first (see the module docstring)."""
    shapes = []
    for per in sorted((d for d in range(1, gpus + 1) if gpus % d == 0), reverse=True):
        if sum(count for size, count in sizes.items() if size >= per) >= gpus // per:
            shapes.append((per, gpus // per))
    return shapes


class Router:
    """Builds (and caches) the route of each job for one world."""

    def __init__(self, pairs: PairIndex, *, cross_site: bool, rtt: RttTable, throughput: ThroughputTable | None,
                 prices: dict[str, int], catalog: Catalog) -> None:
        self.pairs, self.cross_site, self.rtt = pairs, cross_site, rtt
        self.throughput, self.prices, self.catalog = throughput, dict(prices), catalog
        self.routes: dict[tuple[Any, ...], Route] = {}
        self._spot: dict[tuple[int, int], list[Step]] = {}
        self._orders: dict[tuple[str | None, frozenset[str]], tuple[str, ...]] = {}
        self._all_models = self._models(self._allowed())

    def reprice(self, prices: dict[str, int]) -> bool:
        """Take each model's current cheapest posted price (fen per du); True when that changed any model
        order, so jobs routed before must be routed again (training routes are keyed by their order)."""
        if prices == self.prices:
            return False
        old = dict(self._orders)
        self.prices = dict(prices)
        self._orders.clear()
        return any(self._preferred(workload, models) != order for (workload, models), order in old.items())

    def _allowed(self, *, regions: set[str] | None = None, tier: str | None = None) -> tuple[int, ...]:
        p = self.pairs
        return tuple(i for i in range(len(p)) if (regions is None or p.region[i] in regions)
                     and (tier is None or p.tier[i] == tier))

    def _steps(self, base: PlacementRequest, pairs: tuple[int, ...], gpus: int) -> list[Step]:
        return [Step(replace(base, milli_per_node=per * MILLI_PER_DEVICE, nodes=members), pairs, per, members)
                for per, members in gang_shapes(gpus, self.pairs.sizes(pairs))]

    def _models(self, pairs: tuple[int, ...]) -> frozenset[str]:
        return frozenset(self.pairs.model[i] for i in pairs)

    def _preferred(self, workload: str | None, models: frozenset[str]) -> tuple[str, ...]:
        key = (workload, models)
        hit = self._orders.get(key)
        if hit is None:
            request = PlacementRequest(models=models, workload=workload)
            if self.throughput is not None:
                request = prefer_cheapest_work(request, self.throughput, self.prices, self.catalog)
            hit = self._orders[key] = request.model_preference
        return hit

    def route(self, demand: Demand, job: int) -> Route:
        """The route of `job` (shared with every job that asks for exactly the same)."""
        gpus, kind, region = demand.gpus[job], demand.kind[job], demand.region[job]
        given = demand.requests[job] if demand.requests is not None else None
        if given is not None:
            key: tuple[Any, ...] = ("given", given)
        elif not self.cross_site:
            key = ("own", region, gpus)
        elif kind == INFERENCE:
            key = ("inference", region, demand.max_rtt_ms[job], gpus)
        else:  # training (spot jobs too, in a world without a market)
            workload = demand.workload[job]
            key = ("training", gpus, self._preferred(workload, self._all_models))
        hit = self.routes.get(key)
        if hit is None:
            hit = self.routes[key] = self._build(key, demand, job)
        return hit

    def _build(self, key: tuple[Any, ...], demand: Demand, job: int) -> Route:
        gpus, region = demand.gpus[job], demand.region[job]
        steps: list[Step] = []
        if key[0] == "given":
            request: PlacementRequest = key[1]
            whole = request.milli_per_node > 0 and request.milli_per_node % MILLI_PER_DEVICE == 0
            pairs = tuple(range(len(self.pairs)))
            step = Step(request, pairs, request.devices_per_node, request.nodes, precheck=whole)
            return Route(key, (step,), pairs, None, always_retry=True)
        if key[0] == "own":
            pairs = self._allowed(regions={region})
            steps = self._steps(PlacementRequest(cpu_milli=0, memory_mb=0, user_region=region, max_rtt_ms=0),
                                pairs, gpus)
        elif key[0] == "inference":
            limit = demand.max_rtt_ms[job]
            assert limit is not None
            near = {r for r in set(self.pairs.region) if (ms := rtt_between(self.rtt, region, r)) is not None
                    and ms <= limit}
            own_tier = next(self.pairs.tier[i] for i in range(len(self.pairs)) if self.pairs.region[i] == region)
            tier = "core" if any(self.pairs.tier[i] == "core" for i in self._allowed(regions=near)) else own_tier
            pairs = self._allowed(regions=near, tier=tier)
            base = PlacementRequest(models=self._models(pairs), cpu_milli=0, memory_mb=0, tier=tier,
                                    user_region=region, max_rtt_ms=limit)
            steps = self._steps(base, pairs, gpus)
        else:
            pairs = self._allowed()
            base = PlacementRequest(models=self._models(pairs), cpu_milli=0, memory_mb=0,
                                    workload=demand.workload[job], model_preference=key[2])
            steps = self._steps(base, pairs, gpus)
        union = tuple(sorted({p for s in steps for p in s.pairs}))
        reason = None if steps else f"no allowed nodes can hold {gpus} GPUs"
        return Route(key, tuple(steps), union, reason)

    def spot_steps(self, pair: int, gpus: int) -> list[Step]:
        """The steps that put a spot job of `gpus` GPUs on the devices of one (site, model) pair."""
        key = (pair, gpus)
        hit = self._spot.get(key)
        if hit is None:
            region = self.pairs.region[pair]
            base = PlacementRequest(models=frozenset((self.pairs.model[pair],)), cpu_milli=0, memory_mb=0,
                                    user_region=region, max_rtt_ms=0)
            hit = self._spot[key] = self._steps(base, (pair,), gpus)
        return hit
