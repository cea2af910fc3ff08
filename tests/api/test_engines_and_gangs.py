"""Live placement honours each site's declared engine capabilities and keeps gangs whole on one site."""

from __future__ import annotations

from typing import Any

from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import sites
from computegrid.services.principal import Principal
from computegrid.services.scheduler import Scheduler
from computegrid.store.models import User
from tests.api.conftest import World

SLURM = {"shares": False, "images": False, "gangs": True, "models": ["T4"]}
LOCAL = {"shares": True, "images": False, "gangs": True, "models": None}
T4 = [{"index": 0, "model": "T4"}]


def register(world: World, who: str, site: str, name: str, capabilities: dict[str, Any] | None = None,
             devices: list[dict[str, Any]] | None = None) -> int:
    body: dict[str, Any] = {"site": site, "name": name, "cpu_milli": 8000, "memory_mb": 32768,
                            "devices": T4 if devices is None else devices}
    if capabilities is not None:
        body["capabilities"] = capabilities
    response = world.call(who, "POST", "/v1/agent/register", json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["node_id"])


def submit(world: World, spec: dict[str, Any]) -> Any:
    return world.call("alice", "POST", "/v1/jobs", json={"name": "j", "run": "true", **spec})


def show(world: World, job: int) -> dict[str, Any]:
    shown: dict[str, Any] = world.call("alice", "GET", f"/v1/jobs/{job}").json()
    return shown


def site_of_nodes(world: World, job: int) -> set[str]:
    with world.db.sessions() as session:
        names = {n.id: (n.name, s.name) for n, s, _ in sites.list_nodes(session=session)}
    return {names[n["node_id"]][1] for n in show(world, job)["nodes"]}


def add_site(world: World, name: str, region: str, provider: str) -> None:
    with world.db.transaction() as session:
        op = session.query(User).filter_by(name="op").one()
        operator = Principal(op.id, "op", "operator", op.tenant_id, None)
        sites.create_site(session=session, principal=operator, name=name, region=region, tier="core",
                          backend="local", electricity_fen_per_kwh="50", provider=provider, now_ms=world.clock.now_ms())


def test_a_share_goes_to_the_site_whose_engine_takes_shares(world: World) -> None:
    register(world, "prov1", "s1", "slurm-n1", SLURM)  # first in pool order: first-fit would pick it
    register(world, "prov2", "s2", "local-n1", LOCAL)
    job = submit(world, {"resources": {"accelerators": "T4:0.5"}}).json()["id"]
    world.scheduler.tick()
    assert show(world, job)["state"] == "placed" and site_of_nodes(world, job) == {"s2"}
    shown = {s["name"]: s["capabilities"] for s in world.call("alice", "GET", "/v1/sites").json()}
    assert shown["s1"] == SLURM and shown["s2"] == LOCAL


def test_a_share_waits_with_a_reason_when_only_slurm_has_the_devices(world: World) -> None:
    register(world, "prov1", "s1", "slurm-n1", SLURM)
    response = submit(world, {"resources": {"accelerators": "T4:0.5"}})
    assert response.status_code == 201, response.text  # capabilities can change: the job waits
    job = response.json()["id"]
    world.scheduler.tick()
    shown = show(world, job)
    assert shown["state"] == "pending"
    assert "no site whose engine takes device shares" in shown["state_reason"]
    assert "engine (want one that takes device shares) excluded 1 node" in shown["state_reason"]


def test_a_site_that_declared_nothing_takes_everything(world: World) -> None:
    register(world, "prov2", "s2", "old-agent")  # an older agent sends no capabilities
    assert world.call("alice", "GET", "/v1/sites/s2").json()["capabilities"] is None
    job = submit(world, {"image": "busybox:1", "resources": {"accelerators": "T4:0.5"}}).json()["id"]
    world.scheduler.tick()
    assert show(world, job)["state"] == "placed" and site_of_nodes(world, job) == {"s2"}


def test_bad_capabilities_are_refused_and_change_nothing(world: World) -> None:
    before = world.counts()
    bad = world.call("prov1", "POST", "/v1/agent/register", json={
        "site": "s1", "name": "n1", "cpu_milli": 8000, "memory_mb": 32768, "devices": T4,
        "capabilities": {**SLURM, "models": ["NoSuchChip"]}})
    assert bad.status_code == 422 and "capabilities.models" in bad.text
    assert world.counts() == before


def test_a_gang_lands_whole_on_one_site_not_across_providers(world: World) -> None:
    # s1 (p1, yangtze-delta) has one node and is first in pool order; s2 (p2, guizhou) has two.
    register(world, "prov1", "s1", "a1")
    register(world, "prov2", "s2", "b1")
    register(world, "prov2", "s2", "b2")
    job = submit(world, {"nodes": 2, "resources": {"accelerators": "T4:1"}}).json()["id"]
    world.scheduler.tick()
    assert show(world, job)["state"] == "placed" and site_of_nodes(world, job) == {"s2"}
    second = submit(world, {"nodes": 2, "resources": {"accelerators": "T4:1"}}).json()["id"]
    world.scheduler.tick()
    reason = show(world, second)["state_reason"]
    assert "gang needs 2 nodes on one site, 1 fit on site s1" in reason, reason


def test_spread_region_may_use_two_sites_of_one_region_never_two_regions(world: World) -> None:
    add_site(world, "s3", "yangtze-delta", "p1")  # s1's region
    register(world, "prov1", "s1", "a1")
    register(world, "prov2", "s2", "b1")
    register(world, "prov1", "s3", "c1")
    job = submit(world, {"nodes": 2, "gang": {"spread": "region"}, "resources": {"accelerators": "T4:1"}}).json()["id"]
    world.scheduler.tick()
    assert show(world, job)["state"] == "placed" and site_of_nodes(world, job) == {"s1", "s3"}


def test_a_gang_wider_than_any_site_is_a_422_that_stores_nothing(world: World) -> None:
    add_site(world, "s3", "yangtze-delta", "p1")
    register(world, "prov1", "s1", "a1")
    register(world, "prov1", "s1", "a2")
    register(world, "prov2", "s2", "b1")
    register(world, "prov1", "s3", "c1", devices=[])  # no T4: it could never hold a member
    before = world.counts()
    wide = submit(world, {"nodes": 3, "resources": {"accelerators": "T4:1"}})
    assert wide.status_code == 422
    assert "the gang needs 3 nodes on one site" in wide.text and "has 2 that could hold a member (site s1)" in wide.text
    regional = submit(world, {"nodes": 3, "gang": {"spread": "region"}, "resources": {"accelerators": "T4:1"}})
    assert regional.status_code == 422 and "(region yangtze-delta)" in regional.text
    bad = submit(world, {"nodes": 2, "gang": {"spread": "planet"}})
    assert bad.status_code == 422 and "gang.spread" in bad.text
    assert world.counts() == before


def test_the_default_policy_keeps_the_gang_on_one_site_live(world: World) -> None:
    register(world, "prov1", "s1", "a1")
    register(world, "prov2", "s2", "b1")
    register(world, "prov2", "s2", "b2")
    job = submit(world, {"nodes": 2, "resources": {"accelerators": "T4:1"}}).json()["id"]
    scheduler = Scheduler(db=world.db, policy=get_policy("default"), catalog=default_catalog(), clock=world.clock,
                          heartbeat_timeout_ms=30_000)
    scheduler.tick()
    assert site_of_nodes(world, job) == {"s2"}
