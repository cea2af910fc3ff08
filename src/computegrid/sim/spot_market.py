"""Spot rounds in the computegrid world: interruptible jobs buy idle capacity through `core.market`.

Every `WorldConfig.spot_tick_ms` (5 minutes) a TICK runs `core.market.run_spot_round`:
- **offers**: one per (site, model) pair with a rated FP16 (opaque models cannot be priced per du), for
  the devices that on-demand work does not hold (the `firm` snapshot's free devices), at the site's spot
  floor (`pricing`), interruptible;
- **leases**: the spot jobs running, each on the pair it was placed on, at its bid limit;
- **bids**: the oldest `max_bids` waiting spot jobs that some offer is large enough for, each for its GPUs
  at its limit, any priced model, any region (one bid per job: a job runs at one site);
- no on-demand requests: on-demand jobs take devices from spot jobs when they are placed (`world`).
Then, as the service would: the round's preemptions stop their jobs (progress kept, back to waiting);
each allocation is placed on its pair's nodes by the world's placement policy on the live snapshot
(`Router.spot_steps`); when the devices the round counted are too fragmented for the job's shape, the
allocation is dropped and the job bids again next round (counted in `spot_unplaced`). The round's
prices go into a `SpotIndex`, which also charges every spot run at the price in force.
The simulator passes a notice of 0 ms (see `world`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from computegrid.core.market import Bid, Offer, SpotIndex
from computegrid.core.market.spot import SpotLease, run_spot_round
from computegrid.sim.demand import SIM_EPOCH_MS

if TYPE_CHECKING:
    from computegrid.sim.world import World


class SpotMarket:
    """The spot side of a world: offers from its pairs, bids from its waiting spot jobs, and the index."""

    def __init__(self, world: World) -> None:
        self.world = world
        catalog = world.catalog
        pairs = world.pairs
        self.offer_of_pair: dict[int, str] = {}
        self.pair_of_offer: dict[str, int] = {}
        self.canonical: dict[int, str] = {}
        self.memory: dict[int, Fraction] = {}
        self.floor: dict[int, int] = {}
        for p in range(len(pairs)):
            site = world.pricing.sites[pairs.site[p]]
            if pairs.model[p] not in site.floors:
                continue
            entry = catalog.get(pairs.model[p])
            if entry.memory_gb is None:
                continue  # a spot offer states its device memory, which the catalog does not know here
            offer_id = f"{pairs.site[p]}/{entry.model}"
            self.offer_of_pair[p], self.pair_of_offer[offer_id] = offer_id, p
            self.canonical[p], self.memory[p], self.floor[p] = entry.model, entry.memory_gb, site.floors[pairs.model[p]]
        self.models = frozenset(self.canonical.values())
        self.index = SpotIndex()
        self.lease_pair: dict[int, int] = {}

    def tick(self, now: int) -> None:
        """One spot round at sim time `now` (ms)."""
        world = self.world
        firm = world.firm
        assert firm is not None
        pairs, demand = world.pairs, world.demand
        offers = [Offer(id=offer_id, provider=pairs.site[p], site=pairs.site[p], region=pairs.region[p],
                        tier=pairs.tier[p], model=self.canonical[p], device_memory_gb=self.memory[p],
                        devices=firm.free[p], floor_fen_per_du=self.floor[p], interruptible=True)
                  for p, offer_id in self.offer_of_pair.items() if firm.free[p] > 0]
        leases = []
        for job, run in world.running.items():
            if run.spot:
                limit = demand.bid_limit[job]
                assert limit is not None
                leases.append(SpotLease(id=str(job), bid_id=str(job), tenant=demand.tenant[job],
                                        offer_id=self.offer_of_pair[self.lease_pair[job]],
                                        devices=demand.gpus[job], limit_fen_per_du=limit,
                                        started_ms=SIM_EPOCH_MS + run.start_ms))
        # only jobs some offer could hold whole bid (a bid is filled from one offer): the others would
        # only crowd the round's bid limit
        largest = max((firm.free[p] for p in self.offer_of_pair), default=0)
        waiting = [j for j in sorted(world.spot_waiting) if demand.gpus[j] <= largest][: world.config.max_bids]
        bids = []
        for job in waiting:
            limit = demand.bid_limit[job]
            assert limit is not None
            bids.append(Bid(id=str(job), tenant=demand.tenant[job], devices=demand.gpus[job], limit_fen_per_du=limit,
                            models=self.models))
        if not bids and not leases:
            return
        result = run_spot_round(offers=offers, leases=leases, bids=bids, on_demand=(), catalog=world.catalog,
                                at_ms=SIM_EPOCH_MS + now, notice_ms=0)
        world.spot_rounds += 1
        self.index = self.index.record(result.at_ms, result.prices)
        for preemption in result.preemptions:
            job = int(preemption.lease_id)
            held = world.running.get(job)
            if held is not None and held.spot:
                world.stop(job, now, preempted=True)
        for allocation in result.allocations:
            job = int(allocation.bid_id)
            pair = self.pair_of_offer[allocation.offer_id]
            for step in world.router.spot_steps(pair, demand.gpus[job]):
                placement = world.place_on(world.live, world.policy, step)
                if placement is not None:
                    del world.spot_waiting[job]
                    world.start(job, placement, now, spot=True)
                    self.lease_pair[job] = pair
                    break
            else:
                world.spot_unplaced += 1
