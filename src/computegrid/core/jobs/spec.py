"""The job specification: a SkyPilot-like task file, validated with messages that name the field.

The caller parses YAML/JSON into a dict; this module turns the dict into a typed,
immutable `JobSpec`, or raises `SpecError` listing every problem found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.units import MILLI_PER_DEVICE, to_milli

TIERS = ("core", "hub", "edge")
GANG_SPREADS = ("site", "region")  # a gang on one site (the default), or on sites of one region
MAX_NODES = 1024
MAX_DEVICES_PER_NODE = 64
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TOP_KEYS = {
    "name", "run", "image", "workdir", "envs", "resources", "nodes", "placement",
    "interruptible", "max_price_fen_per_du", "deadline", "requeue_on_lost", "max_attempts", "workload",
    "time_limit", "reservation", "priority", "gang",
}
# A job's priority class and its rank in the queue's priority factor (Job.priority_class stores the rank).
PRIORITY_CLASSES = {"low": 0, "normal": 1, "high": 2}
DEFAULT_PRIORITY = "normal"
MAX_TIME_LIMIT_S = 365 * 24 * 3600
_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_RESOURCE_KEYS = {"accelerators", "min_device_memory_gb", "cpus", "memory_gb"}
_PLACEMENT_KEYS = {"tier", "user_region", "max_rtt_ms"}


@dataclass(frozen=True)
class SpecProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A job specification with one or more problems, each naming its field."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Resources:
    """Per-node request. `milli_per_node` is milli-devices (1000 = one device); 0 means CPU only."""

    accelerators: str | None = None
    models: frozenset[str] = frozenset()
    milli_per_node: int = 0
    min_device_memory_gb: Fraction | None = None
    cpu_milli: int = 1000
    memory_mb: int = 1024


@dataclass(frozen=True)
class Routing:
    """Where the job may run: a tier, and/or a user region with a maximum round-trip time (ms)."""

    tier: str | None = None
    user_region: str | None = None
    max_rtt_ms: int | None = None


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: str | None
    image: str | None
    workdir: str | None
    envs: dict[str, str] = field(default_factory=dict)
    resources: Resources = Resources()
    nodes: int = 1
    routing: Routing = Routing()
    interruptible: bool = False
    max_price_fen_per_du: int | None = None
    deadline_ms: int | None = None
    requeue_on_lost: bool = True
    max_attempts: int = 3
    workload: str | None = None  # a workload class of the throughput table, for choosing among models
    time_limit_s: int | None = None  # the engine stops the job after this long (Slurm --time, a K8s deadline)
    reservation: int | None = None  # run on this reserved block (a lease id the tenant holds), at its price
    gang_spread: str = "site"  # a gang lands whole on one site, or ("region") on sites of one region
    priority: str = DEFAULT_PRIORITY  # a key of PRIORITY_CLASSES; the tenant must be allowed it

    def to_dict(self) -> dict[str, Any]:
        """The canonical, JSON-ready form; `parse_job_spec(spec.to_dict())` gives the spec back."""
        # A float's shortest repr parses back to the same Fraction, so this form round-trips exactly.
        res: dict[str, Any] = {"cpus": self.resources.cpu_milli / 1000, "memory_gb": self.resources.memory_mb / 1024}
        if self.resources.accelerators:
            count = self.resources.milli_per_node / MILLI_PER_DEVICE
            res["accelerators"] = f"{self.resources.accelerators}:{count:g}"
        if self.resources.min_device_memory_gb is not None:
            res["min_device_memory_gb"] = str(self.resources.min_device_memory_gb)
        out: dict[str, Any] = {"name": self.name, "resources": res, "nodes": self.nodes,
                               "interruptible": self.interruptible,
                               "requeue_on_lost": self.requeue_on_lost, "max_attempts": self.max_attempts}
        for key in ("run", "image", "workdir"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.envs:
            out["envs"] = dict(self.envs)
        placement = {k: v for k, v in vars(self.routing).items() if v is not None}
        if placement:
            out["placement"] = placement
        if self.max_price_fen_per_du is not None:
            out["max_price_fen_per_du"] = self.max_price_fen_per_du
        if self.workload is not None:
            out["workload"] = self.workload
        if self.time_limit_s is not None:
            out["time_limit"] = self.time_limit_s
        if self.reservation is not None:
            out["reservation"] = self.reservation
        if self.gang_spread != "site":
            out["gang"] = {"spread": self.gang_spread}
        if self.priority != DEFAULT_PRIORITY:
            out["priority"] = self.priority
        if self.deadline_ms is not None:
            out["deadline"] = (_EPOCH + timedelta(milliseconds=self.deadline_ms)).isoformat()
        return out


class _Collector:
    def __init__(self) -> None:
        self.problems: list[SpecProblem] = []

    def add(self, field_name: str, message: str) -> None:
        self.problems.append(SpecProblem(field_name, message))


def _unknown_keys(c: _Collector, prefix: str, data: dict[str, Any], allowed: set[str]) -> None:
    for key in sorted(set(data) - allowed):
        c.add(f"{prefix}{key}", f"unknown field; allowed: {', '.join(sorted(allowed))}")


def _positive_number(c: _Collector, name: str, value: Any, *, allow_zero: bool = False) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        c.add(name, f"must be a number, got {type(value).__name__}")
        return None
    try:
        number = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        c.add(name, f"must be a number, got {value!r}")
        return None
    if number < 0 or (number == 0 and not allow_zero):
        c.add(name, f"must be {'non-negative' if allow_zero else 'positive'}, got {value}")
        return None
    return number


def _int_in(c: _Collector, name: str, value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        c.add(name, f"must be an integer, got {value!r}")
        return None
    if not low <= value <= high:
        c.add(name, f"must be between {low} and {high}, got {value}")
        return None
    return value


def _bool(c: _Collector, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        c.add(name, f"must be true or false, got {value!r}")
        return False
    return value


def _optional_str(c: _Collector, name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        c.add(name, "must be a non-empty string")
        return None
    return value


def _parse_accelerators(c: _Collector, value: Any, catalog: Catalog) -> tuple[str | None, frozenset[str], int]:
    name = "resources.accelerators"
    if isinstance(value, dict):
        if len(value) != 1:
            c.add(name, "give exactly one entry, such as {A100: 2}")
            return None, frozenset(), 0
        ((model_expr, count),) = value.items()
    elif isinstance(value, str):
        model_expr, _, count_text = value.partition(":")
        count = count_text or 1
    else:
        c.add(name, f"must look like 'A100:2' or {{A100: 2}}, got {value!r}")
        return None, frozenset(), 0
    models: set[str] = set()
    for alternative in str(model_expr).split("|"):
        try:
            models |= catalog.resolve(alternative)
        except UnknownAccelerator:
            c.add(name, f"unknown accelerator {alternative.strip()!r}; known models: {', '.join(catalog.names)}")
            return None, frozenset(), 0
    number = _positive_number(c, f"{name} (count)", count)
    if number is None:
        return None, frozenset(), 0
    if number > 1 and number.denominator != 1:
        c.add(name, f"a count above 1 must be whole, got {count}")
        return None, frozenset(), 0
    if number > MAX_DEVICES_PER_NODE:
        c.add(name, f"at most {MAX_DEVICES_PER_NODE} devices per node, got {count}")
        return None, frozenset(), 0
    try:
        milli = to_milli(number)
    except ValueError as exc:
        c.add(name, str(exc))
        return None, frozenset(), 0
    return str(model_expr).strip(), frozenset(models), milli


def _parse_resources(c: _Collector, data: Any, catalog: Catalog) -> Resources:
    if data is None:
        return Resources()
    if not isinstance(data, dict):
        c.add("resources", "must be a mapping")
        return Resources()
    _unknown_keys(c, "resources.", data, _RESOURCE_KEYS)
    accel, models, milli = (None, frozenset[str](), 0)
    if data.get("accelerators") is not None:
        accel, models, milli = _parse_accelerators(c, data["accelerators"], catalog)
    min_mem = None
    if data.get("min_device_memory_gb") is not None:
        min_mem = _positive_number(c, "resources.min_device_memory_gb", data["min_device_memory_gb"])
        if min_mem is not None and not accel:
            c.add("resources.min_device_memory_gb", "needs resources.accelerators")
    cpus = _positive_number(c, "resources.cpus", data.get("cpus", 1))
    if cpus is not None and cpus * 1000 < 1:
        c.add("resources.cpus", f"must be at least 0.001, got {data.get('cpus')}")
        cpus = None
    mem = _positive_number(c, "resources.memory_gb", data.get("memory_gb", 1))
    if mem is not None and mem * 1024 < 1:
        c.add("resources.memory_gb", f"must be at least 1 MiB (0.0009765625), got {data.get('memory_gb')}")
        mem = None
    return Resources(
        accelerators=accel,
        models=models,
        milli_per_node=milli,
        min_device_memory_gb=min_mem,
        cpu_milli=int(cpus * 1000) if cpus is not None else 1000,
        memory_mb=int(mem * 1024) if mem is not None else 1024,
    )


def _parse_routing(c: _Collector, data: Any) -> Routing:
    if data is None:
        return Routing()
    if not isinstance(data, dict):
        c.add("placement", "must be a mapping")
        return Routing()
    _unknown_keys(c, "placement.", data, _PLACEMENT_KEYS)
    tier = data.get("tier")
    if tier is not None and tier not in TIERS:
        c.add("placement.tier", f"must be one of {', '.join(TIERS)}, got {tier!r}")
        tier = None
    region = _optional_str(c, "placement.user_region", data.get("user_region"))
    rtt = None
    if data.get("max_rtt_ms") is not None:
        rtt = _int_in(c, "placement.max_rtt_ms", data["max_rtt_ms"], 1, 10_000)
        if rtt is not None and region is None:
            c.add("placement.max_rtt_ms", "needs placement.user_region")
    return Routing(tier=tier, user_region=region, max_rtt_ms=rtt)


def _parse_gang(c: _Collector, data: Any) -> str:
    """`gang: {spread: site | region}`: how far a multi-node job may spread (default: one site)."""
    if data is None:
        return "site"
    if not isinstance(data, dict):
        c.add("gang", "must be a mapping such as {spread: region}")
        return "site"
    _unknown_keys(c, "gang.", data, {"spread"})
    spread = data.get("spread", "site")
    if spread not in GANG_SPREADS:
        c.add("gang.spread", f"must be one of {', '.join(GANG_SPREADS)}, got {spread!r}")
        return "site"
    return str(spread)


def _parse_deadline(c: _Collector, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            c.add("deadline", f"must be an ISO 8601 time such as 2026-12-01T18:00:00+08:00, got {value!r}")
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # integer arithmetic: no float rounding


def _parse_priority(c: _Collector, value: Any) -> str:
    if value is None:
        return DEFAULT_PRIORITY
    if not isinstance(value, str) or value not in PRIORITY_CLASSES:
        c.add("priority", f"must be one of {', '.join(PRIORITY_CLASSES)}, got {value!r}")
        return DEFAULT_PRIORITY
    return value


def _parse_time_limit(c: _Collector, value: Any) -> int | None:
    """Seconds as an integer, or a duration such as '90s', '30m', '2h', '1d12h'."""
    if value is None:
        return None
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value.strip():
        match = _DURATION_RE.fullmatch(value.strip())
        if match and any(match.groups()):
            d, h, m, s = (int(g or 0) for g in match.groups())
            seconds = ((d * 24 + h) * 60 + m) * 60 + s
    if seconds is None:
        c.add("time_limit", f"must be seconds or a duration such as 30m, 2h or 1d12h, got {value!r}")
        return None
    if not 1 <= seconds <= MAX_TIME_LIMIT_S:
        c.add("time_limit", f"must be between 1 second and 365 days, got {value!r}")
        return None
    return seconds


def parse_job_spec(data: Any, catalog: Catalog) -> JobSpec:
    """Validate a job specification dict against the catalog; raises SpecError naming each bad field."""
    c = _Collector()
    if not isinstance(data, dict):
        raise SpecError([SpecProblem("(top level)", "a job spec must be a mapping of fields")])
    _unknown_keys(c, "", data, _TOP_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        c.add("name", "required; 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
    run = _optional_str(c, "run", data.get("run"))
    image = _optional_str(c, "image", data.get("image"))
    if run is None and image is None:
        c.add("run", "give a command to run, or an image")
    envs_raw = data.get("envs") or {}
    envs: dict[str, str] = {}
    if not isinstance(envs_raw, dict):
        c.add("envs", "must be a mapping of NAME: value")
    else:
        for key, val in envs_raw.items():
            if not isinstance(key, str) or not _ENV_RE.fullmatch(key):
                c.add(f"envs.{key}", "not a valid environment variable name")
            elif isinstance(val, dict | list):
                c.add(f"envs.{key}", "must be a scalar value")
            else:
                envs[key] = "" if val is None else str(val)
    resources = _parse_resources(c, data.get("resources"), catalog)
    nodes = _int_in(c, "nodes", data.get("nodes", 1), 1, MAX_NODES) or 1
    if nodes > 1 and 0 < resources.milli_per_node < MILLI_PER_DEVICE:
        c.add("nodes", "a multi-node gang must ask for whole devices on each node")
    routing = _parse_routing(c, data.get("placement"))
    max_price = None
    if data.get("max_price_fen_per_du") is not None:
        max_price = _int_in(c, "max_price_fen_per_du", data["max_price_fen_per_du"], 0, 10**12)
    workload = _optional_str(c, "workload", data.get("workload"))
    if workload is not None and len(workload) > 128:
        c.add("workload", "at most 128 characters")
    spec = JobSpec(
        workload=workload,
        name=name if isinstance(name, str) else "",
        run=run,
        image=image,
        workdir=_optional_str(c, "workdir", data.get("workdir")),
        envs=envs,
        resources=resources,
        nodes=nodes,
        routing=routing,
        interruptible=_bool(c, "interruptible", data.get("interruptible", False)),
        max_price_fen_per_du=max_price,
        deadline_ms=_parse_deadline(c, data.get("deadline")),
        requeue_on_lost=_bool(c, "requeue_on_lost", data.get("requeue_on_lost", True)),
        max_attempts=_int_in(c, "max_attempts", data.get("max_attempts", 3), 1, 100) or 3,
        time_limit_s=_parse_time_limit(c, data.get("time_limit")),
        reservation=_int_in(c, "reservation", data["reservation"], 1, 2**62) if data.get("reservation") is not None
        else None,
        gang_spread=_parse_gang(c, data.get("gang")),
        priority=_parse_priority(c, data.get("priority")),
    )
    if c.problems:
        raise SpecError(c.problems)
    return spec
