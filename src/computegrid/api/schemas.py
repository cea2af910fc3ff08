"""Request bodies. Names say their role: `SiteCreate`, `NodeRegister`, `JobStateReport`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantCreate(Strict):
    name: str = Field(max_length=64)


class TenantUpdate(Strict):
    """Operator: per-tenant scheduling limits; a field left out keeps its value."""

    priority_classes: list[str] | None = Field(default=None, max_length=3,
                                               description="classes the tenant's jobs may use: low, normal, high")
    fair_share: int | None = Field(default=None, strict=True, description="fair-share weight, a whole number >= 1")


class ProviderCreate(Strict):
    name: str = Field(max_length=64)


class UserCreate(Strict):
    name: str = Field(max_length=64)
    role: str
    tenant: str | None = None
    provider: str | None = None


class SiteCreate(Strict):
    name: str = Field(max_length=64)
    region: str = Field(max_length=64)
    tier: str
    backend: str = "local"
    electricity_fen_per_kwh: float = Field(ge=0, le=100_000)
    provider: str | None = None


class DeviceRegister(Strict):
    index: int = Field(ge=0, le=1023)
    model: str = Field(max_length=64)
    memory_gb: float | None = Field(default=None, gt=0, le=100_000)
    source: str = Field(default="detected", pattern="^(detected|declared|engine)$")


class EngineCapabilitiesBody(Strict):
    """What the site's engine can run (core.capabilities.EngineCapabilities); models None: any it lists."""

    shares: bool = True
    images: bool = True
    gangs: bool = True
    models: list[str] | None = Field(default=None, max_length=1024)


class NodeRegister(Strict):
    site: str = Field(max_length=64)
    name: str = Field(min_length=1, max_length=128)
    cpu_milli: int = Field(gt=0, le=100_000_000)
    memory_mb: int = Field(gt=0, le=1_000_000_000)
    devices: list[DeviceRegister] = Field(default_factory=list, max_length=1024)
    #: the site's engine; left out by an older agent (the site then keeps what it declared, if anything)
    capabilities: EngineCapabilitiesBody | None = None


class DeviceTelemetry(Strict):
    index: int = Field(ge=0)
    utilisation_pct: float | None = Field(default=None, ge=0, le=100)
    memory_used_gb: float | None = Field(default=None, ge=0)
    power_w: float | None = Field(default=None, ge=0)
    health: str | None = Field(default=None, max_length=16)


class Heartbeat(Strict):
    node_id: int
    telemetry: list[DeviceTelemetry] = Field(default_factory=list, max_length=1024)


class JobStateReport(Strict):
    node_id: int
    attempt: int = Field(ge=1)
    state: str
    exit_code: int | None = None
    reason: str = Field(default="", max_length=2000)
    at_ms: int | None = None


class LogChunk(Strict):
    node_id: int
    attempt: int = Field(ge=1)
    rank: int | None = Field(default=None, ge=0)  # the node's rank in the attempt; None: the same
    offset: int = Field(ge=0)
    data: str


class UsageIntervalIn(Strict):
    device_index: int = Field(ge=-1)
    model: str | None = None
    share_milli: int = Field(default=0, ge=0, le=1000)
    cpu_milli: int = Field(default=0, ge=0)
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)


class UsageReport(Strict):
    node_id: int
    attempt: int = Field(ge=1)
    intervals: list[UsageIntervalIn] = Field(max_length=4096)
