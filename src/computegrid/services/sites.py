"""Sites, nodes and devices: providers register capacity; agents heartbeat telemetry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computegrid.core.capabilities import EngineCapabilities
from computegrid.core.catalog import Catalog, UnknownAccelerator
from computegrid.core.jobs.spec import TIERS
from computegrid.services.accounts import check_name
from computegrid.services.errors import Conflict, Forbidden, Invalid, NotFound
from computegrid.services.principal import Principal
from computegrid.store.models import Device, Node, Provider, Site

BACKENDS = ("local", "slurm", "ray", "kubernetes")


def create_site(*, session: Session, principal: Principal, name: str, region: str, tier: str, backend: str,
                electricity_fen_per_kwh: str | float | int, now_ms: int, provider: str | None = None) -> Site:
    """A new site for the caller's provider (an operator names the provider)."""
    principal.require_role("provider")
    check_name("site", name)
    if provider is not None and principal.is_operator:
        provider_id = session.scalar(select(Provider.id).where(Provider.name == provider))
        if provider_id is None:
            raise NotFound(f"no provider {provider!r}")
    elif principal.provider_id is not None:
        provider_id = principal.provider_id
    else:
        raise Invalid("name the provider that owns the site")
    if tier not in TIERS:
        raise Invalid(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    if backend not in BACKENDS:
        raise Invalid(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not region or len(region) > 64:
        raise Invalid("region must be a non-empty name of at most 64 characters")
    try:
        price = Decimal(str(electricity_fen_per_kwh))
    except InvalidOperation as exc:
        raise Invalid(f"electricity_fen_per_kwh must be a number, got {electricity_fen_per_kwh!r}") from exc
    if not price.is_finite() or price < 0 or price > 100_000:
        raise Invalid("electricity_fen_per_kwh must be between 0 and 100000")
    if session.scalar(select(Site.id).where(Site.name == name)) is not None:
        raise Conflict(f"site {name!r} already exists")
    site = Site(provider_id=provider_id, name=name, region=region, tier=tier, backend=backend,
                electricity_fen_per_kwh=price, created_ms=now_ms)
    session.add(site)
    session.flush()
    return site


def get_site(*, session: Session, name: str) -> Site:
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        raise NotFound(f"no site {name!r}")
    return site


def list_sites(*, session: Session) -> list[Site]:
    return list(session.scalars(select(Site).order_by(Site.id)))


def list_nodes(*, session: Session, site: str | None = None) -> list[tuple[Node, Site, list[Device]]]:
    query = select(Node, Site).join(Site, Site.id == Node.site_id).order_by(Node.id)
    if site is not None:
        query = query.where(Site.name == site)
    rows = session.execute(query).all()
    devices: dict[int, list[Device]] = {}
    node_ids = [r.Node.id for r in rows]
    if node_ids:
        for dev in session.scalars(select(Device).where(Device.node_id.in_(node_ids)).order_by(Device.index)):
            devices.setdefault(dev.node_id, []).append(dev)
    return [(r.Node, r.Site, devices.get(r.Node.id, [])) for r in rows]


@dataclass(frozen=True)
class DeviceDecl:
    index: int
    model: str
    memory_gb: Decimal | None
    source: str  # detected | declared


def _owned_site(session: Session, principal: Principal, site_name: str) -> Site:
    site = get_site(session=session, name=site_name)
    if not principal.can_manage_provider(site.provider_id):
        raise Forbidden(f"site {site_name!r} belongs to another provider")
    return site


def register_node(*, session: Session, principal: Principal, catalog: Catalog, site: str, name: str,
                  cpu_milli: int, memory_mb: int, devices: list[DeviceDecl], now_ms: int,
                  capabilities: dict[str, Any] | None = None) -> Node:
    """Create or refresh a node and its device list; models must be in the catalog.

    `capabilities` (EngineCapabilities.to_dict) declare what the site's engine can run and replace what
    the site declared before; None leaves the site as it was ("" = undeclared: taken to run anything).
    """
    owned = _owned_site(session, principal, site)
    if capabilities is not None:
        owned.capabilities = declared_capabilities(capabilities, catalog).to_json()
    if cpu_milli <= 0 or memory_mb <= 0:
        raise Invalid("a node needs positive cpu_milli and memory_mb")
    indices = [d.index for d in devices]
    if len(set(indices)) != len(indices):
        raise Invalid("device indices must be unique on a node")
    resolved: list[tuple[DeviceDecl, str, Decimal]] = []
    for dev in devices:
        try:
            entry = catalog.get(dev.model)
        except UnknownAccelerator as exc:
            raise Invalid(f"devices[{dev.index}].model: {exc}") from exc
        memory = dev.memory_gb if dev.memory_gb is not None else (
            None if entry.memory_gb is None else Decimal(str(float(entry.memory_gb))))
        if memory is None:
            raise Invalid(f"devices[{dev.index}].memory_gb: the catalog does not know how much memory a "
                          f"{entry.model} has, so the device must report it")
        resolved.append((dev, entry.model, memory))
    node = session.scalar(select(Node).where(Node.site_id == owned.id, Node.name == name))
    if node is None:
        node = Node(site_id=owned.id, name=name, cpu_milli=cpu_milli, memory_mb=memory_mb, state="up",
                    registered_ms=now_ms, last_heartbeat_ms=now_ms)
        session.add(node)
        session.flush()
    else:
        node.cpu_milli, node.memory_mb, node.state = cpu_milli, memory_mb, "up"
        node.registered_ms = node.last_heartbeat_ms = now_ms
    existing = {d.index: d for d in session.scalars(select(Device).where(Device.node_id == node.id))}
    for dev, model, mem in resolved:
        row = existing.pop(dev.index, None)
        if row is None:
            session.add(Device(node_id=node.id, index=dev.index, model=model, memory_gb=mem, source=dev.source,
                               health="ok", updated_ms=now_ms))
        else:
            row.model, row.memory_gb, row.source, row.updated_ms = model, mem, dev.source, now_ms
    for gone in existing.values():
        gone.health = "removed"
    return node


def declared_capabilities(data: dict[str, Any], catalog: Catalog) -> EngineCapabilities:
    """An engine's declared capabilities, its models resolved to catalog names; Invalid names the problem."""
    try:
        declared = EngineCapabilities.from_dict(data)
    except ValueError as exc:
        raise Invalid(f"capabilities: {exc}") from exc
    if declared.models is None:
        return declared
    models = set()
    for model in declared.models:
        try:
            models.add(catalog.get(model).model)
        except UnknownAccelerator as exc:
            raise Invalid(f"capabilities.models: {exc}") from exc
    return replace(declared, models=frozenset(models))


def owned_node(*, session: Session, principal: Principal, node_id: int) -> Node:
    node = session.get(Node, node_id)
    if node is None:
        raise NotFound(f"no node {node_id}")
    site = session.get(Site, node.site_id)
    if site is None or not principal.can_manage_provider(site.provider_id):
        raise Forbidden(f"node {node_id} belongs to another provider")
    return node


def record_heartbeat(*, session: Session, node: Node, telemetry: list[dict[str, Any]], now_ms: int) -> None:
    """Mark the node alive and store per-device utilisation, memory, power and health."""
    node.last_heartbeat_ms = now_ms
    node.state = "up"
    if not telemetry:
        return
    by_index = {d.index: d for d in session.scalars(select(Device).where(Device.node_id == node.id))}
    for sample in telemetry:
        dev = by_index.get(int(sample["index"]))
        if dev is None:
            raise Invalid(f"telemetry names device {sample['index']}, which node {node.id} does not have")
        for key in ("utilisation_pct", "memory_used_gb", "power_w"):
            if sample.get(key) is not None:
                setattr(dev, key, Decimal(str(sample[key])))
        if sample.get("health"):
            dev.health = str(sample["health"])[:16]
        dev.updated_ms = now_ms
