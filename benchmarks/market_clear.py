"""Market clearing: time per round on 10,000 bids x 10,000 offers, and surplus against the exact optimum.

    .venv/bin/python benchmarks/market_clear.py [--bids 10000] [--offers 10000] [--rounds 5]
        [--small 300] [--seeds 5] [--seed 42] [--bound-size 2000]

Instance (seeded numpy Generator): the first 20 catalog models with an FP16 rating, 12 regions
(the 8 hubs and 4 cities). Each model has a reference price in fen per du, each region a power-price
factor. Offers: a class (model, region), a tier (core 30%, hub 55%, edge 15%), 2-16 devices (mean
7.6), floor = reference x region factor x U(0.85, 1.15); 10% are reserved blocks in one of four
day-long windows, half of the open ones are interruptible. Bids: 1-16 devices (mean 4.3); models:
45% one, 35% a catalog group (prefix, family or vendor), 20% any; regions: 35% one, 35% two to four,
30% any; 25% name a tier; 20% a minimum device memory; limit = mean reference of the accepted models
x U(0.75, 1.35); 10% are reserved bids for 4, 8 or 24 hours inside one of the windows.

Round time is the wall time of one `clear` call (validation, indexing, matching, pricing; one
core), with its CPU time beside it: on a busy machine wall time includes waiting for a core.
Surplus: `clear` against `clear_optimal` (scipy HiGHS MILP) on `--small` bids x `--small` offers
per seed, with the merit-order greedy (the fill pass alone) as a baseline; and on `--bound-size`
orders against the LP relaxation, an upper bound on the optimum (so the ratio is a lower bound).
Last, the wall time of one spot round (`run_spot_round`) at the same scale. Prints tables, then
one JSON line per figure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator
from fractions import Fraction

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, vstack

from computegrid.core.catalog import Catalog, default_catalog
from computegrid.core.market import Bid, Offer, OnDemandRequest, SpotLease, clear, clear_optimal, run_spot_round
from computegrid.core.market.book import OrderBook, build_book
from computegrid.core.market.clearing import greedy_pairs
from computegrid.core.market.optimal import candidate_pairs
from computegrid.core.market.result import pair_surplus

REGIONS = ["jingjinji", "yangtze-delta", "greater-bay", "chengdu-chongqing", "inner-mongolia", "guizhou", "gansu",
           "ningxia", "wulanchabu", "qingyang", "shaoguan", "wuhu"]
TIERS = ["core", "hub", "edge"]
DAY_MS = 86_400_000
T0 = 1_800_000_000_000  # a fixed clearing time (epoch ms)
WINDOWS = [(T0 + k * DAY_MS, T0 + (k + 1) * DAY_MS) for k in range(1, 5)]


def market_models(catalog: Catalog, count: int = 20) -> list[str]:
    return [m.model for m in catalog.models if m.fp16_tflops is not None][:count]


def groups(catalog: Catalog, models: list[str]) -> list[frozenset[str]]:
    """Catalog groups (prefix groups, families, vendors) restricted to the market's models, 2+ members."""
    names = {m.split("-")[0] for m in models} | {catalog.get(m).family for m in models} | \
        {catalog.get(m).vendor for m in models}
    found = {catalog.resolve(n) & frozenset(models) for n in names}
    return sorted((g for g in found if len(g) >= 2), key=sorted)


