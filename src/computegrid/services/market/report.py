"""What one market round decided, as the API shows it and the round's record stores it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from computegrid.core.market import ClassPrice
from computegrid.services.views import iso


@dataclass
class RoundReport:
    at_ms: int
    allocations: list[dict[str, Any]] = field(default_factory=list)
    preemptions: list[dict[str, Any]] = field(default_factory=list)
    on_demand: list[dict[str, Any]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[dict[str, Any]] = field(default_factory=list)
    reserved: list[dict[str, Any]] = field(default_factory=list)
    prices: list[ClassPrice] = field(default_factory=list)
    index_points: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    round_id: int | None = None

    @property
    def decided(self) -> bool:
        """Whether the round changed anything worth a record (an idle round leaves none)."""
        return bool(self.allocations or self.preemptions or self.on_demand or self.ended or self.reserved
                    or self.index_points or self.notes)

    def view(self) -> dict[str, Any]:
        return {"round_id": self.round_id, "at_ms": self.at_ms, "at": iso(self.at_ms),
                "allocations": self.allocations, "preemptions": self.preemptions, "on_demand": self.on_demand,
                "ended_leases": self.ended, "unmatched_bids": self.unmatched, "reserved": self.reserved,
                "prices": [{"model": p.market_class.model, "region": p.market_class.region,
                            "price_fen_per_du": p.price_fen_per_du, "highest_floor": p.highest_floor,
                            "lowest_limit": p.lowest_limit, "devices": p.devices} for p in self.prices],
                "index_points": self.index_points, "notes": self.notes}
