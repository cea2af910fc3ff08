"""Sites, nodes and devices (providers manage their own; everyone may look)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from computegrid.api.deps import CurrentPrincipal, StateDep
from computegrid.api.schemas import SiteCreate
from computegrid.core.capabilities import EngineCapabilities
from computegrid.services import sites
from computegrid.services.views import iso
from computegrid.store.models import Site

router = APIRouter(prefix="/v1", tags=["sites"])


def site_view(site: Site) -> dict[str, Any]:
    return {"id": site.id, "name": site.name, "region": site.region, "tier": site.tier, "backend": site.backend,
            "electricity_fen_per_kwh": str(site.electricity_fen_per_kwh), "provider_id": site.provider_id,
            # what its engine takes, as its agent declared; None until declared (then taken to take everything)
            "capabilities": EngineCapabilities.from_json(site.capabilities).to_dict() if site.capabilities else None}


@router.post("/sites", status_code=201)
def create_site(body: SiteCreate, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.transaction() as session:
        site = sites.create_site(session=session, principal=principal, name=body.name, region=body.region,
                                 tier=body.tier, backend=body.backend,
                                 electricity_fen_per_kwh=body.electricity_fen_per_kwh,
                                 provider=body.provider, now_ms=state.clock.now_ms())
        view = site_view(site)
    state.forget_regions()  # its region is now a known one
    return view


@router.get("/sites")
def list_sites(principal: CurrentPrincipal, state: StateDep) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return [site_view(s) for s in sites.list_sites(session=session)]


@router.get("/sites/{name}")
def get_site(name: str, principal: CurrentPrincipal, state: StateDep) -> dict[str, Any]:
    with state.db.reading() as session:
        return site_view(sites.get_site(session=session, name=name))


@router.get("/nodes")
def list_nodes(principal: CurrentPrincipal, state: StateDep, site: str | None = None) -> list[dict[str, Any]]:
    with state.db.reading() as session:
        return [{
            "id": node.id, "name": node.name, "site": s.name, "state": node.state, "cpu_milli": node.cpu_milli,
            "memory_mb": node.memory_mb, "last_heartbeat_at": iso(node.last_heartbeat_ms),
            "devices": [{"index": d.index, "model": d.model, "memory_gb": str(d.memory_gb), "source": d.source,
                         "health": d.health,
                         "utilisation_pct": None if d.utilisation_pct is None else float(d.utilisation_pct),
                         "memory_used_gb": None if d.memory_used_gb is None else float(d.memory_used_gb),
                         "power_w": None if d.power_w is None else float(d.power_w)} for d in devs],
        } for node, s, devs in sites.list_nodes(session=session, site=site)]
