"""What the queue is given at submission: deadlines checked, priority classes limited per tenant, package priority
recorded; operators set the limits; storage is no longer sold. Every refusal stores nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from computegrid.store.models import Job, Tenant
from computegrid.store.models_billing import HoldingRow
from tests.api.conftest import World
from tests.api.test_money_catalog import A100_CARD, PACKAGE, buy
from tests.api.test_money_wallets import assert_nothing_moved, books, money_world, top_up

__all__ = ["money_world"]
DAY_MS = 86_400_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def submit(world: World, who: str, **fields: Any) -> Any:
    return world.call(who, "POST", "/v1/jobs", json={"name": "j", "run": "true", **fields})


def stored_job(world: World, job_id: int) -> Job:
    with world.db.reading() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def test_a_past_deadline_is_a_422_with_readable_times_and_stores_nothing(world: World) -> None:
    before = world.counts()
    response = submit(world, "alice", deadline="2020-01-01T00:00:00Z")
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "already past" in detail and "2020-01-01T00:00:00+00:00" in detail
    assert iso(world.clock.now_ms()) in detail  # now, as an ISO time, not epoch ms
    assert world.counts() == before


def test_a_deadline_the_time_limit_cannot_meet_is_a_422_and_stores_nothing(world: World) -> None:
    before = world.counts()
    deadline = iso(world.clock.now_ms() + 3600_000)
    response = submit(world, "alice", deadline=deadline, time_limit="2h")
    assert response.status_code == 422, response.text
    assert "cannot be met" in response.json()["detail"] and "time_limit 7200 s" in response.json()["detail"]
    assert world.counts() == before
    ok = submit(world, "alice", deadline=deadline, time_limit="30m")
    assert ok.status_code == 201, ok.text


def test_a_class_the_tenant_may_not_use_is_a_403_and_stores_nothing(world: World) -> None:
    before = world.counts()
    response = submit(world, "alice", priority="high")
    assert response.status_code == 403, response.text
    assert "'high'" in response.json()["detail"] and "allowed: low, normal" in response.json()["detail"]
    assert world.counts() == before
    bad = submit(world, "alice", priority="urgent")
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "priority"
    assert world.counts() == before


def test_the_priority_class_is_stored_and_operators_can_allow_more(world: World) -> None:
    low = submit(world, "alice", priority="low")
    assert low.status_code == 201, low.text
    assert low.json()["priority"] == "low"
    assert stored_job(world, low.json()["id"]).priority_class == 0
    assert stored_job(world, submit(world, "alice").json()["id"]).priority_class == 1

    patched = world.call("op", "PATCH", "/v1/tenants/alpha", json={"priority_classes": ["high", "low", "normal"]})
    assert patched.status_code == 200, patched.text
    assert patched.json()["priority_classes"] == ["low", "normal", "high"]
    high = submit(world, "alice", priority="high")
    assert high.status_code == 201, high.text
    assert stored_job(world, high.json()["id"]).priority_class == 2
    shown = world.call("alice", "GET", f"/v1/jobs/{high.json()['id']}").json()
    assert (shown["priority"], shown["package_priority"]) == ("high", 0)
    assert submit(world, "bob", priority="high").status_code == 403  # another tenant keeps its own limit


def test_operators_set_fair_share_and_classes_others_are_refused(world: World) -> None:
    assert world.call("op", "GET", "/v1/tenants/alpha").json() == {
        "id": 1, "name": "alpha", "priority_classes": ["low", "normal"], "fair_share": 1}
    done = world.call("op", "PATCH", "/v1/tenants/beta", json={"fair_share": 3})
    assert done.status_code == 200, done.text
    assert done.json()["fair_share"] == 3 and done.json()["priority_classes"] == ["low", "normal"]
    listed = {t["name"]: t for t in world.call("op", "GET", "/v1/tenants").json()}
    assert listed["beta"]["fair_share"] == 3 and listed["alpha"]["fair_share"] == 1
    assert world.call("bob", "GET", "/v1/tenants/beta").json()["fair_share"] == 3  # a tenant reads its own
    assert world.call("bob", "GET", "/v1/tenants/alpha").status_code == 404

    with world.db.reading() as session:
        before = [(t.priority_classes, t.fair_share) for t in session.scalars(select(Tenant).order_by(Tenant.id))]
    refused = world.call("alice", "PATCH", "/v1/tenants/alpha", json={"priority_classes": ["low", "normal", "high"]})
    assert refused.status_code == 403, refused.text
    for body, status, words in (({"priority_classes": ["low", "urgent"]}, 422, "unknown priority class 'urgent'"),
                                ({"priority_classes": []}, 422, "at least one"),
                                ({"fair_share": 0}, 422, "fair_share"),
                                ({"fair_share": "2"}, 422, "fair_share"),
                                ({"fair_share": 2.5}, 422, "fair_share"),
                                ({}, 422, "give priority_classes and/or fair_share"),
                                ({"weight": 2}, 422, "weight")):
        response = world.call("op", "PATCH", "/v1/tenants/alpha", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.text, (body, response.text)
    assert world.call("op", "PATCH", "/v1/tenants/nobody", json={"fair_share": 2}).status_code == 404
    with world.db.reading() as session:
        after = [(t.priority_classes, t.fair_share) for t in session.scalars(select(Tenant).order_by(Tenant.id))]
    assert after == before


def test_package_priority_is_the_highest_active_package(money_world: World) -> None:
    w = money_world
    for product in (PACKAGE, {**PACKAGE, "product_id": "pkg-big", "priority": 9, "validity_days": 10}, A100_CARD):
        assert w.call("op", "POST", "/v1/products", json=product).status_code == 201
    top_up(w, "alpha", 100_000)
    assert buy(w, "alice", "card-a100").status_code == 201
    assert buy(w, "alice", "pkg-a100").status_code == 201
    assert stored_job(w, submit(w, "alice").json()["id"]).package_priority == 5
    assert stored_job(w, submit(w, "bob").json()["id"]).package_priority == 0  # beta holds nothing

    assert buy(w, "alice", "pkg-big").status_code == 201
    assert stored_job(w, submit(w, "alice").json()["id"]).package_priority == 9
    with w.db.transaction() as session:  # the priority-9 package is used up: it no longer counts
        big = session.scalars(select(HoldingRow).where(HoldingRow.product_id == "pkg-big")).one()
        big.du_used = big.du_total
    assert stored_job(w, submit(w, "alice").json()["id"]).package_priority == 5
    w.clock.advance(91 * DAY_MS)  # every package has expired
    assert stored_job(w, submit(w, "alice").json()["id"]).package_priority == 0


def test_storage_is_not_sold(money_world: World) -> None:
    w = money_world
    before = books(w)
    response = w.call("op", "POST", "/v1/products", json={**PACKAGE, "storage_gb": 500})
    assert response.status_code == 422, response.text
    assert "storage is not sold" in response.text
    assert_nothing_moved(w, before)
    created = w.call("op", "POST", "/v1/products", json=PACKAGE).json()
    assert "storage_gb" not in created and created["priority"] == 5


def test_a_retried_submission_gets_its_stored_job_even_after_its_deadline_passed(world: World) -> None:
    deadline = iso(world.clock.now_ms() + 3600_000)
    first = world.call("alice", "POST", "/v1/jobs", json={"name": "j", "run": "true", "deadline": deadline},
                       headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 201, first.text
    world.clock.t += 2 * 3600_000  # the deadline is past now
    again = world.call("alice", "POST", "/v1/jobs", json={"name": "j", "run": "true", "deadline": deadline},
                       headers={"Idempotency-Key": "retry-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    fresh = world.call("alice", "POST", "/v1/jobs", json={"name": "j", "run": "true", "deadline": deadline},
                       headers={"Idempotency-Key": "retry-2"})
    assert fresh.status_code == 422 and "already past" in fresh.json()["detail"]
