"""Integer fen and exact du: validation and the one rounding rule.

Rounding rule (see docs/billing.md): amounts are computed exactly as `Fraction`s and
rounded once, half up (x.5 fen -> x+1 fen), where a money line is produced.
"""

from __future__ import annotations

import math
from fractions import Fraction

from computegrid.core.billing.errors import BillingError, InvalidAmount


def round_half_up(amount: Fraction) -> int:
    """Round an exact fen amount to whole fen, halves upwards (towards +infinity)."""
    return math.floor(amount + Fraction(1, 2))


def require_fen(value: object, what: str, *, allow_zero: bool = False) -> int:
    """Return `value` if it is an int fen amount > 0 (>= 0 with allow_zero); else raise InvalidAmount."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{what} must be a whole number of fen (int), got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "positive"
        raise InvalidAmount(f"{what} must be {bound}, got {value} fen")
    return value


def require_du(value: object, what: str, *, allow_zero: bool = False) -> Fraction:
    """Return `value` as an exact du Fraction if it is > 0 (>= 0 with allow_zero); else raise InvalidAmount."""
    if isinstance(value, bool) or not isinstance(value, int | Fraction):
        raise InvalidAmount(f"{what} must be an exact du amount (int or Fraction), got {value!r}")
    du = Fraction(value)
    if du < 0 or (du == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "positive"
        raise InvalidAmount(f"{what} must be {bound}, got {du} du")
    return du


def require_ratio(value: object, what: str) -> Fraction:
    """Return `value` as a Fraction in [0, 1]; floats are refused because they are not exact."""
    if isinstance(value, bool) or not isinstance(value, int | Fraction):
        raise InvalidAmount(f"{what} must be an exact ratio (Fraction), got {value!r}")
    ratio = Fraction(value)
    if not 0 <= ratio <= 1:
        raise InvalidAmount(f"{what} must be between 0 and 1, got {ratio}")
    return ratio


def require_time_ms(value: object, what: str) -> int:
    """Return `value` if it is an int of epoch milliseconds; else raise BillingError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BillingError(f"{what} must be epoch milliseconds (int), got {value!r}")
    return value
