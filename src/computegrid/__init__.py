"""computegrid: pool, schedule and trade accelerator capacity across compute centres."""

__version__ = "0.1.0"