def make_instance(n_bids: int, n_offers: int, seed: int, catalog: Catalog) -> tuple[list[Bid], list[Offer]]:
    rng = np.random.default_rng(seed)
    models = market_models(catalog)
    model_groups = groups(catalog, models)
    reference = {m: int(rng.integers(1500, 3500)) for m in models}
    region_factor = {r: float(rng.uniform(0.85, 1.15)) for r in REGIONS}
    offers = []
    for i in range(n_offers):
        model = models[int(rng.integers(len(models)))]
        region = REGIONS[int(rng.integers(len(REGIONS)))]
        tier = TIERS[int(rng.choice(3, p=[0.30, 0.55, 0.15]))]
        floor = int(reference[model] * region_factor[region] * rng.uniform(0.85, 1.15))
        reserved = rng.random() < 0.10
        window = WINDOWS[int(rng.integers(len(WINDOWS)))] if reserved else (None, None)
        offers.append(Offer(id=f"o{i:06d}", provider=f"p{i % 97}", site=f"s{i % 997}", region=region, tier=tier,
                            model=model, device_memory_gb=catalog.get(model).memory_gb,
                            devices=int(rng.choice([2, 4, 8, 8, 16])), floor_fen_per_du=floor,
                            kind="reserved" if reserved else "spot", window_start_ms=window[0],
                            window_end_ms=window[1], interruptible=not reserved and rng.random() < 0.5))
    bids = []
    for i in range(n_bids):
        kind = rng.random()
        accepted: frozenset[str]
        if kind < 0.45:
            accepted = frozenset({models[int(rng.integers(len(models)))]})
        elif kind < 0.80:
            accepted = model_groups[int(rng.integers(len(model_groups)))]
        else:
            accepted = frozenset()
        rkind = rng.random()
        regions: frozenset[str]
        if rkind < 0.35:
            regions = frozenset({REGIONS[int(rng.integers(len(REGIONS)))]})
        elif rkind < 0.70:
            regions = frozenset(str(r) for r in rng.choice(REGIONS, size=int(rng.integers(2, 5)), replace=False))
        else:
            regions = frozenset()
        basis = sorted(accepted) if accepted else models
        ref = float(np.mean([reference[m] for m in basis]))
        memory = Fraction(int(rng.choice([24, 40, 80]))) if rng.random() < 0.20 else Fraction(0)
        reserved = rng.random() < 0.10
        start, end = None, None
        if reserved:
            w_start, w_end = WINDOWS[int(rng.integers(len(WINDOWS)))]
            hours = int(rng.choice([4, 8, 24]))
            offset = int(rng.integers(0, 24 - hours + 1))
            start, end = w_start + offset * 3_600_000, w_start + (offset + hours) * 3_600_000
        bids.append(Bid(id=f"b{i:06d}", tenant=f"t{i % 211}", devices=int(rng.choice([1, 1, 2, 4, 8, 8, 16],
                                                                                     p=[.2, .1, .2, .2, .15, .1, .05])),
                        limit_fen_per_du=int(ref * rng.uniform(0.75, 1.35)), models=accepted,
                        min_device_memory_gb=memory, regions=regions,
                        tier=TIERS[int(rng.integers(3))] if rng.random() < 0.25 else None,
                        kind="reserved" if reserved else "spot", window_start_ms=start, window_end_ms=end))
    return bids, offers


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence what HiGHS prints from C++ straight to file descriptor 1."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def surplus(book: OrderBook, pairs: list[tuple[int, int]]) -> float:
    return float(sum((pair_surplus(book, b, o) for b, o in pairs), Fraction(0)))


def lp_bound(book: OrderBook) -> float:
    """Upper bound on any clearing's surplus: the LP relaxation without the uniform-price rows."""
    pairs = candidate_pairs(book)
    if not pairs:
        return 0.0
    n = len(pairs)
    bid_idx = np.array([b for b, _ in pairs])
    offer_idx = np.array([o for _, o in pairs])
    weight = np.array([float(pair_surplus(book, b, o)) for b, o in pairs])
    devices = np.array([book.bids[b].devices for b in bid_idx.tolist()], dtype=float)
    rows = vstack([coo_matrix((np.ones(n), (bid_idx, np.arange(n))), shape=(len(book.bids), n)),
                   coo_matrix((devices, (offer_idx, np.arange(n))), shape=(len(book.offers), n))]).tocsr()
    limits = np.concatenate([np.ones(len(book.bids)), book.offer_devices.astype(float)])
    result = linprog(-weight, A_ub=rows, b_ub=limits, bounds=(0, 1), method="highs")
    return float(-result.fun)


