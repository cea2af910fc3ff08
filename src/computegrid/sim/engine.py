"""A small deterministic discrete-event engine.

Events sit in a heap keyed by (time in ms, kind, sequence number): earlier first; at the same
millisecond by kind (`EventKind` order: completions, then preemptions, price-clearing ticks, arrivals,
starts); then in the order they were scheduled. So a run depends only on its inputs and its seed,
never on hash order or wall time. The engine holds the run's one random generator (seeded), for
anything in the world that draws at random.

`run` calls `handle(kind, payload)` for each event with `now_ms` set, and `settle(now_ms)` once all
events of a millisecond are handled (a scheduler's pass goes there: it sees every completion and
arrival of that millisecond at once).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import numpy as np


class EventKind(IntEnum):
    """Kinds of event, in the order they are handled within one millisecond."""

    COMPLETE = 0
    PREEMPT = 1
    TICK = 2
    ARRIVAL = 3
    START = 4


class EventEngine:
    """A heap of (time_ms, kind, seq, payload) and a clock that only moves forward."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.now_ms = 0
        self.handled = 0
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0

    def schedule(self, time_ms: int, kind: EventKind, payload: Any = None) -> None:
        """Add an event at `time_ms` (ms, not before now); raises ValueError for an event in the past."""
        if time_ms < self.now_ms:
            raise ValueError(f"event {kind.name} at {time_ms} ms is before now ({self.now_ms} ms)")
        heapq.heappush(self._heap, (time_ms, int(kind), self._seq, payload))
        self._seq += 1

    def peek_ms(self) -> int | None:
        """The time (ms) of the next event, or None when none is left."""
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[int, EventKind, Any] | None:
        """The next event as (time_ms, kind, payload), advancing the clock; None when none is left."""
        if not self._heap:
            return None
        time_ms, kind, _, payload = heapq.heappop(self._heap)
        self.now_ms = time_ms
        self.handled += 1
        return time_ms, EventKind(kind), payload

    def __len__(self) -> int:
        return len(self._heap)

    def run(self, handle: Callable[[EventKind, Any], None], settle: Callable[[int], None] | None = None,
            *, until_ms: int | None = None) -> None:
        """Handle events in order until none is left (or the next is after `until_ms`).

        `settle(now_ms)` runs after the last event of each millisecond; it may schedule more events.
        """
        heap = self._heap
        kinds = list(EventKind)
        while heap:
            if until_ms is not None and heap[0][0] > until_ms:
                return
            time_ms, kind, _, payload = heapq.heappop(heap)
            self.now_ms = time_ms
            self.handled += 1
            handle(kinds[kind], payload)
            if settle is not None and (not heap or heap[0][0] != time_ms):
                settle(time_ms)
