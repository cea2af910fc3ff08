"""A tenant's bought hour cards and packages, and drawing usage down from them.

A holding's value is released at its own price per du: after `u` of its `N` du are
used, round_half_up(u x price / N) fen have left the prepaid liability. Releasing by
the cumulative figure makes the released fen add up to exactly the price when the card
is used up, whatever the draws were. Refunds and expiry release what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction

from computegrid.core.billing.accounts import BREAKAGE_REVENUE, prepaid, wallet
from computegrid.core.billing.errors import BillingError, CardExpired, CardNotApplicable
from computegrid.core.billing.ledger import Posting, transfer
from computegrid.core.billing.money import require_du, require_fen, require_time_ms, round_half_up


class HoldingState(StrEnum):
    ACTIVE = "active"
    REFUNDED = "refunded"
    EXPIRED = "expired"  # written off after its expiry; its unused value became breakage revenue


@dataclass(frozen=True)
class Holding:
    """One bought card or package: `du_total` du for `price_fen`, valid in [valid_from_ms, expires_ms)."""

    holding_id: str
    tenant: str
    product_id: str
    du_total: Fraction
    price_fen: int
    valid_from_ms: int
    expires_ms: int
    allowed_models: frozenset[str] | None = None
    du_used: Fraction = Fraction(0)
    state: HoldingState = HoldingState.ACTIVE
    priority: int = 0  # a training package's: its holder's jobs' package priority while it is valid

    def __post_init__(self) -> None:
        require_du(self.du_total, f"holding {self.holding_id!r} du")
        require_fen(self.price_fen, f"holding {self.holding_id!r} price")
        if self.expires_ms <= self.valid_from_ms:
            raise BillingError(f"holding {self.holding_id!r} expires before it becomes valid")
        if not 0 <= self.du_used <= self.du_total:
            raise BillingError(f"holding {self.holding_id!r}: used du {self.du_used} outside 0..{self.du_total}")

    @property
    def du_left(self) -> Fraction:
        return self.du_total - self.du_used if self.state is HoldingState.ACTIVE else Fraction(0)

    def released_fen(self, du_used: Fraction) -> int:
        """Fen of the price released once `du_used` du are consumed (cumulative, half up)."""
        return round_half_up(du_used * self.price_fen / self.du_total)

    @property
    def value_left_fen(self) -> int:
        """Prepaid liability still held for this holding, in fen."""
        return self.price_fen - self.released_fen(self.du_used) if self.state is HoldingState.ACTIVE else 0

    def is_valid_at(self, at_ms: int) -> bool:
        return self.state is HoldingState.ACTIVE and self.valid_from_ms <= at_ms < self.expires_ms

    def covers(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


@dataclass(frozen=True)
class CardDraw:
    """du taken from one holding and the prepaid fen that released (at the holding's price per du)."""

    holding_id: str
    du: Fraction
    value_fen: int


@dataclass(frozen=True)
class DrawDown:
    """The du covered by cards, the draws, and every holding after the draws (same order as given)."""

    covered_du: Fraction
    draws: tuple[CardDraw, ...]
    holdings: tuple[Holding, ...]

    @property
    def value_fen(self) -> int:
        return sum(d.value_fen for d in self.draws)


def _take(holding: Holding, du: Fraction) -> tuple[Holding, CardDraw]:
    used = holding.du_used + du
    value = holding.released_fen(used) - holding.released_fen(holding.du_used)
    return replace(holding, du_used=used), CardDraw(holding.holding_id, du, value)


def draw_down(holdings: Sequence[Holding], du_needed: Fraction, model: str, at_ms: int) -> DrawDown:
    """Cover up to `du_needed` du of usage on `model` at `at_ms` from the holdings.

    Only active holdings valid at `at_ms` that cover the model are drawn, the soonest
    to expire first (ties by holding id); expired ones are never drawn. What cards
    cannot cover is left for the wallet.
    """
    need = require_du(du_needed, "du to draw", allow_zero=True)
    require_time_ms(at_ms, "usage time")
    current = list(holdings)
    order = sorted((i for i, h in enumerate(current) if h.is_valid_at(at_ms) and h.covers(model) and h.du_left > 0),
                   key=lambda i: (current[i].expires_ms, current[i].holding_id))
    draws = []
    covered = Fraction(0)
    for i in order:
        if covered == need:
            break
        take = min(current[i].du_left, need - covered)
        current[i], draw = _take(current[i], take)
        draws.append(draw)
        covered += take
    return DrawDown(covered_du=covered, draws=tuple(draws), holdings=tuple(current))


def draw_from(holding: Holding, du: Fraction, model: str, at_ms: int) -> tuple[Holding, CardDraw]:
    """Draw `du` from one named holding; raises instead of skipping when it cannot be used."""
    amount = require_du(du, "du to draw")
    _require_usable(holding, at_ms, "drawn")
    if not holding.covers(model):
        raise CardNotApplicable(f"holding {holding.holding_id!r} does not cover {model}; "
                                f"it covers {', '.join(sorted(holding.allowed_models or ()))}")
    if amount > holding.du_left:
        raise CardNotApplicable(f"holding {holding.holding_id!r} has {holding.du_left} du left, not {amount}")
    return _take(holding, amount)


def _require_usable(holding: Holding, at_ms: int, verb: str) -> None:
    require_time_ms(at_ms, "time")
    if holding.state is not HoldingState.ACTIVE:
        raise BillingError(f"holding {holding.holding_id!r} is {holding.state} and cannot be {verb}")
    if at_ms >= holding.expires_ms:
        raise CardExpired(f"holding {holding.holding_id!r} expired at {holding.expires_ms} ms and cannot be {verb}")
    if at_ms < holding.valid_from_ms:
        raise CardExpired(f"holding {holding.holding_id!r} is not valid until {holding.valid_from_ms} ms")


def refund_holding(holding: Holding, at_ms: int) -> tuple[Holding, Posting | None]:
    """Refund a valid holding's unused value to the wallet (key `refund:<holding_id>`).

    The refund is the prepaid value not yet released, at the holding's own price per du.
    An expired holding cannot be refunded (CardExpired). The posting is None when
    nothing is left to refund.
    """
    _require_usable(holding, at_ms, "refunded")
    value = holding.value_left_fen
    closed = replace(holding, state=HoldingState.REFUNDED)
    if value == 0:
        return closed, None
    posting = transfer(f"refund:{holding.holding_id}", at_ms, f"refund unused {holding.du_left} du of "
                       f"{holding.product_id}", prepaid(holding.tenant), wallet(holding.tenant), value)
    return closed, posting


def expire_holding(holding: Holding, at_ms: int) -> tuple[Holding, Posting | None]:
    """Write off a holding at or after its expiry (key `expire:<holding_id>`).

    Its unused prepaid value becomes breakage revenue. None when nothing was left.
    """
    require_time_ms(at_ms, "time")
    if holding.state is not HoldingState.ACTIVE:
        raise BillingError(f"holding {holding.holding_id!r} is already {holding.state}")
    if at_ms < holding.expires_ms:
        raise BillingError(f"holding {holding.holding_id!r} does not expire until {holding.expires_ms} ms")
    value = holding.value_left_fen
    closed = replace(holding, state=HoldingState.EXPIRED)
    if value == 0:
        return closed, None
    posting = transfer(f"expire:{holding.holding_id}", at_ms, f"{holding.du_left} du of {holding.product_id} "
                       "expired unused", prepaid(holding.tenant), BREAKAGE_REVENUE, value)
    return closed, posting
