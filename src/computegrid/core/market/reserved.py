"""Reserved blocks: devices x a future window bought from a reserved (or resale) offer, and resale.

An offer's capacity is counted over time: reservations that overlap in time add up, and at no
instant may they exceed the offer's devices. A reservation is priced at the offer's floor (its
posted price, fen per du). Unused reserved time can be put back on the market: `resell` turns the
future part of a reservation into a `resale` offer owned by the tenant, never the same devices twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from computegrid.core.catalog import Catalog
from computegrid.core.market.classes import MarketClass, OrderError, cost_fen
from computegrid.core.market.orders import Offer, check_offer
from computegrid.core.units import MS_PER_HOUR


@dataclass(frozen=True)
class Reservation:
    """`devices` devices of offer `offer_id` held by `tenant` over [start_ms, end_ms) at `price_fen_per_du`."""

    id: str
    tenant: str
    offer_id: str
    market_class: MarketClass
    devices: int
    start_ms: int
    end_ms: int
    price_fen_per_du: int
    du_per_device_hour: Fraction

    @property
    def du(self) -> Fraction:
        """du the block holds: devices x hours x du per device-hour."""
        return self.devices * self.du_per_device_hour * Fraction(self.end_ms - self.start_ms, MS_PER_HOUR)

    @property
    def cost_fen(self) -> Fraction:
        """Exact fen for the whole block (the caller rounds when it posts the charge)."""
        return cost_fen(self.devices, self.du_per_device_hour, self.end_ms - self.start_ms, self.price_fen_per_du)


def peak_devices(blocks: Iterable[tuple[int, int, int]], start_ms: int, end_ms: int) -> int:
    """The most devices held at any instant of [start_ms, end_ms) by blocks (devices, start, end)."""
    events: list[tuple[int, int]] = []
    for devices, begin, finish in blocks:
        begin, finish = max(begin, start_ms), min(finish, end_ms)
        if begin < finish:
            events.append((begin, devices))
            events.append((finish, -devices))
    peak = level = 0
    for _, change in sorted(events):  # at equal times a release (-) sorts before a start (+)
        level += change
        peak = max(peak, level)
    return peak


def free_devices(offer: Offer, reservations: Iterable[Reservation], start_ms: int, end_ms: int) -> int:
    """Devices of `offer` that can still be reserved over all of [start_ms, end_ms)."""
    held = ((r.devices, r.start_ms, r.end_ms) for r in reservations if r.offer_id == offer.id)
    return offer.devices - peak_devices(held, start_ms, end_ms)


def reserve(offer: Offer, reservations: Sequence[Reservation], *, reservation_id: str, tenant: str, devices: int,
            start_ms: int, end_ms: int, at_ms: int, catalog: Catalog) -> Reservation:
    """Reserve `devices` devices of a reserved or resale `offer` over [start_ms, end_ms) (epoch ms).

    `reservations` are those already made on the offer (others are ignored). The window must be in
    the future (start_ms >= at_ms) and inside the offer's window; at no instant may reservations
    exceed the offer's devices. The price is the offer's floor in fen per du. Raises OrderError.
    """
    if offer.kind == "spot":
        raise OrderError(f"offer {offer.id!r} is open spot capacity; reserve from a reserved or resale offer")
    if offer.window_end_ms is not None and offer.window_end_ms <= at_ms:
        raise OrderError(f"offer {offer.id!r} expired at {offer.window_end_ms} ms")
    if not isinstance(devices, int) or isinstance(devices, bool) or devices <= 0:
        raise OrderError(f"reservation {reservation_id!r}: devices must be a positive whole number, got {devices!r}")
    if end_ms <= start_ms:
        raise OrderError(f"reservation {reservation_id!r}: empty window: ends at {end_ms} ms, "
                         f"not after its start {start_ms} ms")
    if start_ms < at_ms:
        raise OrderError(f"reservation {reservation_id!r}: the window starts at {start_ms} ms, in the past "
                         f"(now {at_ms} ms)")
    if not offer.covers(start_ms, end_ms):
        raise OrderError(f"reservation {reservation_id!r}: [{start_ms}, {end_ms}) ms is outside offer "
                         f"{offer.id!r}'s window [{offer.window_start_ms}, {offer.window_end_ms})")
    if any(r.id == reservation_id for r in reservations):
        raise OrderError(f"reservation {reservation_id!r} already exists")
    rate = check_offer(offer, catalog)
    free = free_devices(offer, reservations, start_ms, end_ms)
    if devices > free:
        raise OrderError(f"offer {offer.id!r} has {max(free, 0)} devices free over [{start_ms}, {end_ms}) ms, "
                         f"{devices} asked")
    return Reservation(id=reservation_id, tenant=tenant, offer_id=offer.id, market_class=offer.market_class,
                       devices=devices, start_ms=start_ms, end_ms=end_ms, price_fen_per_du=offer.floor_fen_per_du,
                       du_per_device_hour=rate)


def resell(reservation: Reservation, source: Offer, resales: Sequence[Offer], *, offer_id: str, devices: int,
           from_ms: int, floor_fen_per_du: int, at_ms: int, devices_in_use: int = 0) -> Offer:
    """A resale offer for `devices` unused devices of `reservation` from `from_ms` to its end.

    `source` is the offer the reservation was bought from (site, region, tier, model, memory).
    `resales` are resale offers already made from reservations (those of this one are counted).
    `devices_in_use`: devices the tenant's work holds from `from_ms` on. Only the future can be
    resold (from_ms >= at_ms), and never more devices than are neither in use nor already resold
    at any instant. Raises OrderError.
    """
    what = f"resale of reservation {reservation.id!r}"
    if source.id != reservation.offer_id:
        raise OrderError(f"{what}: it was bought from offer {reservation.offer_id!r}, not {source.id!r}")
    if from_ms < at_ms:
        raise OrderError(f"{what}: only future time can be resold; {from_ms} ms is before now ({at_ms} ms)")
    if from_ms >= reservation.end_ms:
        raise OrderError(f"{what}: the reservation ends at {reservation.end_ms} ms, nothing left from {from_ms} ms")
    if not isinstance(devices, int) or isinstance(devices, bool) or devices <= 0:
        raise OrderError(f"{what}: devices must be a positive whole number, got {devices!r}")
    if devices_in_use < 0:
        raise OrderError(f"{what}: devices in use must not be negative, got {devices_in_use}")
    if any(o.id == offer_id for o in resales):
        raise OrderError(f"{what}: offer {offer_id!r} already exists")
    start = max(from_ms, reservation.start_ms)
    resold = peak_devices(((o.devices, o.window_start_ms or 0, o.window_end_ms or 0) for o in resales
                           if o.reservation_id == reservation.id), start, reservation.end_ms)
    unused = reservation.devices - devices_in_use - resold
    if devices > unused:
        raise OrderError(f"{what}: {max(unused, 0)} devices are unused and not yet resold from {start} ms "
                         f"({reservation.devices} reserved, {devices_in_use} in use, {resold} resold), "
                         f"{devices} asked")
    return Offer(id=offer_id, provider=source.provider, site=source.site, region=source.region, tier=source.tier,
                 model=source.model, device_memory_gb=source.device_memory_gb, devices=devices,
                 floor_fen_per_du=floor_fen_per_du, kind="resale", window_start_ms=start,
                 window_end_ms=reservation.end_ms, interruptible=False, reseller=reservation.tenant,
                 reservation_id=reservation.id)
