"""The live queue pass replayed in the simulator (sim.live_queue): the same outcomes as tests/api/test_queue_live.py."""

from __future__ import annotations

from computegrid.core.backfill import DEADLINE_SLACK_MS
from computegrid.core.billing.prices import PriceRule, PriceSchedule, TimeBand
from computegrid.core.deferral import PostedTariff
from computegrid.core.placement import PlacementRequest, get_policy
from computegrid.core.pool import DeviceInfo, NodeInfo, PoolSnapshot
from computegrid.sim.live_queue import QueueJob, QueueSettings, replay_queue, replay_specs_queued
from computegrid.sim.live_replay import LiveNode, SpecJob

HOUR = 3_600_000
NOW = 1_800_000_000_000  # 16:00 at UTC+8


def pool(*nodes: tuple[str, str, int]) -> PoolSnapshot:
    """Nodes as (site, tier, T4 devices), ids 0.."""
    infos = [NodeInfo(node_id=i, site=site, region="guizhou", tier=tier, up=True, cpu_milli=64_000,
                      memory_mb=262_144) for i, (site, tier, _) in enumerate(nodes)]
    devices = [DeviceInfo(node_id=i, index=k, model="T4", memory_gb=16.0)
               for i, (_, _, n) in enumerate(nodes) for k in range(n)]
    return PoolSnapshot(infos, devices)


def t4(devices: int) -> PlacementRequest:
    return PlacementRequest(models=frozenset({"T4"}), milli_per_node=devices * 1000)


def starts(jobs: list[QueueJob], snap: PoolSnapshot, settings: QueueSettings | None = None) -> dict[int, int]:
    return {s.job: s.start_ms for s in replay_queue(jobs, snap, get_policy("first-fit"), settings)}


def test_class_and_fair_share_order() -> None:
    jobs = [QueueJob(0, HOUR, t4(1), priority_class=0), QueueJob(0, HOUR, t4(1)),
            QueueJob(0, HOUR, t4(1), priority_class=2)]
    assert starts(jobs, pool(("s1", "core", 1))) == {2: 0, 1: HOUR, 0: 2 * HOUR}
    # b ran first; when both wait again, the tenant that has used less (a) goes first though it came later
    jobs = [QueueJob(0, HOUR, t4(1), tenant="b"), QueueJob(1, HOUR, t4(1), tenant="b"),
            QueueJob(2, HOUR, t4(1), tenant="a")]
    assert starts(jobs, pool(("s1", "core", 1))) == {0: 0, 2: HOUR, 1: 2 * HOUR}


def test_backfill_never_delays_the_head() -> None:
    # as tests/api/test_queue_live.py: 4 devices, a running 2-device job for an hour, then a 4-device head,
    # a 2-device job of 2 h (would delay the head) and one of 30 min (backfills)
    half = HOUR // 2
    jobs = [QueueJob(0, HOUR, t4(2), time_limit_ms=HOUR), QueueJob(1, HOUR, t4(4), time_limit_ms=HOUR),
            QueueJob(1, 2 * HOUR, t4(2), time_limit_ms=2 * HOUR), QueueJob(1, half, t4(2), time_limit_ms=half)]
    got = starts(jobs, pool(("s1", "core", 4)))
    assert got == {0: 0, 3: 1, 1: HOUR, 2: 2 * HOUR}
    fifo = starts(jobs, pool(("s1", "core", 4)), QueueSettings(queue_policy="fifo"))
    assert fifo[2] == 1 and fifo[1] > HOUR  # without backfill the long job goes first and delays the head


PEAK = PriceSchedule("p2", 1000, rules=(PriceRule(300, band="off-peak"),),
                     bands=(TimeBand.of("peak", "08:00", "22:00"), TimeBand.of("off-peak", "22:00", "08:00")))
POSTED = {"s1": PostedTariff("core", PriceSchedule("p1", 900), 480), "s2": PostedTariff("hub", PEAK, 480)}


def test_deferred_jobs_start_in_the_trough_and_meet_their_deadlines() -> None:
    snap = pool(("s1", "core", 4), ("s2", "hub", 4))
    wants = [(24, 2), (5, 2), (7, 2), (30, 8), (14, 10), (40, 1), (6, 4), (9, 3)]
    jobs = [QueueJob(NOW, run * HOUR, t4(1), time_limit_ms=run * HOUR, deadline_ms=NOW + hours * HOUR)
            for hours, run in wants]
    runs = replay_queue(jobs, snap, get_policy("first-fit"), QueueSettings(posted=POSTED))
    assert {r.job for r in runs} == set(range(len(jobs)))
    by_job = {r.job: r for r in runs}
    for j, (hours, run) in enumerate(wants):
        assert by_job[j].start_ms + run * HOUR <= NOW + hours * HOUR
    first = by_job[0]  # deadline a day away: waits for 22:00 at the hub
    assert first.start_ms == NOW + 6 * HOUR and snap.site[snap.node_row[first.allocations[0].node_id]] == "s2"
    assert sum(r.start_ms > NOW for r in runs) >= 3


def test_specs_replay_reads_priority_time_limit_and_deadline() -> None:
    def spec(priority: str, **extra: object) -> dict[str, object]:
        return {"name": "j", "run": "true", "resources": {"accelerators": "T4:1"}, "priority": priority, **extra}

    jobs = [SpecJob(0, HOUR, spec("low")), SpecJob(0, HOUR, spec("normal", time_limit="1h")),
            SpecJob(0, HOUR, spec("high"))]
    runs = replay_specs_queued(jobs, [LiveNode("n1", 8000, 32768, ("T4",))], policy="first-fit")
    assert [(r.job, r.start_ms) for r in runs] == [(2, 0), (1, HOUR), (0, 2 * HOUR)]
    assert runs[0].placement == (("n1", (0,)),) and runs[0].du > 0


def test_a_price_limit_is_judged_on_posted_prices_now() -> None:
    # s1 (flat 900) is busy for an hour; s2 (hub) is free but costs 1000 at peak: the capped job waits for s1
    capped = PlacementRequest(models=frozenset({"T4"}), milli_per_node=1000, max_price_fen_per_du=950)
    jobs = [QueueJob(NOW, HOUR, t4(1)), QueueJob(NOW, HOUR, capped)]
    runs = replay_queue(jobs, pool(("s1", "core", 1), ("s2", "hub", 1)), get_policy("first-fit"),
                        QueueSettings(posted=POSTED))
    assert {r.job: (r.start_ms, r.allocations[0].node_id) for r in runs} == {0: (NOW, 0), 1: (NOW + HOUR, 0)}
    # unpriced (nothing posted), the hub's device takes it at once
    assert starts(jobs, pool(("s1", "core", 1), ("s2", "hub", 1)))[1] == NOW


def test_a_job_refused_behind_the_head_starts_when_its_deadline_is_due() -> None:
    # as test_backfill_never_delays_the_head; the 2 h job must start by 00:45, so it is due at 00:30, an
    # instant with no other event (the live scheduler passes every few seconds and starts it then)
    jobs = [QueueJob(0, HOUR, t4(2), time_limit_ms=HOUR), QueueJob(1, HOUR, t4(4), time_limit_ms=HOUR),
            QueueJob(1, 2 * HOUR, t4(2), time_limit_ms=2 * HOUR, deadline_ms=45 * 60_000 + 2 * HOUR)]
    got = starts(jobs, pool(("s1", "core", 4)))
    assert got[2] == 45 * 60_000 - DEADLINE_SLACK_MS and got[1] > got[2]
