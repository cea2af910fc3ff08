"""Accelerator classes: the unit a uniform market price is set for.

A class is (accelerator model, region). Not the family: the catalog's families group chips that
buyers do not treat as substitutes at one price per du (`ampere` holds a 24 GB A10 and an 80 GB
A100; du normalises compute, not memory or interconnect). A bid that accepts several models or
regions is matched across classes by the clearing; each class still gets one price.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.units import MS_PER_HOUR, TFLOPS_PER_PFLOPS


class OrderError(ValueError):
    """A market order, request or operation that is rejected, with a message that says why."""


@dataclass(frozen=True, order=True)
class MarketClass:
    """One accelerator model in one region; prices are set per class in fen per du."""

    model: str
    region: str

    def __str__(self) -> str:
        return f"{self.model} in {self.region}"


def du_per_device_hour(model: str, catalog: Catalog) -> Fraction:
    """du for holding one whole device of `model` for one hour: fp16_tflops / 1000, exact.

    Raises OrderError when the model is unknown or has no FP16 rating (it cannot be priced per du).
    """
    try:
        entry = catalog.get(model)
    except UnknownAccelerator:
        raise OrderError(f"unknown accelerator model {model!r}; known models: {', '.join(catalog.names)}") from None
    if entry.fp16_tflops is None:
        raise OrderError(f"{entry.model} has no rated FP16 TFLOPS in the catalog, so it cannot be priced per du")
    return entry.fp16_tflops / TFLOPS_PER_PFLOPS


def hours(duration_ms: int) -> Fraction:
    """A duration in milliseconds as exact hours."""
    return Fraction(duration_ms, MS_PER_HOUR)


def cost_fen(devices: int, du_rate: Fraction, duration_ms: int, price_fen_per_du: int) -> Fraction:
    """Exact fen for `devices` whole devices of du rate `du_rate` (du per device-hour) for `duration_ms`."""
    return devices * du_rate * hours(duration_ms) * price_fen_per_du
