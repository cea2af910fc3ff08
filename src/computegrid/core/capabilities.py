"""What a site's engine can run, declared as data (SkyPilot's "features as data, not failures").

Each backend declares its `EngineCapabilities`; the agent sends them when it registers, the pool carries
them per node, and placement filters on them, so a job never reaches an engine that would refuse it.
A site that has declared nothing (an older agent) is taken to support everything (`ANY`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from computegrid.core.units import MILLI_PER_DEVICE


@dataclass(frozen=True)
class EngineCapabilities:
    """`shares`: a fraction of one device (`T4:0.5`); `images`: a container image (`image:`);
    `gangs`: one job on several nodes; `models`: the accelerator models it can be asked for
    (None: any model its inventory lists)."""

    shares: bool = True
    images: bool = True
    gangs: bool = True
    models: frozenset[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"shares": self.shares, "images": self.images, "gangs": self.gangs,
                "models": None if self.models is None else sorted(self.models)}

    def to_json(self) -> str:
        """The stored form (`Site.capabilities`)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineCapabilities:
        """From `to_dict`'s form; raises ValueError naming a bad field."""
        unknown = set(data) - {"shares", "images", "gangs", "models"}
        if unknown:
            raise ValueError(f"unknown capability {', '.join(sorted(unknown))}; known: shares, images, gangs, models")
        flags: dict[str, bool] = {}
        for key in ("shares", "images", "gangs"):
            value = data.get(key, True)
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
            flags[key] = value
        models = data.get("models")
        if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
            raise ValueError(f"models must be a list of model names or null, got {models!r}")
        return cls(models=None if models is None else frozenset(models), **flags)

    @classmethod
    def from_json(cls, text: str) -> EngineCapabilities:
        """The stored form back; "" (not declared) is `ANY`."""
        return cls.from_dict(json.loads(text)) if text else ANY

    def refusal(self, *, milli_per_device: int, image: bool, nodes: int, models: Iterable[str] = ()) -> str | None:
        """Why this engine would not take a request (None: it would), in words for a reason.

        `milli_per_device` is the share of each device (milli-devices, 0 for none), `image` whether the job
        names a container image, `nodes` its gang size, `models` the accelerator models it holds.
        """
        if 0 < milli_per_device < MILLI_PER_DEVICE and not self.shares:
            return "device shares"
        if image and not self.images:
            return "container images"
        if nodes > 1 and not self.gangs:
            return "multi-node gangs"
        if self.models is not None:
            other = sorted(set(models) - self.models)
            if other:
                return f"model {', '.join(other)}"
        return None


#: what an undeclared site is taken to support: everything
ANY = EngineCapabilities()
