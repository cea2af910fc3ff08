"""Voucher programs, funding, grants and redemption limits through the API."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import World
from tests.api.test_money_invoices import PROGRAM, agent_reports, at, priced, submit, tick
from tests.api.test_money_wallets import assert_nothing_moved, balances, books, money_world, top_up

__all__ = ["money_world", "priced"]


def test_programs_are_created_and_funded_by_operators(money_world: World) -> None:
    w = money_world
    assert w.call("alice", "POST", "/v1/voucher-programs", json=PROGRAM).status_code == 403
    created = w.call("op", "POST", "/v1/voucher-programs", json=PROGRAM)
    assert created.status_code == 201, created.text
    assert (created.json()["coverage_ratio"], created.json()["domestic_coverage_ratio"]) == ("1/5", "3/10")
    assert w.call("op", "POST", "/v1/voucher-programs", json=PROGRAM).status_code == 409
    funded = w.call("op", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": 50_000},
                    headers={"Idempotency-Key": "treasury-1"})
    assert funded.status_code == 201 and funded.json()["program"]["funded_balance_fen"] == 50_000
    before = books(w)
    assert w.call("op", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": 50_000},
                  headers={"Idempotency-Key": "treasury-1"}).json() == funded.json()
    assert w.call("op", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": 5},
                  headers={"Idempotency-Key": "treasury-1"}).status_code == 409
    assert w.call("alice", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": 5}).status_code == 403
    assert w.call("op", "POST", "/v1/voucher-programs/nope/fund", json={"amount_fen": 5}).status_code == 404
    assert w.call("op", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": -5}).status_code == 422
    assert_nothing_moved(w, before)
    assert balances(w) == {"external": -50_000, "voucher_budget:sh-2027": 50_000}
    assert [p["program_id"] for p in w.call("bob", "GET", "/v1/voucher-programs").json()] == ["sh-2027"]


BAD_PROGRAMS = [
    ({"coverage_ratio": 0.2}, "coverage_ratio"),
    ({"coverage_ratio": "1.5"}, "between 0 and 1"),
    ({"coverage_ratio": "1/0"}, "coverage_ratio"),
    ({"coverage_ratio": "abc"}, "coverage_ratio"),
    ({"budget_fen": 0}, "budget_fen"),
    ({"tenant_annual_cap_fen": -1}, "tenant_annual_cap_fen"),
    ({"year_start_month": 13}, "year_start_month"),
    ({"eligible_providers": ["ghost"]}, "ghost"),
    ({"program_id": "Has Spaces"}, "program_id"),
]


@pytest.mark.parametrize("change,reason", BAD_PROGRAMS, ids=[r for _, r in BAD_PROGRAMS])
def test_bad_programs_are_refused(money_world: World, change: dict[str, Any], reason: str) -> None:
    w = money_world
    before = books(w)
    response = w.call("op", "POST", "/v1/voucher-programs", json={**PROGRAM, **change})
    assert 400 <= response.status_code < 500 and reason in str(response.json()["detail"]), response.text
    assert_nothing_moved(w, before)


def test_grants_go_only_to_eligible_tenants(money_world: World) -> None:
    w = money_world
    w.call("op", "POST", "/v1/voucher-programs", json=PROGRAM)
    w.call("op", "PUT", "/v1/tenants/alpha/profile", json={"region": "shanghai", "industry_tags": ["ai"]})
    w.call("op", "PUT", "/v1/tenants/beta/profile", json={"region": "guizhou", "industry_tags": ["ai"]})
    before = books(w)
    refused = w.call("op", "POST", "/v1/voucher-grants", json={"program_id": "sh-2027", "tenant": "beta"})
    assert refused.status_code == 422 and "region 'guizhou'" in refused.json()["detail"]
    assert w.call("op", "POST", "/v1/voucher-grants", json={"program_id": "nope", "tenant": "alpha"}
                  ).status_code == 404
    assert w.call("alice", "POST", "/v1/voucher-grants", json={"program_id": "sh-2027", "tenant": "alpha"}
                  ).status_code == 403
    assert w.call("op", "POST", "/v1/voucher-grants", json={"program_id": "sh-2027", "tenant": "alpha",
                                                            "amount_fen": 0}).status_code == 422
    assert w.call("op", "POST", "/v1/voucher-grants", json={
        "program_id": "sh-2027", "tenant": "alpha", "expires_ms": w.clock.now_ms() - 1}).status_code == 422
    assert_nothing_moved(w, before)
    granted = w.call("op", "POST", "/v1/voucher-grants", json={"program_id": "sh-2027", "tenant": "alpha",
                                                               "amount_fen": 300})
    assert granted.status_code == 201 and granted.json()["amount_fen"] == 300
    assert [g["grant_id"] for g in w.call("alice", "GET", "/v1/voucher-grants").json()] == [granted.json()["grant_id"]]
    assert w.call("bob", "GET", "/v1/voucher-grants").json() == []
    assert w.call("bob", "GET", "/v1/voucher-grants", params={"tenant": "alpha"}).status_code == 404
    assert len(w.call("op", "GET", "/v1/voucher-grants").json()) == 1


def test_vouchers_respect_the_grant_and_never_pay_an_affiliated_provider(priced: World) -> None:
    w = priced
    w.clock.t = at("2027-01-10T12:00+08:00")
    w.call("op", "PUT", "/v1/tenants/alpha/profile",
           json={"region": "shanghai", "industry_tags": ["ai"], "affiliated_providers": ["p1"]})
    top_up(w, "alpha", 10_000)
    w.call("op", "POST", "/v1/voucher-programs", json=PROGRAM)
    w.call("op", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": 1000})
    w.call("op", "POST", "/v1/voucher-grants", json={"program_id": "sh-2027", "tenant": "alpha", "amount_fen": 500})
    on_p2 = submit(w, "alice", "MLU370-X8:4")
    on_p1 = submit(w, "alice", "V100-32G:2")
    tick(w)
    agent_reports(w, on_p2, "MLU370-X8", at("2027-01-16T00:00+08:00"), at("2027-01-16T10:00+08:00"))
    agent_reports(w, on_p1, "V100-32G", at("2027-01-16T23:00+08:00"), at("2027-01-17T02:00+08:00"))
    w.clock.t = at("2027-02-02T00:00+08:00")
    (result,) = w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"}).json()["tenants"]
    lines = {ln["job_id"]: ln for ln in w.call("alice", "GET", f"/v1/invoices/{result['invoice_id']}").json()["lines"]}
    # p2 line: 1920 gross, 30% would be 576, but the grant holds only 500.
    assert (lines[str(on_p2)]["voucher_fen"], lines[str(on_p2)]["net_fen"]) == (500, 1420)
    # p1 is affiliated with alpha: no voucher, even though 20% of 450 would be 90.
    assert (lines[str(on_p1)]["voucher_fen"], lines[str(on_p1)]["net_fen"]) == (0, 450)
    assert balances(w)["voucher_budget:sh-2027"] == 500
