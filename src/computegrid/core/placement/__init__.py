"""Placement policies behind one interface. See `base.py` for the contract."""

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementPolicy,
    PlacementRequest,
    get_policy,
    register_policy,
)
from computegrid.core.placement.first_fit import FirstFit

__all__ = [
    "FirstFit",
    "Placement",
    "PlacementFailure",
    "PlacementPolicy",
    "PlacementRequest",
    "get_policy",
    "register_policy",
]
