"""ORM models. Times are integer epoch milliseconds; capacity is milli-devices, milli-CPUs and MiB."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # The priority classes this tenant's jobs may ask for (comma-separated, of low, normal, high); set by operators.
    priority_classes: Mapped[str] = mapped_column(String(32), default="low,normal")
    fair_share: Mapped[int] = mapped_column(Integer, default=1)  # fair-share weight (Slurm's shares), >= 1


class Provider(Base):
    __tablename__ = "providers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # operator | provider | tenant
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)  # the public half of the key
    secret_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the secret half, hex
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    label: Mapped[str] = mapped_column(String(64), default="")
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    region: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(8))
    backend: Mapped[str] = mapped_column(String(16))
    electricity_fen_per_kwh: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # What the site's engine supports, as JSON (see core.pool.Capabilities); "" until its agent declares it.
    capabilities: Mapped[str] = mapped_column(Text, default="")


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (UniqueConstraint("site_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    name: Mapped[str] = mapped_column(String(128))
    cpu_milli: Mapped[int] = mapped_column(BigInteger)
    memory_mb: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(8), default="up")  # up | down
    registered_ms: Mapped[int] = mapped_column(BigInteger)
    last_heartbeat_ms: Mapped[int] = mapped_column(BigInteger)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("node_id", "index"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    index: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(64))
    memory_gb: Mapped[Decimal] = mapped_column(Numeric(10, 3))
    source: Mapped[str] = mapped_column(String(16), default="detected")  # detected | declared
    health: Mapped[str] = mapped_column(String(16), default="ok")
    utilisation_pct: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    memory_used_gb: Mapped[Decimal | None] = mapped_column(Numeric(10, 3))
    power_w: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_state_id", "state", "id"),
        Index("ix_jobs_tenant_id", "tenant_id", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[str] = mapped_column(Text)  # canonical JSON of the JobSpec
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    submitted_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    placed_ms: Mapped[int | None] = mapped_column(BigInteger)
    started_ms: Mapped[int | None] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger)
    stop_by_ms: Mapped[int | None] = mapped_column(BigInteger)  # a preempted attempt must stop by then
    # The price of the current attempt, fixed at placement: how it was bought ("on-demand", "spot",
    # "reserved") and a fixed fen/du (spot clearing price, reservation price), or None for the
    # provider's posted schedule, applied to each usage interval by its time band.
    price_kind: Mapped[str | None] = mapped_column(String(16))
    price_fen_per_du: Mapped[int | None] = mapped_column(BigInteger)
    # Queue inputs fixed at submission: the priority class (0 low, 1 normal, 2 high) and the priority of the
    # best training package the tenant held then (0: none).
    priority_class: Mapped[int] = mapped_column(Integer, default=1)
    package_priority: Mapped[int] = mapped_column(Integer, default=0)


class JobAllocation(Base):
    """One node's share of a job's placement for one attempt."""

    __tablename__ = "job_allocations"
    __table_args__ = (UniqueConstraint("job_id", "attempt", "node_id"), Index("ix_alloc_node", "node_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    rank: Mapped[int] = mapped_column(Integer)  # position in the gang, 0-based
    device_indices: Mapped[str] = mapped_column(String(256))  # comma-separated
    milli_per_device: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(BigInteger)
    memory_mb: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(default=True)


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_events_job", "job_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")


class JobLogChunk(Base):
    __tablename__ = "job_log_chunks"
    __table_args__ = (UniqueConstraint("job_id", "attempt", "rank", "offset", name="uq_job_log_chunks_rank_offset"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer, default=0)  # the gang member whose output this is
    offset: Mapped[int] = mapped_column(BigInteger)  # byte offset of this chunk in the attempt's log
    data: Mapped[str] = mapped_column(Text)


class UsageRecord(Base):
    """A device share held by a job attempt over [start_ms, end_ms]."""

    __tablename__ = "usage_intervals"
    __table_args__ = (UniqueConstraint("job_id", "attempt", "node_id", "device_index", "start_ms"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"))
    device_index: Mapped[int] = mapped_column(Integer)  # -1 for CPU-only usage
    model: Mapped[str | None] = mapped_column(String(64))
    share_milli: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)


class RegionRtt(Base):
    """An operator's round-trip time between two regions (ms), overriding or adding to the built-in table.

    Stored once per unordered pair, with `region_a` < `region_b`.
    """

    __tablename__ = "region_rtts"
    __table_args__ = (UniqueConstraint("region_a", "region_b", name="uq_region_rtts_pair"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    region_a: Mapped[str] = mapped_column(String(64))
    region_b: Mapped[str] = mapped_column(String(64))
    rtt_ms: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text, default="")  # how it was measured, by whom
    updated_ms: Mapped[int] = mapped_column(BigInteger)


import computegrid.store.models_billing  # noqa: E402, F401  (billing tables share Base; imported for metadata)
import computegrid.store.models_market  # noqa: E402, F401  (market tables share Base; imported for metadata)
