"""Core billing refusals as service errors: each becomes a 4xx with the rule's own message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from computegrid.core.billing import errors as core
from computegrid.services.errors import Conflict, Invalid, NotFound, ServiceError


class PaymentRequired(ServiceError):
    """The wallet (with its credit limit) or the receivable cannot cover the amount."""

    status = 402


def as_service_error(exc: core.BillingError) -> ServiceError:
    """The service error for a core refusal; the message is the core's, which names the value and the rule."""
    message = str(exc)
    if isinstance(exc, core.InsufficientFunds):
        return PaymentRequired(message)
    if isinstance(exc, core.UnknownProduct):
        return NotFound(message)
    if isinstance(exc, core.DuplicateKeyConflict | core.ProductInactive | core.CardExpired | core.CardNotApplicable):
        return Conflict(message)
    return Invalid(message)


@contextmanager
def refusing() -> Iterator[None]:
    """Turn a core BillingError raised inside the block into the matching service error."""
    try:
        yield
    except core.BillingError as exc:
        raise as_service_error(exc) from exc
