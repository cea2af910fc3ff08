"""NVIDIA device discovery and telemetry through nvidia-smi, when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from computegrid.backends.base import InventoryDevice

# nvidia-smi product names to catalog models; the first pattern that matches wins.
# Names that match none (e.g. "NVIDIA A800 40GB Active", a workstation card with other figures, or the China-only
# "RTX 4090 D" with fewer cores) stay unmapped rather than being billed as a look-alike.
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"H100", "H100-80G"), (r"A100.*80", "A100-80G"), (r"A100", "A100-40G"), (r"L40S", "L40S"),
    (r"A10\b", "A10"), (r"T4\b", "T4"), (r"V100.*32", "V100-32G"), (r"V100", "V100-16G"), (r"P100", "P100-16G"),
    (r"A800.*80", "A800-80G"), (r"A800.*40GB PCIe", "A800-40G"), (r"H800", "H800-80G"), (r"H200", "H200-141G"),
    (r"H20\b", "H20"), (r"L20\b", "L20"), (r"L4\b", "L4"), (r"RTX 4090(?! D)\b", "RTX4090"), (r"K80\b", "K80"),
)


def catalog_model_for(product_name: str) -> str | None:
    for pattern, model in _NAME_RULES:
        if re.search(pattern, product_name):
            return model
    return None


def _query(fields: str) -> list[list[str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line.strip()]


def nvidia_devices() -> list[InventoryDevice]:
    devices = []
    for index, name, memory_mib in _query("index,name,memory.total"):
        model = catalog_model_for(name)
        if model is not None:
            devices.append(InventoryDevice(index=int(index), model=model, memory_gb=round(float(memory_mib) / 1024, 3)))
    return devices


def nvidia_telemetry() -> list[dict[str, Any]]:
    samples = []
    for index, util, mem_used, power in _query("index,utilization.gpu,memory.used,power.draw"):
        def num(text: str) -> float | None:
            try:
                return float(text)
            except ValueError:
                return None
        used = num(mem_used)
        samples.append({"index": int(index), "utilisation_pct": num(util),
                        "memory_used_gb": None if used is None else used / 1024, "power_w": num(power)})
    return samples
