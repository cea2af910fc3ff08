"""Placement policies behind one interface. See `base.py` for the contract and README.md for the list."""

from computegrid.core.placement.base import (
    Placement,
    PlacementFailure,
    PlacementPolicy,
    PlacementRequest,
    get_policy,
    policy_names,
    register_policy,
)
from computegrid.core.placement.best_fit import BestFit
from computegrid.core.placement.dot_product import DotProduct
from computegrid.core.placement.fgd import FragmentationGradientDescent
from computegrid.core.placement.fgd_balance import FgdBalance
from computegrid.core.placement.first_fit import FirstFit
from computegrid.core.placement.fragmentation import TypicalPod, typical_pods
from computegrid.core.placement.gpu_clustering import GpuClustering
from computegrid.core.placement.gpu_packing import GpuPacking
from computegrid.core.placement.preference import prefer_models
from computegrid.core.placement.random_policy import RandomPlacement

__all__ = [
    "BestFit",
    "DotProduct",
    "FgdBalance",
    "FirstFit",
    "FragmentationGradientDescent",
    "GpuClustering",
    "GpuPacking",
    "Placement",
    "PlacementFailure",
    "PlacementPolicy",
    "PlacementRequest",
    "RandomPlacement",
    "TypicalPod",
    "get_policy",
    "policy_names",
    "prefer_models",
    "register_policy",
    "typical_pods",
]
