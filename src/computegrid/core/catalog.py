"""Accelerator catalog: models, their rated figures, and the source of each row.

The data lives in `data/accelerators.csv`; an empty cell means no public source
confirms the figure, and it stays unknown (None) rather than guessed.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.data import packaged_text


@dataclass(frozen=True)
class AcceleratorModel:
    """One catalog entry. Memory in GB, bandwidth in GB/s, throughput in TFLOP/s (TOP/s for INT8).

    Every figure, memory included, is None when no public source confirms it.
    """

    model: str
    aliases: tuple[str, ...]
    vendor: str
    family: str
    memory_gb: Fraction | None
    memory_bandwidth_gbs: Fraction | None
    fp16_tflops: Fraction | None
    fp32_tflops: Fraction | None
    int8_tops: Fraction | None
    tdp_w: Fraction | None
    interconnect: str
    software: str
    source: str


class UnknownAccelerator(ValueError):
    """A name matches no model, alias, prefix group, family or vendor in the catalog."""


def _opt(cell: str) -> Fraction | None:
    return Fraction(cell) if cell.strip() else None


@dataclass(frozen=True)
class Catalog:
    """An immutable set of accelerator models, looked up by name."""

    models: tuple[AcceleratorModel, ...]

    def get(self, model: str) -> AcceleratorModel:
        """The entry for a canonical model name or alias; raises UnknownAccelerator."""
        for entry in self.models:
            if entry.model == model or model in entry.aliases:
                return entry
        raise UnknownAccelerator(f"unknown accelerator model {model!r}")

    def resolve(self, name: str) -> frozenset[str]:
        """Canonical models a request name stands for.

        A name may be a canonical model (`A100-80G`), an alias (`V100M32`), a prefix
        group (`A100` means every `A100-*`), a family (`ampere`) or a vendor (`nvidia`),
        compared case-insensitively. Raises UnknownAccelerator when nothing matches.
        """
        key = name.strip().lower()
        found = {
            e.model
            for e in self.models
            if key == e.model.lower()
            or key in (a.lower() for a in e.aliases)
            or e.model.lower().startswith(key + "-")
            or key in (e.family, e.vendor)
        }
        if not found:
            raise UnknownAccelerator(f"unknown accelerator {name!r}")
        return frozenset(found)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.model for e in self.models)


def parse_catalog(text: str) -> Catalog:
    """Parse catalog CSV text (the format of `data/accelerators.csv`)."""
    rows = csv.DictReader(io.StringIO(text))
    models = []
    for line, row in enumerate(rows, start=2):
        if None in row.values() or None in row:
            raise ValueError(f"catalog line {line} ({row.get('model')!r}) does not have the header's columns")
        if not row["source"].strip():
            raise ValueError(f"catalog row {row['model']!r} names no source")
        models.append(
            AcceleratorModel(
                model=row["model"],
                aliases=tuple(a for a in row["aliases"].split("|") if a),
                vendor=row["vendor"],
                family=row["family"],
                memory_gb=_opt(row["memory_gb"]),
                memory_bandwidth_gbs=_opt(row["memory_bandwidth_gbs"]),
                fp16_tflops=_opt(row["fp16_tflops"]),
                fp32_tflops=_opt(row["fp32_tflops"]),
                int8_tops=_opt(row["int8_tops"]),
                tdp_w=_opt(row["tdp_w"]),
                interconnect=row["interconnect"],
                software=row["software"],
                source=row["source"],
            )
        )
    return Catalog(models=tuple(models))


@functools.cache
def default_catalog() -> Catalog:
    """The catalog shipped with the package (static data, read once)."""
    return parse_catalog(packaged_text("accelerators.csv"))
