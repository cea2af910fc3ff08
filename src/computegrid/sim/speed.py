"""Per-model speed of a training job: how long a trace job takes on each accelerator model.

A trace job's duration was measured on the trace's own GPUs, the *reference model*. On model M it takes

    duration(M) = trace duration x speed(reference, w) / speed(M, w)

where w is the job's workload class and speed is training steps per second on one device, from
`core.throughput` (Gavel's measurements). The reference is `P100-16G`: Philly's trace (Sep-Dec 2017)
does not say which GPU ran a job (its machine list gives only 12 GB and 24 GB devices); the P100 is the
data-centre generation of that period that Gavel measured and the catalog rates, so it anchors the
ratios. The choice scales every training duration on the pool by the same per-workload factor; the load
factor (see `demand`) is set on the scaled durations.

Models Gavel did not measure (A10, A100, A800, H800, ...) get a speed extrapolated from the measured
ones, per workload: Gavel measured the P100 and the V100, whose rated FP16 differ 125 / 18.7 = 6.7 times,
and the workload's measured speed-up between them gives its sensitivity to rated FP16,

    a(w) = ln(speed(V100, w) / speed(P100, w)) / ln(fp16(V100) / fp16(P100)), clamped to [0, 1],

so speed(M, w) = speed(P100, w) x (fp16(M) / fp16(P100)) ** a(w). A workload that gained nothing from the
V100 gains nothing from newer chips (a = 0); none gains more than the FLOPs ratio (a <= 1). These speeds
are EXTRAPOLATED, not measured: they set simulated durations only. The live scheduler, and with it the
federation's model preference (`routes`), knows only the measured rows.
A model with no FP16 rating (opaque) is assumed as fast as the slowest rated model of the pool.

Workload classes are those Gavel measured at scale factor 1 on both the P100 and the V100 with a
non-zero throughput (all 26 of its classes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction

from computegrid.core.catalog import Catalog, UnknownAccelerator, default_catalog
from computegrid.core.throughput import ThroughputTable, default_throughputs

REFERENCE_MODEL = "P100-16G"
ANCHOR_MODEL = "V100-16G"


def _fp16(model: str, catalog: Catalog) -> Fraction | None:
    try:
        return catalog.get(model).fp16_tflops
    except UnknownAccelerator:
        return None


class SpeedModel:
    """Duration factors (duration on M / trace duration) per (model, workload); see the module docstring."""

    def __init__(self, models: Iterable[str], table: ThroughputTable | None = None, catalog: Catalog | None = None,
                 reference: str = REFERENCE_MODEL, anchor: str = ANCHOR_MODEL) -> None:
        self.table = table or default_throughputs()
        self.catalog = catalog or default_catalog()
        self.reference, self.anchor = reference, anchor
        self.models = tuple(sorted(set(models)))
        ref16, anc16 = _fp16(reference, self.catalog), _fp16(anchor, self.catalog)
        if ref16 is None or anc16 is None or ref16 == anc16:
            raise ValueError(f"reference {reference} and anchor {anchor} need distinct rated FP16 figures")
        self._log_fp16_ratio = math.log(anc16 / ref16)
        self._ref16 = ref16
        self.workloads = tuple(w for w in self.table.workload_classes()
                               if (self.table.effective(reference, w) or 0) > 0
                               and (self.table.effective(anchor, w) or 0) > 0)
        rated = [(f, m) for m in self.models if (f := _fp16(m, self.catalog)) is not None]
        #: the model whose speed opaque (unrated) models are assumed to have
        self.opaque_like = min(rated)[1] if rated else reference
        self._factor: dict[tuple[str, str], float] = {}

    def exponent(self, workload: str) -> float:
        """a(w): the workload's sensitivity to rated FP16, clamped to [0, 1] (dimensionless)."""
        ref = self.table.effective(self.reference, workload) or 0.0
        anc = self.table.effective(self.anchor, workload) or 0.0
        if ref <= 0 or anc <= 0:
            raise KeyError(f"workload {workload!r} is not measured on {self.reference} and {self.anchor}")
        return min(1.0, max(0.0, math.log(anc / ref) / self._log_fp16_ratio))

    def speed(self, model: str, workload: str) -> float:
        """Steps/s of `workload` on one device of `model`: measured where Gavel measured it, else extrapolated."""
        measured = self.table.effective(model, workload)
        if measured is not None and measured > 0:
            return measured
        fp16 = _fp16(model, self.catalog)
        if fp16 is None:
            if model == self.opaque_like:
                raise ValueError(f"no rated model to stand in for {model}")
            return self.speed(self.opaque_like, workload)
        ref = self.table.effective(self.reference, workload) or 0.0
        return float(ref * float(fp16 / self._ref16) ** self.exponent(workload))

    def factor(self, model: str, workload: str | None) -> float:
        """Duration on `model` over the trace duration (1 for a job without a workload class)."""
        if workload is None:
            return 1.0
        key = (model, workload)
        hit = self._factor.get(key)
        if hit is None:
            hit = self._factor[key] = self.speed(self.reference, workload) / self.speed(model, workload)
        return hit

