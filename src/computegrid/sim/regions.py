"""Regions of the simulated federation: the shared region table and latency estimates of `core.regions`.

The data files and the RTT generator moved to `core` so the live scheduler loads the same table; this
module keeps the simulator's imports working. Regenerate the RTT file with
`python -m computegrid.sim.regions > src/computegrid/core/data/region_rtt_ms.csv` (or `core.regions`).
"""

from __future__ import annotations

import sys

from computegrid.core.regions import (
    EARTH_RADIUS_KM,
    FIBRE_KM_PER_MS,
    ROUTE_FACTOR,
    RTT_HEADER,
    SWITCHING_MS,
    Region,
    default_regions,
    default_rtt,
    estimate_rtt_ms,
    great_circle_km,
    parse_regions,
    parse_rtt,
    rtt_csv,
)

__all__ = ["EARTH_RADIUS_KM", "FIBRE_KM_PER_MS", "ROUTE_FACTOR", "RTT_HEADER", "SWITCHING_MS", "Region",
           "default_regions", "default_rtt", "estimate_rtt_ms", "great_circle_km", "parse_regions", "parse_rtt",
           "rtt_csv"]

if __name__ == "__main__":
    sys.stdout.write(rtt_csv(default_regions()))
