"""The exact charge of metered usage: du x fen/du, split where the price band changes.

Each usage interval is cut at the price schedule's band edges (local site time), every
slice is priced at the band in force at its start, and the slices' exact fen are summed.
Rounding happens once per charge (one invoice line): half up to whole fen. A preempted
or cancelled job passes only the intervals it ran (`ran_until`), so it is charged for
nothing after it stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.billing.errors import ChargeError
from computegrid.core.billing.money import round_half_up
from computegrid.core.billing.prices import PriceSchedule, band_at, next_band_change_ms, price_fen_per_du
from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.metering import UsageInterval
from computegrid.core.units import du_from_usage


@dataclass(frozen=True)
class ChargeSlice:
    """Part of an interval inside one price band: [start_ms, end_ms) of `share_milli` of a `model` device."""

    model: str
    share_milli: int
    start_ms: int
    end_ms: int
    band: str | None
    du: Fraction
    fen_per_du: int

    @property
    def exact_fen(self) -> Fraction:
        return self.du * self.fen_per_du


@dataclass(frozen=True)
class Charge:
    """Priced usage: the slices, their total du and the amount in whole fen (rounded once, half up)."""

    slices: tuple[ChargeSlice, ...]

    @property
    def du(self) -> Fraction:
        return sum((s.du for s in self.slices), Fraction(0))

    @property
    def exact_fen(self) -> Fraction:
        return sum((s.exact_fen for s in self.slices), Fraction(0))

    @property
    def amount_fen(self) -> int:
        return round_half_up(self.exact_fen)

    @property
    def models(self) -> frozenset[str]:
        return frozenset(s.model for s in self.slices)


def ran_until(intervals: Iterable[UsageInterval], stop_ms: int) -> tuple[UsageInterval, ...]:
    """The intervals cut at `stop_ms` (epoch ms), the moment a job was preempted or cancelled.

    Parts after `stop_ms` are dropped; intervals that had not started are left out.
    """
    kept = []
    for iv in intervals:
        if iv.start_ms >= stop_ms:
            continue
        kept.append(iv if iv.end_ms <= stop_ms else
                    UsageInterval(model=iv.model, share_milli=iv.share_milli, start_ms=iv.start_ms, end_ms=stop_ms))
    return tuple(kept)


def charge_usage(intervals: Iterable[UsageInterval], *, schedule: PriceSchedule, tier: str, utc_offset_min: int,
                 catalog: Catalog) -> Charge:
    """Price usage intervals at one provider's site (tier, UTC offset in minutes) exactly.

    du per slice = device-hours x rated dense FP16 PFLOP/s x share (see core/metering);
    fen = du x the price in force when the slice starts. Raises ChargeError when an
    interval names no model or the model has no published FP16 rating.
    """
    slices: list[ChargeSlice] = []
    for iv in intervals:
        if iv.end_ms == iv.start_ms:
            continue
        if iv.model is None:
            raise ChargeError(f"usage interval {iv.start_ms}..{iv.end_ms} names no accelerator model")
        try:
            entry = catalog.get(iv.model)
        except UnknownAccelerator as exc:
            raise ChargeError(str(exc)) from None
        if entry.fp16_tflops is None:
            raise ChargeError(f"{entry.model} has no published dense FP16 rating, so its du (and price) is unknown")
        for start, end in _band_pieces(schedule, iv.start_ms, iv.end_ms, utc_offset_min):
            price = price_fen_per_du(schedule, entry.model, tier, start, utc_offset_min)
            slices.append(ChargeSlice(
                model=entry.model, share_milli=iv.share_milli, start_ms=start, end_ms=end,
                band=band_at(schedule, start, utc_offset_min),
                du=du_from_usage((end - start) * iv.share_milli, entry.fp16_tflops), fen_per_du=price))
    return Charge(slices=tuple(slices))


def _band_pieces(schedule: PriceSchedule, start_ms: int, end_ms: int, utc_offset_min: int) -> list[tuple[int, int]]:
    """[start, end) cut at every band change, merging pieces that stay in the same band."""
    pieces: list[tuple[int, int]] = []
    t = start_ms
    while t < end_ms:
        change = next_band_change_ms(schedule, t, utc_offset_min)
        stop = end_ms if change is None else min(end_ms, change)
        if pieces and band_at(schedule, pieces[-1][0], utc_offset_min) == band_at(schedule, t, utc_offset_min):
            pieces[-1] = (pieces[-1][0], stop)
        else:
            pieces.append((t, stop))
        t = stop
    return pieces
