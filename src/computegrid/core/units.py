"""Exact units: milli-devices, milliseconds and du.

1 du = one PFLOP/s of rated dense FP16/BF16 capacity held for one hour
(see ARCHITECTURE.md). Capacity is counted in integer milli-devices (1000 = one
whole device) and time in integer milliseconds, so sums never drift.
"""

from __future__ import annotations

from fractions import Fraction

MILLI_PER_DEVICE = 1000
MS_PER_HOUR = 3_600_000
TFLOPS_PER_PFLOPS = 1000


def to_milli(count: Fraction | int | float | str) -> int:
    """Convert a device count (1, 0.5, "0.25") to integer milli-devices.

    Raises ValueError when the count is not a whole number of milli-devices.
    """
    value = Fraction(str(count)) if not isinstance(count, Fraction) else count
    milli = value * MILLI_PER_DEVICE
    if milli.denominator != 1:
        raise ValueError(f"{count} is not a whole number of milli-devices")
    return int(milli)


def device_seconds(milli_device_ms: int) -> Fraction:
    """Milli-device-milliseconds to device-seconds, exactly."""
    return Fraction(milli_device_ms, MILLI_PER_DEVICE * 1000)


def du_from_usage(milli_device_ms: int, fp16_tflops: Fraction) -> Fraction:
    """du for holding `milli_device_ms` of a device rated at `fp16_tflops` dense TFLOP/s.

    du = device-hours x rated PFLOP/s; exact.
    """
    device_hours = Fraction(milli_device_ms, MILLI_PER_DEVICE * MS_PER_HOUR)
    return device_hours * fp16_tflops / TFLOPS_PER_PFLOPS