def spot_round_time(args: argparse.Namespace, catalog: Catalog) -> float:
    """Wall time of one spot round: half the spot bids clear first and run as leases, the other half
    arrive as new bids, with 200 on-demand requests (open offers post twice their floor on demand)."""
    bids, offers = make_instance(args.bids, args.offers, args.seed + 3000, catalog)
    open_offers = [dataclasses.replace(o, on_demand_fen_per_du=2 * o.floor_fen_per_du) for o in offers
                   if o.kind == "spot"]
    spot_bids = [b for b in bids if b.kind == "spot"]
    half = len(spot_bids) // 2
    limits = {b.id: b.limit_fen_per_du for b in spot_bids}
    first = clear(spot_bids[:half], open_offers, catalog, at_ms=T0)
    leases = [SpotLease(f"lease-{m.bid_id}", m.bid_id, m.tenant, m.offer_id, m.devices, limits[m.bid_id], T0)
              for m in first.matches]
    rng = np.random.default_rng(args.seed)
    on_demand = [OnDemandRequest(f"od{i}", "t-od", open_offers[int(rng.integers(len(open_offers)))].id,
                                 int(rng.choice([1, 2, 4]))) for i in range(200)]
    t0 = time.perf_counter()
    result = run_spot_round(offers=open_offers, leases=leases, bids=spot_bids[half:], on_demand=on_demand,
                            catalog=catalog, at_ms=T0 + 60_000, notice_ms=120_000)
    elapsed = time.perf_counter() - t0
    reasons = {r: sum(1 for p in result.preemptions if p.reason == r) for r in ("on-demand", "outbid", "capacity")}
    print(f"\nspot round: {len(open_offers):,} open offers, {len(leases):,} leases, "
          f"{len(spot_bids) - half:,} new bids, 200 on-demand: {elapsed:.3f} s")
    print(f"  -> {len(result.allocations):,} new leases, {len(result.on_demand)} on-demand served, "
          f"preemptions {reasons}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids", type=int, default=10_000)
    parser.add_argument("--offers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--time-limit", type=float, default=120.0, help="MILP time limit per instance (s)")
    parser.add_argument("--bound-size", type=int, default=2000,
                        help="also compare with the LP upper bound on this many bids x offers (0: skip)")
    args = parser.parse_args()
    catalog = default_catalog()

    print(f"clearing rounds: {args.bids:,} bids x {args.offers:,} offers (one core; wall time of clear())")
    round_s, cpu_s = [], []
    matched = []
    vs_greedy = []
    for r in range(args.rounds):
        bids, offers = make_instance(args.bids, args.offers, args.seed + r, catalog)
        t0, c0 = time.perf_counter(), time.process_time()
        result = clear(bids, offers, catalog, at_ms=T0)
        round_s.append(time.perf_counter() - t0)
        cpu_s.append(time.process_time() - c0)
        matched.append(len(result.matches))
        book = build_book(bids, offers, catalog, at_ms=T0)
        vs_greedy.append(float(result.surplus_fen) / surplus(book, greedy_pairs(book)) * 100)
        print(f"  round {r}: {round_s[-1]:.3f} s (cpu {cpu_s[-1]:.3f} s)  matched {matched[-1]:,} bids  "
              f"{sum(m.devices for m in result.matches):,} devices  {len(result.prices)} class prices  "
              f"surplus {vs_greedy[-1]:.2f}% of merit-order greedy", flush=True)
    p50, worst = float(np.percentile(round_s, 50)), max(round_s)
    cpu50 = float(np.percentile(cpu_s, 50))
    print(f"  time per round: p50 {p50:.3f} s  max {worst:.3f} s  (cpu p50 {cpu50:.3f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")

    print(f"\nsurplus against the exact optimum (clear_optimal, HiGHS MILP), {args.small} bids x {args.small} offers")
    print(f"{'seed':>6} {'fast surplus':>14} {'optimal':>14} {'fast %':>8} {'greedy %':>9} {'fast s':>7} {'milp s':>7}")
    ratios, greedy_ratios = [], []
    for k in range(args.seeds):
        seed = args.seed + 1000 + k
        bids, offers = make_instance(args.small, args.small, seed, catalog)
        t0 = time.perf_counter()
        fast = clear(bids, offers, catalog, at_ms=T0)
        t1 = time.perf_counter()
        with quiet_stdout():
            best = clear_optimal(bids, offers, catalog, at_ms=T0, time_limit_s=args.time_limit)
        t2 = time.perf_counter()
        book = build_book(bids, offers, catalog, at_ms=T0)
        ratio = float(fast.surplus_fen / best.surplus_fen) * 100 if best.surplus_fen else 100.0
        greedy = surplus(book, greedy_pairs(book)) / float(best.surplus_fen) * 100 if best.surplus_fen else 100.0
        ratios.append(ratio)
        greedy_ratios.append(greedy)
        print(f"{seed:>6} {float(fast.surplus_fen):>14,.0f} {float(best.surplus_fen):>14,.0f} {ratio:>8.3f} "
              f"{greedy:>9.3f} {t1 - t0:>7.3f} {t2 - t1:>7.2f}", flush=True)
    print(f"  fast: mean {np.mean(ratios):.3f}%  min {min(ratios):.3f}%   "
          f"greedy baseline: mean {np.mean(greedy_ratios):.3f}%")

    bound_ratios = []
    if args.bound_size:
        print(f"\nsurplus against the LP upper bound, {args.bound_size} bids x {args.bound_size} offers")
        for k in range(2):
            seed = args.seed + 2000 + k
            bids, offers = make_instance(args.bound_size, args.bound_size, seed, catalog)
            book = build_book(bids, offers, catalog, at_ms=T0)
            fast_surplus = float(clear(bids, offers, catalog, at_ms=T0).surplus_fen)
            bound = lp_bound(book)
            bound_ratios.append(fast_surplus / bound * 100)
            print(f"  seed {seed}: fast {fast_surplus:,.0f}  LP bound {bound:,.0f}  fast >= {bound_ratios[-1]:.3f}% "
                  f"of optimal  (greedy {surplus(book, greedy_pairs(book)) / bound * 100:.3f}%)", flush=True)

    spot_s = spot_round_time(args, catalog)

    size = {"n_bids": args.bids, "n_offers": args.offers}
    small = {"n_bids": args.small, "n_offers": args.small}
    lines = [("round_s", p50, size), ("round_s_max", worst, size), ("round_cpu_s", cpu50, size),
             ("matched_bids", float(np.mean(matched)), size),
             ("surplus_vs_greedy_pct", float(np.mean(vs_greedy)), size),
             ("surplus_vs_optimal_pct", float(np.mean(ratios)), small),
             ("surplus_vs_optimal_min_pct", min(ratios), small),
             ("greedy_vs_optimal_pct", float(np.mean(greedy_ratios)), small)]
    lines.append(("spot_round_s", spot_s, size))
    if bound_ratios:
        lines.append(("surplus_vs_lp_bound_pct", float(np.mean(bound_ratios)),
                      {"n_bids": args.bound_size, "n_offers": args.bound_size}))
    for metric, value, dims in lines:
        print(json.dumps({"bench": "market_clear", "metric": metric, "value": round(value, 4), **dims}))


if __name__ == "__main__":
    main()
