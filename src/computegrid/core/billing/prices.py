"""Provider price schedules: fen per du by accelerator model, tier and time-of-day band.

A schedule has a base price and override rules. Each rule names any of model, tier and
band; the matching rule that names the most specific fields wins, compared in the
order model, then tier, then band (a model rule beats any rule without a model).
Bands are local-time windows of the day (e.g. peak 08:00-22:00); a time outside every
band is in no band, and only rules without a band apply to it. Interruptible capacity
carries a floor price under which the provider never sells it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from computegrid.core.billing.errors import PriceError
from computegrid.core.jobs.spec import TIERS

MINUTES_PER_DAY = 1440
MS_PER_MINUTE = 60_000
MS_PER_DAY = MINUTES_PER_DAY * MS_PER_MINUTE
MIN_UTC_OFFSET_MIN = -12 * 60
MAX_UTC_OFFSET_MIN = 14 * 60
_HHMM = re.compile(r"([01]\d|2[0-4]):([0-5]\d)")


def _require_price(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PriceError(f"{what} must be a whole number of fen per du (int), got {value!r}")
    if value < 0:
        raise PriceError(f"{what} must not be negative, got {value} fen/du")
    return value


def parse_hhmm(text: str) -> int:
    """'08:30' -> 510 minutes after local midnight ('24:00' is 1440)."""
    match = _HHMM.fullmatch(text)
    if not match or (match.group(1) == "24" and match.group(2) != "00"):
        raise PriceError(f"time of day must be HH:MM between 00:00 and 24:00, got {text!r}")
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True)
class TimeBand:
    """A named local-time window [start, end) in minutes after midnight; it wraps when end < start."""

    name: str
    start_minute: int
    end_minute: int

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise PriceError(f"a time band needs a name without surrounding spaces, got {self.name!r}")
        for what, v in (("start", self.start_minute), ("end", self.end_minute)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MINUTES_PER_DAY:
                raise PriceError(f"band {self.name!r}: {what} must be a minute of the day 0..1440, got {v!r}")
        if self.start_minute % MINUTES_PER_DAY == self.end_minute % MINUTES_PER_DAY:
            raise PriceError(f"band {self.name!r} is empty or covers the whole day "
                             f"({self.start_minute}..{self.end_minute}); use the base price instead")

    @classmethod
    def of(cls, name: str, start: str, end: str) -> TimeBand:
        """A band from 'HH:MM' local times, e.g. TimeBand.of('peak', '08:00', '22:00')."""
        return cls(name, parse_hhmm(start), parse_hhmm(end))

    def segments(self) -> tuple[tuple[int, int], ...]:
        """The band as non-wrapping [lo, hi) minute ranges within one day."""
        start, end = self.start_minute % MINUTES_PER_DAY, self.end_minute
        if start < end:
            return ((start, end),)
        return tuple(s for s in ((start, MINUTES_PER_DAY), (0, end)) if s[0] < s[1])


@dataclass(frozen=True)
class PriceRule:
    """An override price (fen per du) for a model, a tier, a band, or a combination of them."""

    fen_per_du: int
    model: str | None = None
    tier: str | None = None
    band: str | None = None

    def __post_init__(self) -> None:
        _require_price(self.fen_per_du, f"price rule {self.selector}")
        if self.model is None and self.tier is None and self.band is None:
            raise PriceError("a price rule must name a model, a tier or a band; use base_fen_per_du otherwise")
        if self.tier is not None and self.tier not in TIERS:
            raise PriceError(f"price rule {self.selector}: tier must be one of {', '.join(TIERS)}")

    @property
    def selector(self) -> str:
        parts = [f"{k}={v}" for k, v in (("model", self.model), ("tier", self.tier), ("band", self.band)) if v]
        return "(" + ", ".join(parts) + ")"

    def matches(self, model: str, tier: str, band: str | None) -> bool:
        return ((self.model is None or self.model == model) and (self.tier is None or self.tier == tier)
                and (self.band is None or self.band == band))

    @property
    def specificity(self) -> tuple[bool, bool, bool]:
        return (self.model is not None, self.tier is not None, self.band is not None)


@dataclass(frozen=True)
class PriceSchedule:
    """One provider's prices in fen per du; validated on construction."""

    provider: str
    base_fen_per_du: int
    rules: tuple[PriceRule, ...] = ()
    bands: tuple[TimeBand, ...] = ()
    interruptible_floor_fen_per_du: int = 0

    def __post_init__(self) -> None:
        if not self.provider:
            raise PriceError("a price schedule needs a provider")
        _require_price(self.base_fen_per_du, f"{self.provider}: base price")
        _require_price(self.interruptible_floor_fen_per_du, f"{self.provider}: interruptible floor")
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "bands", tuple(self.bands))
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise PriceError(f"{self.provider}: band names must be unique, got {names}")
        _reject_overlaps(self.provider, self.bands)
        seen: set[tuple[str | None, str | None, str | None]] = set()
        for rule in self.rules:
            if rule.band is not None and rule.band not in names:
                raise PriceError(f"{self.provider}: price rule {rule.selector} names unknown band {rule.band!r}; "
                                 f"bands: {', '.join(names) or 'none'}")
            selector = (rule.model, rule.tier, rule.band)
            if selector in seen:
                raise PriceError(f"{self.provider}: two price rules for {rule.selector}")
            seen.add(selector)


