"""sim/engine.py and core/queueing.py: event order, queue orders, EASY-backfill reservations."""

from __future__ import annotations

import pytest

from computegrid.core.queueing import (
    FairShareQueue,
    FifoQueue,
    QueuedJob,
    Reservation,
    ShortestJobFirstQueue,
    make_queue,
)
from computegrid.sim.engine import EventEngine, EventKind


def test_events_go_by_time_then_kind_then_schedule_order() -> None:
    engine = EventEngine(seed=3)
    engine.schedule(10, EventKind.ARRIVAL, "a10")
    engine.schedule(5, EventKind.ARRIVAL, "a5")
    engine.schedule(10, EventKind.COMPLETE, "c10")
    engine.schedule(10, EventKind.ARRIVAL, "b10")
    engine.schedule(10, EventKind.TICK, "t10")
    seen: list[tuple[int, str]] = []
    settled: list[int] = []
    engine.run(lambda kind, payload: seen.append((engine.now_ms, payload)), settled.append)
    assert seen == [(5, "a5"), (10, "c10"), (10, "t10"), (10, "a10"), (10, "b10")]
    assert settled == [5, 10]  # one settle per millisecond, after its last event
    assert engine.handled == 5


def test_an_event_in_the_past_is_refused() -> None:
    engine = EventEngine()
    engine.schedule(100, EventKind.TICK)
    engine.pop()
    with pytest.raises(ValueError, match="before now"):
        engine.schedule(99, EventKind.ARRIVAL)


def test_the_engine_rng_is_seeded() -> None:
    assert EventEngine(7).rng.integers(1 << 30) == EventEngine(7).rng.integers(1 << 30)


def job(job_id: int, arrival: int, duration: int = 10, devices: int = 1, group: str = "") -> QueuedJob:
    return QueuedJob(job_id, arrival, duration, devices, group)


def test_fifo_and_sjf_orders() -> None:
    fifo, sjf = FifoQueue(), ShortestJobFirstQueue()
    for q in (fifo, sjf):
        q.push(job(1, 0, 100))
        q.push(job(2, 5, 10))
        q.push(job(3, 5, 10))
        q.push(job(0, 1, 50))
    assert [j.job_id for j in fifo.ordered(10)] == [1, 0, 2, 3]
    assert [j.job_id for j in sjf.ordered(10)] == [2, 3, 0, 1]
    sjf.remove(2)
    assert sjf.head() == job(3, 5, 10)
    with pytest.raises(ValueError, match="already queued"):
        fifo.push(job(1, 0, 100))
    with pytest.raises(KeyError):
        fifo.remove(42)


def test_fifo_keeps_arrival_order_when_a_job_is_requeued_late() -> None:
    q = FifoQueue()
    q.push(job(5, 50))
    q.push(job(6, 60))
    q.push(job(1, 10))  # requeued with its first arrival
    assert [j.job_id for j in q.ordered(5)] == [1, 5, 6]
    q.remove(1)
    q.push(job(1, 10))
    assert [j.job_id for j in q.ordered(5)] == [1, 5, 6]
    assert len(q) == 3


def test_a_requeued_job_is_not_seen_twice_in_sjf() -> None:
    q = ShortestJobFirstQueue()
    q.push(job(1, 0, 10))
    q.remove(1)
    q.push(job(1, 0, 10))
    assert [j.job_id for j in q.ordered(5)] == [1]


def test_fair_share_prefers_the_group_holding_least_per_weight() -> None:
    q = FairShareQueue(weights={"a": 2, "b": 1})
    q.push(job(1, 0, group="a"))
    q.push(job(2, 1, group="a"))
    q.push(job(3, 2, group="b"))
    assert q.head() == job(1, 0, group="a")  # nobody holds anything: earliest arrival
    q.on_start(QueuedJob(9, 0, 10, 4, "a"))  # a holds 4 devices at weight 2 -> share 2
    q.on_start(QueuedJob(8, 0, 10, 1, "b"))  # b holds 1 device at weight 1 -> share 1
    assert q.head() == job(3, 2, group="b")
    q.on_start(QueuedJob(7, 0, 10, 2, "b"))  # b: 3 > a: 2
    assert q.head() == job(1, 0, group="a")
    assert [j.job_id for j in q.ordered(3)] == [1, 3, 2]  # groups take turns, in share order
    q.on_finish(QueuedJob(9, 0, 10, 4, "a"))
    with pytest.raises(ValueError, match="more devices than it held"):
        q.on_finish(QueuedJob(9, 0, 10, 4, "a"))


def test_make_queue_knows_three_policies() -> None:
    assert isinstance(make_queue("fifo"), FifoQueue) and not make_queue("fifo").backfill
    assert make_queue("fair").backfill
    with pytest.raises(KeyError, match="known: fifo, sjf, fair"):
        make_queue("lifo")


def test_reservation_shadow_time_and_admission() -> None:
    # two nodes of 4 devices: node 0 has 1 free, node 1 has 0; the head needs 4 on one node
    releases = [(300, [(1, 4)]), (100, [(0, 3)])]
    with pytest.raises(ValueError, match="out of order"):
        Reservation.plan(7, 0, [1, 0], releases, per_node=4, nodes=1)
    res = Reservation.plan(7, 0, [1, 0], sorted(releases), per_node=4, nodes=1)
    assert res is not None and res.start_ms == 100
    assert res.admits(100, [(0, 1)])  # ends by the shadow time
    assert not res.admits(101, [(0, 1)])  # would keep node 0 below 4 at 100
    # at 300 both nodes fit: a gang of 2 x 4 waits for the last release
    gang = Reservation.plan(8, 0, [1, 0], sorted(releases), per_node=4, nodes=2)
    assert gang is not None and gang.start_ms == 300
    assert Reservation.plan(9, 0, [1, 0], sorted(releases), per_node=5, nodes=1) is None


def test_reservation_lets_a_long_job_use_devices_the_head_does_not_need() -> None:
    # node 0 (8 devices) is full until 100; node 1 has 4 free; the head wants 8 on one node
    res = Reservation.plan(1, 0, [0, 4], [(100, [(0, 8)])], per_node=8, nodes=1)
    assert res is not None and res.start_ms == 100
    assert res.admits(10_000, [(1, 2)])
    res.take(10_000, [(1, 2)])
    assert res.free_at_start == [8, 2]
    assert not res.admits(10_000, [(0, 1)])
