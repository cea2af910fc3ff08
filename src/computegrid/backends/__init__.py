"""Execution backends behind one interface (see base.py); engines' SDKs load lazily."""

from computegrid.backends.base import (
    Backend,
    EngineState,
    ExecStatus,
    Inventory,
    InventoryDevice,
    LogRead,
    NodePart,
    RunRequest,
    SubmitRefused,
    UsageSlice,
    get_backend,
    known_backends,
)

__all__ = ["Backend", "EngineState", "ExecStatus", "Inventory", "InventoryDevice", "LogRead", "NodePart", "RunRequest",
           "SubmitRefused", "UsageSlice", "get_backend", "known_backends"]