def _reject_overlaps(provider: str, bands: tuple[TimeBand, ...]) -> None:
    spans = sorted((lo, hi, b.name) for b in bands for lo, hi in b.segments())
    for (_, hi, name), (lo2, _, name2) in zip(spans, spans[1:], strict=False):
        if lo2 < hi:
            raise PriceError(f"{provider}: time bands {name!r} and {name2!r} overlap")


def _require_offset(utc_offset_min: int) -> None:
    if isinstance(utc_offset_min, bool) or not isinstance(utc_offset_min, int) \
            or not MIN_UTC_OFFSET_MIN <= utc_offset_min <= MAX_UTC_OFFSET_MIN:
        raise PriceError(f"UTC offset must be whole minutes between -720 and +840, got {utc_offset_min!r}")


def local_ms_of_day(at_ms: int, utc_offset_min: int) -> int:
    """Milliseconds since local midnight at the site."""
    _require_offset(utc_offset_min)
    return (at_ms + utc_offset_min * MS_PER_MINUTE) % MS_PER_DAY


def band_at(schedule: PriceSchedule, at_ms: int, utc_offset_min: int) -> str | None:
    """The band in force at `at_ms` (epoch ms) at a site `utc_offset_min` minutes from UTC; None when in no band."""
    ms = local_ms_of_day(at_ms, utc_offset_min)
    for band in schedule.bands:
        if any(lo * MS_PER_MINUTE <= ms < hi * MS_PER_MINUTE for lo, hi in band.segments()):
            return band.name
    return None


def next_band_change_ms(schedule: PriceSchedule, at_ms: int, utc_offset_min: int) -> int | None:
    """The first band edge strictly after `at_ms` (epoch ms); None when the schedule has no bands."""
    if not schedule.bands:
        return None
    ms = local_ms_of_day(at_ms, utc_offset_min)
    edges = {edge * MS_PER_MINUTE for b in schedule.bands for seg in b.segments() for edge in seg}
    edges.add(MS_PER_DAY)  # midnight: the cycle repeats
    later = min(e for e in edges if e > ms)
    return at_ms + (later - ms)


def price_fen_per_du(schedule: PriceSchedule, model: str, tier: str, at_ms: int, utc_offset_min: int) -> int:
    """The price in fen per du for `model` (canonical catalog name) at `tier`, at `at_ms` local to the site."""
    if tier not in TIERS:
        raise PriceError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    band = band_at(schedule, at_ms, utc_offset_min)
    matching = [r for r in schedule.rules if r.matches(model, tier, band)]
    if not matching:
        return schedule.base_fen_per_du
    return max(matching, key=lambda r: r.specificity).fen_per_du


def check_interruptible_price(schedule: PriceSchedule, fen_per_du: int) -> int:
    """Return `fen_per_du` if interruptible capacity may be sold at it; PriceError below the floor."""
    _require_price(fen_per_du, "interruptible price")
    if fen_per_du < schedule.interruptible_floor_fen_per_du:
        raise PriceError(f"{schedule.provider}: interruptible price {fen_per_du} fen/du is below the floor of "
                         f"{schedule.interruptible_floor_fen_per_du} fen/du")
    return fen_per_du
