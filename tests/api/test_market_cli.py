"""The market commands, run in-process against the API: quote a job file, offer, bid, buy and resell a
block, run a round, read the spot index; a bad file or a refused order is a clear error, exit 1 or 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from computegrid.cli import market
from computegrid.client import Client
from tests.api.conftest import World
from tests.api.market_world import HOUR_MS, a100_node, market_world
from tests.api.test_money_wallets import top_up

__all__ = ["market_world"]


def cli(world: World, monkeypatch: pytest.MonkeyPatch, who: str) -> Any:
    client = Client("http://testserver", world.keys[who])
    client.http = world.app_client
    monkeypatch.setattr(market, "_client", lambda: client)
    app = typer.Typer()
    app.command("version")(lambda: None)  # a second command, so Typer keeps sub-command names
    market.register(app)
    runner = CliRunner()

    def run(*args: str) -> Any:
        client.http.headers["Authorization"] = f"Bearer {world.keys[who]}"
        return runner.invoke(app, list(args), env={"COLUMNS": "250"})

    return run


def test_offer_quote_buy_resell_and_round_from_the_cli(market_world: World, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    w = market_world
    a100_node(w, "prov1", "s1", "n1", devices=2)
    assert w.call("prov1", "PUT", "/v1/prices/p1", json={"base_fen_per_du": 900}).status_code == 200
    t = w.clock.now_ms()
    spot = tmp_path / "spot.yaml"
    spot.write_text("site: s1\nmodel: A100-80G\ndevices: 1\nfloor_fen_per_du: 200\n")
    block = tmp_path / "block.yaml"
    block.write_text(f"site: s1\nmodel: A100-80G\ndevices: 1\nfloor_fen_per_du: 1000\nkind: reserved\n"
                     f"window_start: {t + HOUR_MS}\nwindow_end: {t + 3 * HOUR_MS}\n")
    provider = cli(w, monkeypatch, "prov1")
    made = provider("offers", "create", str(spot))
    assert made.exit_code == 0, made.output
    assert "A100-80G" in made.output and "spot" in made.output
    assert provider("offers", "create", str(block)).exit_code == 0
    listed = cli(w, monkeypatch, "alice")("offers", "--kind", "reserved")
    assert listed.exit_code == 0 and "reserved" in listed.output and "spot" not in listed.output.split("Offers")[1]

    job = tmp_path / "job.yaml"
    job.write_text("name: train\nrun: python train.py\ntime_limit: 1h\nresources: {accelerators: A100-80G:1}\n")
    run = cli(w, monkeypatch, "alice")
    quoted = run("quote", str(job))
    assert quoted.exit_code == 0, quoted.output
    # 0.312 du: on demand 900 -> 280.8 -> ¥2.81; spot at the floor 200 -> 62.4 -> ¥0.62
    assert "on-demand" in quoted.output and "¥2.81" in quoted.output and "¥0.62" in quoted.output
    assert "no reserved capacity matches" in quoted.output

    assert top_up(w, "alpha", 1000).status_code == 201
    bought = run("reservations", "buy", "2", "--devices", "1", "--from", str(t + HOUR_MS), "--to",
                 str(t + 2 * HOUR_MS), "--key", "cli-1")
    assert bought.exit_code == 0, bought.output
    assert "paid ¥3.12" in bought.output and "reservation: 1" in bought.output
    again = run("reservations", "buy", "2", "--devices", "1", "--from", str(t + HOUR_MS), "--to",
                str(t + 2 * HOUR_MS), "--key", "cli-1")
    assert again.exit_code == 0 and "paid ¥3.12" in again.output  # a replay: the same block, paid once
    assert w.call("alice", "GET", "/v1/wallet").json()["balance_fen"] == 688
    assert "A100-80G" in run("reservations").output
    resold = run("reservations", "resell", "1", "--devices", "1", "--floor", "1100", "--from",
                 str(t + 90 * 60_000))
    assert resold.exit_code == 0 and "resale" in resold.output, resold.output

    too_low = tmp_path / "bid.yaml"
    spot_job = int(w.call("alice", "POST", "/v1/jobs", json={
        "name": "s", "run": "true", "interruptible": True, "resources": {"accelerators": "A100-80G:1"}}).json()["id"])
    too_low.write_text(f"job_id: {spot_job}\nlimit_fen_per_du: 150\n")
    refused = run("bids", "create", str(too_low))
    assert refused.exit_code == 1
    assert "bid 150 fen/du is below the floor 200 fen/du for A100-80G in yangtze-delta (HTTP 422)" in refused.output
    too_low.write_text(f"job_id: {spot_job}\nlimit_fen_per_du: 250\n")
    assert run("bids", "create", str(too_low)).exit_code == 0
    assert "250" in run("bids").output

    operator = cli(w, monkeypatch, "op")
    assert "only an operator" in run("market", "round").output
    rounded = operator("market", "round")
    assert rounded.exit_code == 0, rounded.output
    assert "1 allocated" in rounded.output and "A100-80G in yangtze-delta: 225 fen/du" in rounded.output
    index = run("spot-index", "--history")
    assert index.exit_code == 0 and "225" in index.output

    assert run("quote", str(tmp_path / "missing.yaml")).exit_code == 2
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert "must hold a mapping" in run("quote", str(tmp_path / "list.yaml")).output
    bad_time = run("reservations", "buy", "2", "--devices", "1", "--from", "tomorrow", "--to", "later")
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.output
    assert provider("offers", "cancel", "1").exit_code == 0
    assert "already cancelled" in provider("offers", "cancel", "1").output
