"""Site files: devices an operator declares for a node (for demos and engines without discovery)."""

from __future__ import annotations

from pathlib import Path

import yaml

from computegrid.backends.base import InventoryDevice


class SiteFileError(ValueError):
    pass


def load_declared_devices(path: str | Path) -> list[InventoryDevice]:
    """Read `devices: [{model: A100-80G, count: 2, memory_gb: 80}]`; indices are given by the agent."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SiteFileError(f"cannot read site file {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("devices", []), list):
        raise SiteFileError(f"{path}: expected a mapping with a 'devices' list")
    devices: list[InventoryDevice] = []
    for i, entry in enumerate(data.get("devices", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise SiteFileError(f"{path}: devices[{i}] needs a model")
        count = entry.get("count", 1)
        if not isinstance(count, int) or not 1 <= count <= 64:
            raise SiteFileError(f"{path}: devices[{i}].count must be an integer from 1 to 64")
        memory = entry.get("memory_gb")
        devices.extend(InventoryDevice(index=0, model=entry["model"], memory_gb=memory, source="declared")
                       for _ in range(count))
    return devices
