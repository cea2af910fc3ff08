"""Charges of finished attempts and the monthly invoice, checked against hand calculations.

Usage arrives the way agents send it (POST /v1/agent/jobs/{id}/usage and /state) at times
chosen here, so every figure can be worked out by hand. Prices: p1 peak 08:00-22:00 at
1200 fen/du, off-peak at 600 (site time +08:00); p2 flat 500. The platform fee is 10%.
Rated FP16 (du per device-hour): A100-80G 0.312, V100-32G 0.125, MLU370-X8 0.096.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

import pytest

from computegrid.services import jobs
from computegrid.store.models import Job
from tests.api.conftest import World
from tests.api.test_money_catalog import A100_CARD, BANDED
from tests.api.test_money_wallets import assert_nothing_moved, balances, books, money_world, top_up

__all__ = ["money_world"]

HOUR_MS = 3_600_000
PROGRAM = {"program_id": "sh-2027", "issuer": "Shanghai issuer", "budget_fen": 1_000_000, "coverage_ratio": "0.2",
           "domestic_coverage_ratio": "0.3", "tenant_annual_cap_fen": 200_000_000, "eligible_regions": ["shanghai"],
           "eligible_industries": ["ai", "manufacturing"]}


def at(text: str) -> int:
    """Epoch ms of an ISO time with offset, e.g. at('2027-01-15T21:00+08:00')."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.fixture
