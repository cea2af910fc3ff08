"""The market: offers and bids, clearing at a uniform price per class, spot rounds, reservations, quotes.

Prices are integer fen per du, capacity whole devices, times epoch milliseconds. See docs/market.md.
"""

from computegrid.core.market.auction import AuctionSettings
from computegrid.core.market.classes import MarketClass, OrderError, cost_fen, du_per_device_hour
from computegrid.core.market.clearing import clear
from computegrid.core.market.index import PricePoint, SpotIndex
from computegrid.core.market.optimal import SolverFailed, clear_optimal
from computegrid.core.market.orders import (
    Bid,
    Offer,
    check_bid,
    check_offer,
    check_spot_bid_floor,
    class_floors,
    parse_models,
)
from computegrid.core.market.quote import Quote, QuoteOption, QuoteRequest, quote
from computegrid.core.market.reserved import Reservation, free_devices, resell, reserve
from computegrid.core.market.result import ClassPrice, Clearing, Match, uniform_price
from computegrid.core.market.spot import (
    OnDemandGrant,
    OnDemandRequest,
    Preemption,
    SpotAllocation,
    SpotLease,
    SpotRound,
    run_spot_round,
)

__all__ = [
    "AuctionSettings", "Bid", "ClassPrice", "Clearing", "MarketClass", "Match", "Offer", "OnDemandGrant",
    "OnDemandRequest", "OrderError", "Preemption", "PricePoint", "Quote", "QuoteOption", "QuoteRequest",
    "Reservation", "SolverFailed", "SpotAllocation", "SpotIndex", "SpotLease", "SpotRound", "check_bid",
    "check_offer", "check_spot_bid_floor", "class_floors", "clear", "clear_optimal", "cost_fen",
    "du_per_device_hour", "free_devices", "parse_models", "quote", "reserve", "resell", "run_spot_round",
    "uniform_price",
]
