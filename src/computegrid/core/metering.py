"""Usage intervals to device-seconds and du (see docs/metering.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.units import device_seconds, du_from_usage


@dataclass(frozen=True)
class UsageInterval:
    """A share of one device (milli, 1000 = whole) held from `start_ms` to `end_ms` (epoch ms)."""

    model: str | None
    share_milli: int
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise ValueError(f"interval ends ({self.end_ms}) before it starts ({self.start_ms})")
        if not 0 < self.share_milli <= 1000:
            raise ValueError(f"share must be 1..1000 milli-devices, got {self.share_milli}")

    @property
    def milli_device_ms(self) -> int:
        return (self.end_ms - self.start_ms) * self.share_milli


@dataclass(frozen=True)
class Usage:
    device_seconds: Fraction
    du: Fraction | None  # None when some model's FP16 rating is unknown


def meter(intervals: Iterable[UsageInterval], catalog: Catalog) -> Usage:
    """Sum intervals into device-seconds and du, exactly."""
    total_dev = Fraction(0)
    total_du: Fraction | None = Fraction(0)
    for iv in intervals:
        total_dev += device_seconds(iv.milli_device_ms)
        try:
            tflops = catalog.get(iv.model).fp16_tflops if iv.model else None
        except UnknownAccelerator:
            tflops = None
        if tflops is None or total_du is None:
            total_du = None
        else:
            total_du += du_from_usage(iv.milli_device_ms, tflops)
    return Usage(device_seconds=total_dev, du=total_du)
