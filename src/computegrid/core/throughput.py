"""Heterogeneity table: measured training throughput of (accelerator model, workload class) pairs.

Rated FP16 (the du) says what a device could do; this table says what it did on a given job. It is seeded
with Gavel's isolated-throughput measurements (`data/gavel_throughputs.csv`, source in its header) and
extended with lab measurements through `ThroughputTable.with_measurements`.

Units: throughput in training steps per second (steps/s) of one job on `scale_factor` devices; prices in
integer fen per du; a device's hourly price in fen per hour.

Gavel worker types map to catalog models as follows (`GAVEL_WORKER_MODELS`):
- `k80` -> `K80`: Gavel's K80 worker is one GK210 GPU, which is what the catalog's K80 row describes.
- `p100` -> `P100-16G`: the only P100 in the catalog.
- `v100` -> `V100-16G`: Gavel's docs and throughput file name only "v100", never its memory size. We take
  the 16 GB part because Gavel's artifact runs on AWS EC2 (its README points to an EC2 AMI), where the
  standard V100 instances (p3.2xlarge/8xlarge/16xlarge) carry V100-SXM2-16GB, and every Gavel workload fits
  in 16 GB. Rated FP16 is the same for both V100 rows, so the choice changes no du figure.
The `<type>_unconsolidated` variants are the same GPUs measured with a multi-device job spread across
servers rather than packed in one; they are kept apart with `consolidated=False`.

A measured 0.0 is kept as given: Gavel records 0.0 where a job did not run on that worker (e.g. out of
memory), which is a measurement, unlike an absent row (unmeasured -> None).
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType

from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.data import packaged_text

GAVEL_WORKER_MODELS: Mapping[str, str] = MappingProxyType({"k80": "K80", "p100": "P100-16G", "v100": "V100-16G"})
_UNCONSOLIDATED = "_unconsolidated"
_COLUMNS = ("job_type", "scale_factor", "worker_type", "throughput_steps_per_s")


@dataclass(frozen=True)
class ThroughputRow:
    """One measurement: `steps_per_s` training steps per second of `workload` on `scale_factor` devices
    of catalog model `model`, packed on one server (`consolidated`) or spread across servers."""

    model: str
    workload: str
    scale_factor: int
    steps_per_s: float
    consolidated: bool = True

    def __post_init__(self) -> None:
        if not self.model.strip() or not self.workload.strip():
            raise ValueError("a throughput row needs a model and a workload")
        if isinstance(self.scale_factor, bool) or not isinstance(self.scale_factor, int) or self.scale_factor < 1:
            raise ValueError(f"scale_factor must be a positive integer, got {self.scale_factor!r}")
        if not math.isfinite(self.steps_per_s) or self.steps_per_s < 0:
            raise ValueError(f"steps_per_s must be finite and >= 0, got {self.steps_per_s!r}")

    @property
    def key(self) -> tuple[str, str, int, bool]:
        return (self.model, self.workload, self.scale_factor, self.consolidated)


def _index(rows: Iterable[ThroughputRow]) -> dict[tuple[str, str, int, bool], ThroughputRow]:
    index: dict[tuple[str, str, int, bool], ThroughputRow] = {}
    for row in rows:
        if row.key in index:
            raise ValueError(f"duplicate throughput row for {row.key!r}")
        index[row.key] = row
    return index


@dataclass(frozen=True)
class ThroughputTable:
    """An immutable set of throughput measurements, one per (model, workload, scale factor, placement)."""

    rows: tuple[ThroughputRow, ...]
    _by_key: Mapping[tuple[str, str, int, bool], ThroughputRow] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", MappingProxyType(_index(self.rows)))

    def workload_classes(self) -> tuple[str, ...]:
        """The measured workload classes (Gavel's job types, e.g. "ResNet-50 (batch size 64)"), sorted."""
        return tuple(sorted({r.workload for r in self.rows}))

    def models(self) -> tuple[str, ...]:
        """Catalog models with at least one measurement, sorted."""
        return tuple(sorted({r.model for r in self.rows}))

    def effective(self, model: str, workload: str, scale_factor: int = 1, *, consolidated: bool = True) -> float | None:
        """Measured throughput in steps/s of `workload` on `scale_factor` devices of `model`; None if unmeasured."""
        row = self._by_key.get((model, workload, scale_factor, consolidated))
        return None if row is None else row.steps_per_s

    def relative_speed(self, model: str, workload: str, baseline_model: str, scale_factor: int = 1) -> float | None:
        """How many times faster `model` runs `workload` than `baseline_model` (dimensionless ratio of steps/s).

        None when either is unmeasured or the baseline measured 0 steps/s (the ratio is undefined).
        """
        speed = self.effective(model, workload, scale_factor)
        base = self.effective(baseline_model, workload, scale_factor)
        if speed is None or base is None or base == 0:
            return None
        return speed / base

    def with_measurements(self, rows: Iterable[ThroughputRow]) -> ThroughputTable:
        """A new table where `rows` (e.g. lab measurements, in steps/s) replace seeded rows with the same
        (model, workload, scale factor, placement) and add the rest. `rows` must not repeat a key."""
        new = _index(rows)
        kept = tuple(r for r in self.rows if r.key not in new)
        return ThroughputTable(rows=kept + tuple(new.values()))

    def rank_models(self, models: Iterable[str], workload: str, price_fen_per_du: Mapping[str, int],
                    catalog: Catalog) -> list[str]:
        """Order `models` best value first for one device running `workload` (scale factor 1).

        A device's hourly price (fen/h) = its price in fen per du x its du per hour, and du per hour is its
        rated dense FP16 in PFLOP/s (catalog `fp16_tflops` / 1000). Three tiers, each sorted by score, best
        first, ties by model name:
        1. models with a measurement for `workload`: measured steps/s per fen/h;
        2. models without one: rated FP16 TFLOPS per fen/h (= 1000 / price per du, so this tier is by price);
        3. models with no price, no FP16 rating, or not in the catalog: by name.
        Measured models come before rated-only ones because the two scores are in different units and a
        measurement is the stronger evidence. Raises ValueError for a price that is not a positive integer.
        """
        measured: list[tuple[float, str]] = []
        rated: list[tuple[float, str]] = []
        unknown: list[str] = []
        for model in dict.fromkeys(models):
            price = price_fen_per_du.get(model)
            if price is not None and (isinstance(price, bool) or not isinstance(price, int) or price <= 0):
                raise ValueError(f"price for {model!r} must be a positive integer number of fen per du, got {price!r}")
            try:
                fp16 = catalog.get(model).fp16_tflops
            except UnknownAccelerator:
                fp16 = None
            if price is None or fp16 is None:
                unknown.append(model)
                continue
            fen_per_hour = Fraction(price) * fp16 / 1000
            steps = self.effective(model, workload)
            if steps is None:
                rated.append((float(fp16 / fen_per_hour), model))
            else:
                measured.append((steps / float(fen_per_hour), model))
        measured.sort(key=lambda t: (-t[0], t[1]))
        rated.sort(key=lambda t: (-t[0], t[1]))
        return [m for _, m in measured] + [m for _, m in rated] + sorted(unknown)


def _model_for_worker(worker_type: str) -> tuple[str, bool]:
    consolidated = not worker_type.endswith(_UNCONSOLIDATED)
    base = worker_type if consolidated else worker_type[: -len(_UNCONSOLIDATED)]
    return GAVEL_WORKER_MODELS.get(base, base), consolidated


def parse_throughputs(text: str) -> ThroughputTable:
    """Parse throughput CSV text (columns job_type, scale_factor, worker_type, throughput_steps_per_s).

    Lines starting with '#' and blank lines are skipped. A worker type is a Gavel name (k80, p100, v100,
    optionally with `_unconsolidated`), mapped by `GAVEL_WORKER_MODELS`, or else taken as a catalog model
    name. Throughput is in steps/s. Raises ValueError on a malformed or duplicate row.
    """
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if reader.fieldnames is None:
        return ThroughputTable(rows=())
    if tuple(reader.fieldnames) != _COLUMNS:
        raise ValueError(f"throughput header must be {','.join(_COLUMNS)}, got {','.join(reader.fieldnames)}")
    rows = []
    for number, raw in enumerate(reader, start=2):
        if None in raw or None in raw.values():
            raise ValueError(f"throughput data row {number} does not have the header's columns")
        try:
            scale = int(raw["scale_factor"])
            steps = float(raw["throughput_steps_per_s"])
        except ValueError as exc:
            raise ValueError(f"throughput data row {number}: {exc}") from exc
        model, consolidated = _model_for_worker(raw["worker_type"].strip())
        rows.append(ThroughputRow(model=model, workload=raw["job_type"].strip(), scale_factor=scale,
                                  steps_per_s=steps, consolidated=consolidated))
    return ThroughputTable(rows=tuple(rows))


@functools.cache
def default_throughputs() -> ThroughputTable:
    """The Gavel-seeded table shipped with the package (static data, read once)."""
    return parse_throughputs(packaged_text("gavel_throughputs.csv"))