def priced(money_world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """Three nodes (s1/p1: A100 and 2 x V100; s2/p2: 4 x MLU370), posted prices, a card product."""
    monkeypatch.delenv("COMPUTEGRID_PLATFORM_FEE", raising=False)
    w = money_world
    w.register_node("prov1", "s1", "a100", devices=[{"index": 0, "model": "A100-80G"}])
    w.register_node("prov1", "s1", "v100", devices=[{"index": i, "model": "V100-32G"} for i in range(2)])
    w.register_node("prov2", "s2", "mlu", devices=[{"index": i, "model": "MLU370-X8"} for i in range(4)])
    assert w.call("prov1", "PUT", "/v1/prices/p1", json=BANDED).status_code == 200
    assert w.call("prov2", "PUT", "/v1/prices/p2", json={"base_fen_per_du": 500}).status_code == 200
    assert w.call("op", "POST", "/v1/products", json=A100_CARD).status_code == 201
    return w


def provider_of(w: World, node_id: int) -> str:
    nodes = {n["id"]: n["site"] for n in w.call("op", "GET", "/v1/nodes").json()}
    return {"s1": "prov1", "s2": "prov2"}[nodes[node_id]]


def submit(w: World, who: str, accelerators: str, *, interruptible: bool = False) -> int:
    response = w.call(who, "POST", "/v1/jobs", json={"name": "train", "run": "python train.py",
                                                     "interruptible": interruptible,
                                                     "resources": {"accelerators": accelerators, "cpus": 1}})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def tick(w: World) -> None:
    """Every node heartbeats at the clock's time (so none looks lost after a jump), then the scheduler runs."""
    for node in w.call("op", "GET", "/v1/nodes").json():
        beat = w.call(provider_of(w, node["id"]), "POST", "/v1/agent/heartbeat", json={"node_id": node["id"]})
        assert beat.status_code == 200, beat.text
    w.scheduler.tick()


def placement(w: World, job_id: int) -> tuple[int, int, list[int]]:
    """(attempt, node id, device indices) of the job's current attempt."""
    shown = w.call("op", "GET", f"/v1/jobs/{job_id}").json()
    node = shown["nodes"][0]
    return shown["attempt"], node["node_id"], node["devices"]


def agent_reports(w: World, job_id: int, model: str, start_ms: int, end_ms: int, *, final: str | None = "succeeded",
                  attempt: int | None = None) -> None:
    """What an agent sends for one attempt: running, the usage intervals, then its end."""
    current, node, devices = placement(w, job_id)
    attempt = attempt or current
    who = provider_of(w, node)
    if final is not None:
        report = w.call(who, "POST", f"/v1/agent/jobs/{job_id}/state",
                        json={"node_id": node, "attempt": attempt, "state": "running", "at_ms": start_ms})
        assert report.status_code == 200, report.text
    usage = w.call(who, "POST", f"/v1/agent/jobs/{job_id}/usage", json={"node_id": node, "attempt": attempt,
                   "intervals": [{"device_index": d, "model": model, "share_milli": 1000, "start_ms": start_ms,
                                  "end_ms": end_ms} for d in devices]})
    assert usage.status_code == 200, usage.text
    if final is not None:
        done = w.call(who, "POST", f"/v1/agent/jobs/{job_id}/state", json={
            "node_id": node, "attempt": attempt, "state": final, "exit_code": 0, "at_ms": end_ms})
        assert done.status_code == 200, done.text


def charges_of(w: World, job_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = w.call("op", "GET", "/v1/charges", params={"job_id": job_id}).json()
    return sorted(found, key=lambda c: c["attempt"])


def test_a_finished_job_is_charged_du_times_price_split_at_the_band_edge(priced: World) -> None:
    w = priced
    job = submit(w, "alice", "A100-80G:1")
    tick(w)
    agent_reports(w, job, "A100-80G", at("2027-01-15T21:00+08:00"), at("2027-01-15T23:00+08:00"))
    (charge,) = charges_of(w, job)
    assert charge["status"] == "pending" and charge["price_kind"] == "on-demand" and charge["period"] == "2027-01"
    (line,) = charge["lines"]
    # 1 h peak: 0.312 du x 1200 = 374.4; 1 h off-peak: 0.312 du x 600 = 187.2; total 561.6 -> 562 (half up once)
    assert (line["du"], line["gross_fen"], line["model"], line["provider"]) == ("0.624000", 562, "A100-80G", "p1")
    assert line["key"] == f"usage:{job}:1"
    # The tenant sees its own charge; another tenant does not; the provider sees usage on its sites.
    assert [c["job_id"] for c in w.call("alice", "GET", "/v1/charges").json()] == [job]
    assert w.call("bob", "GET", "/v1/charges").json() == []
    assert [c["job_id"] for c in w.call("prov1", "GET", "/v1/charges").json()] == [job]
    assert w.call("prov2", "GET", "/v1/charges").json() == []
    assert balances(w) == {}  # charging records the charge; money moves at invoicing


def test_a_preempted_attempt_is_charged_only_until_it_stopped_at_its_own_price(priced: World) -> None:
    w = priced
    job = submit(w, "alice", "A100-80G:1", interruptible=True)
    w.clock.t = at("2027-01-20T09:59+08:00")
    tick(w)
    _, node, _ = placement(w, job)
    with w.db.transaction() as session:  # as the market would when the spot auction clears at 300 fen/du
        row = session.get(Job, job)
        assert row is not None
        row.price_kind, row.price_fen_per_du = "spot", 300
    w.call("prov1", "POST", f"/v1/agent/jobs/{job}/state",
           json={"node_id": node, "attempt": 1, "state": "running", "at_ms": at("2027-01-20T10:00+08:00")})
    w.clock.t = at("2027-01-20T10:30+08:00") - 1
    with w.db.transaction() as session:
        row = session.get(Job, job)
        assert row is not None
        jobs.preempt(session, row, "an on-demand buyer takes the device", w.clock.now_ms(), notice_ms=0)
    w.clock.t = at("2027-01-20T10:30+08:00")
    tick(w)  # the notice has run out: attempt 1 ends now and the job is placed again (attempt 2)
    assert placement(w, job)[0] == 2
    # The old attempt kept running until its agent heard; the agent ships usage to 11:00 anyway.
    agent_reports(w, job, "A100-80G", at("2027-01-20T10:00+08:00"), at("2027-01-20T11:00+08:00"), final=None,
                  attempt=1)
    agent_reports(w, job, "A100-80G", at("2027-01-20T10:31+08:00"), at("2027-01-20T11:31+08:00"))
    first, second = charges_of(w, job)
    assert (first["attempt"], first["price_kind"], first["fixed_fen_per_du"]) == (1, "spot", 300)
    # 10:00-10:30 only: 0.5 h x 0.312 = 0.156 du x 300 fen/du = 46.8 -> 47 fen
    assert (first["lines"][0]["du"], first["lines"][0]["gross_fen"]) == ("0.156000", 47)
    # Attempt 2 was placed on demand: the posted schedule, peak, 0.312 du x 1200 = 374.4 -> 374
    assert (second["price_kind"], second["fixed_fen_per_du"]) == ("on-demand", None)
    assert (second["lines"][0]["du"], second["lines"][0]["gross_fen"]) == ("0.312000", 374)


def set_up_alpha_for_the_month(w: World) -> None:
    """alpha: in Shanghai, AI; ¥100 in its wallet; one A100 card (1 du for 800 fen); a voucher grant."""
    assert w.call("op", "PUT", "/v1/tenants/alpha/profile",
                  json={"region": "shanghai", "industry_tags": ["ai"]}).status_code == 200
    top_up(w, "alpha", 10_000)
    assert w.call("alice", "POST", "/v1/purchases", json={"product_id": "card-a100"}).status_code == 201
    assert w.call("op", "POST", "/v1/voucher-programs", json=PROGRAM).status_code == 201
    assert w.call("op", "POST", "/v1/voucher-programs/sh-2027/fund", json={"amount_fen": 100_000}).status_code == 201
    assert w.call("op", "POST", "/v1/voucher-grants", json={"program_id": "sh-2027", "tenant": "alpha"}
                  ).status_code == 201


def run_three_jobs(w: World) -> tuple[int, int, int]:
    j1 = submit(w, "alice", "A100-80G:1")
    j2 = submit(w, "alice", "MLU370-X8:4")
    j3 = submit(w, "alice", "V100-32G:2")
    tick(w)
    agent_reports(w, j1, "A100-80G", at("2027-01-15T21:00+08:00"), at("2027-01-15T23:00+08:00"))
    agent_reports(w, j2, "MLU370-X8", at("2027-01-16T00:00+08:00"), at("2027-01-16T10:00+08:00"))
    agent_reports(w, j3, "V100-32G", at("2027-01-16T23:00+08:00"), at("2027-01-17T02:00+08:00"))
    return j1, j2, j3


def test_monthly_invoice_draws_the_card_then_the_voucher_then_the_wallet(priced: World) -> None:
    w = priced
    w.clock.t = at("2027-01-15T16:00+08:00")
    set_up_alpha_for_the_month(w)
    j1, j2, j3 = run_three_jobs(w)

    early = w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"})
    assert early.status_code == 422 and "has not ended" in early.json()["detail"]
    w.clock.t = at("2027-02-01T09:00+08:00")
    assert w.call("alice", "POST", "/v1/invoices/run", json={"period": "2027-01"}).status_code == 403
    run = w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"})
    assert run.status_code == 200, run.text
    (result,) = run.json()["tenants"]
    assert result["tenant"] == "alpha" and result["status"] == "issued"
    invoice = w.call("alice", "GET", f"/v1/invoices/{result['invoice_id']}").json()

    # Worked by hand (docs/billing.md, "Worked example"):
    # j1 A100 21:00-23:00 at p1: 0.312 x 1200 + 0.312 x 600 = 561.6 -> 562. The card covers all 0.624 du:
    #    list value 562, card value released 0.624 x 800 = 499.2 -> 499, discount 63; nothing left for the
    #    voucher or the wallet. Fee 10% of 562 = 56.2 -> 56; p1 gets 506.
    # j2 4 x MLU370 (domestic) 10 h at p2: 3.84 du x 500 = 1920. No card (A100 only). Voucher 30% = 576;
    #    wallet 1344; fee 192; p2 gets 1728.
    # j3 2 x V100 23:00-02:00 off-peak at p1: 0.75 du x 600 = 450. Voucher 20% = 90; wallet 360; fee 45;
    #    p1 gets 405.
    lines = {ln["job_id"]: ln for ln in invoice["lines"]}
    expect = {  # gross, card du, card value, discount, voucher, net, fee, provider
        str(j1): (562, "0.624000", 499, 63, 0, 0, 56, 506),
        str(j2): (1920, "0.000000", 0, 0, 576, 1344, 192, 1728),
        str(j3): (450, "0.000000", 0, 0, 90, 360, 45, 405),
    }
    for job, figures in expect.items():
        ln = lines[job]
        assert (ln["gross_fen"], ln["card_du"], ln["card_value_fen"], ln["discount_fen"], ln["voucher_fen"],
                ln["net_fen"], ln["fee_fen"], ln["provider_fen"]) == figures, job
    assert lines[str(j2)]["voucher_program"] == "sh-2027" and lines[str(j1)]["voucher_program"] is None
    assert [ln["job_id"] for ln in invoice["lines"]] == [str(j1), str(j2), str(j3)]  # usage-time order
    assert (invoice["gross_fen"], invoice["card_value_fen"], invoice["discount_fen"], invoice["voucher_fen"],
            invoice["net_fen"], invoice["fee_fen"]) == (2932, 499, 63, 666, 1704, 293)
    assert balances(w) == {
        "discount_expense": -63, "external": -110_000, "fee_revenue": 293, "prepaid:alpha": 800 - 499,
        "receivable:p1": 506 + 405, "receivable:p2": 1728, "voucher_budget:sh-2027": 100_000 - 666,
        "wallet:alpha": 10_000 - 800 - 1704}
    (card,) = w.call("alice", "GET", "/v1/holdings").json()
    assert (card["du_left"], card["value_left_fen"]) == ("0.376000", 301)
    assert {c["status"] for c in w.call("alice", "GET", "/v1/charges").json()} == {"invoiced"}

    rows = list(csv.DictReader(io.StringIO(w.call("alice", "GET", f"/v1/invoices/{invoice['id']}/csv").text)))
    assert [r["job_id"] for r in rows] == [str(j1), str(j2), str(j3), "total"]
    assert (rows[-1]["gross_fen"], rows[-1]["voucher_fen"], rows[-1]["net_fen"]) == ("2932", "666", "1704")

    report = w.call("op", "GET", "/v1/voucher-programs/sh-2027/report").text
    assert list(csv.reader(io.StringIO(report))) == [
        ["program_id", "year", "tenant", "provider", "lines", "eligible_fen", "voucher_fen"],
        ["sh-2027", "2027", "alpha", "p1", "1", "450", "90"],
        ["sh-2027", "2027", "alpha", "p2", "1", "1920", "576"]]
    assert w.call("alice", "GET", "/v1/voucher-programs/sh-2027/report").status_code == 403
    (grant,) = w.call("alice", "GET", "/v1/voucher-grants").json()
    assert grant["used_fen"] == 666

    # Running the month again issues nothing more and moves no money.
    before = books(w)
    again = w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"})
    assert again.json()["tenants"] == []
    assert_nothing_moved(w, before)
    assert [i["period"] for i in w.call("alice", "GET", "/v1/invoices").json()] == ["2027-01"]
    assert w.call("bob", "GET", f"/v1/invoices/{invoice['id']}").status_code == 404
    assert w.call("bob", "GET", f"/v1/invoices/{invoice['id']}/csv").status_code == 404
    assert w.call("bob", "GET", "/v1/invoices").json() == []

    # Payouts: p1 is owed 911 fen after the fee.
    assert w.call("prov1", "GET", "/v1/receivables").json() == [
        {"provider": "p1", "receivable_fen": 911, "in_flight_fen": 0}]
    before = books(w)
    too_much = w.call("op", "POST", "/v1/payouts", json={"provider": "p1", "amount_fen": 912})
    assert too_much.status_code == 402 and "owed 911 fen" in too_much.json()["detail"]
    assert w.call("prov1", "POST", "/v1/payouts", json={"provider": "p1", "amount_fen": 100}).status_code == 403
    assert_nothing_moved(w, before)
    sent = w.call("op", "POST", "/v1/payouts", json={"provider": "p1", "amount_fen": 900},
                  headers={"Idempotency-Key": "wire-1"})
    assert sent.status_code == 201 and sent.json()["status"] == "sent" and sent.json()["in_flight_fen"] == 900
    assert w.call("op", "POST", "/v1/payouts", json={"provider": "p1", "amount_fen": 900},
                  headers={"Idempotency-Key": "wire-1"}).json() == sent.json()
    payout_id = sent.json()["payout_id"]
    done = w.call("op", "POST", f"/v1/payouts/{payout_id}/confirm").json()
    assert (done["status"], done["receivable_fen"], done["in_flight_fen"]) == ("confirmed", 11, 0)
    assert w.call("op", "POST", f"/v1/payouts/{payout_id}/fail").status_code == 409
    assert [p["status"] for p in w.call("prov1", "GET", "/v1/payouts").json()] == ["confirmed"]
    assert w.call("prov2", "GET", "/v1/payouts").json() == []
    assert w.call("alice", "GET", "/v1/payouts").status_code == 403
    assert balances(w)["external"] == -110_000 + 900


def test_an_unaffordable_invoice_is_refused_and_moves_nothing_until_topped_up(priced: World) -> None:
    w = priced
    w.clock.t = at("2027-01-15T16:00+08:00")
    job = submit(w, "bob", "MLU370-X8:4")
    tick(w)
    agent_reports(w, job, "MLU370-X8", at("2027-01-16T00:00+08:00"), at("2027-01-16T10:00+08:00"))
    w.clock.t = at("2027-02-01T00:00+08:00")
    before = books(w)
    run = w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"}).json()
    (result,) = run["tenants"]
    assert result["status"] == "refused" and "1920 fen short" in result["reason"]
    assert_nothing_moved(w, before)
    top_up(w, "beta", 2000)
    (issued,) = w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"}).json()["tenants"]
    assert issued["status"] == "issued" and issued["net_fen"] == 1920
    assert w.call("bob", "GET", "/v1/wallet").json()["balance_fen"] == 80


def test_late_usage_goes_on_the_next_invoice_and_bad_periods_are_refused(priced: World) -> None:
    w = priced
    top_up(w, "beta", 10_000)
    w.clock.t = at("2027-01-20T12:00+08:00")
    job = submit(w, "bob", "MLU370-X8:1")
    tick(w)
    agent_reports(w, job, "MLU370-X8", at("2027-01-20T12:00+08:00"), at("2027-01-20T22:00+08:00"))
    w.clock.t = at("2027-03-01T00:00+08:00")
    # February's run picks up January's uninvoiced charge: 0.96 du x 500 = 480.
    (result,) = w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-02"}).json()["tenants"]
    assert result["status"] == "issued" and result["net_fen"] == 480
    assert w.call("op", "POST", "/v1/invoices/run", json={"period": "2027-01"}).json()["tenants"] == []
    before = books(w)
    for period in ("2027-13", "27-01", "", "2027-1"):
        response = w.call("op", "POST", "/v1/invoices/run", json={"period": period})
        assert response.status_code == 422, period
    assert w.call("op", "GET", "/v1/invoices", params={"period": "bad"}).status_code == 422
    assert_nothing_moved(w, before)
