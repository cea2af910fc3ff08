"""`computegrid sim federation`: the table, OUT.json, the HTML report with its plots, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from computegrid.cli.sim import sim_app
from computegrid.sim.metrics import HEADLINE
from tests.sim.federation_helpers import synthetic_trace, write_pool_csv, write_trace_csv

pytest.importorskip("matplotlib")


def test_federation_writes_json_and_report(tmp_path: Path) -> None:
    pool = write_pool_csv(tmp_path / "pool.csv")
    trace = write_trace_csv(tmp_path / "trace.csv", synthetic_trace(days=14))
    out = tmp_path / "out.json"
    result = CliRunner().invoke(sim_app, ["federation", "--pool", str(pool), "--trace", str(trace), "--seed", "2",
                                          "--load", "0.6", "--json", str(out), "--report", str(tmp_path / "rep"),
                                          "--quiet"])
    assert result.exit_code == 0, result.output
    assert "isolated" in result.output and "computegrid" in result.output
    figures = json.loads(out.read_text())
    for world in ("isolated", "computegrid"):
        assert set(HEADLINE) <= set(figures["worlds"][world])
    assert figures["seed"] == 2 and figures["demand"]["offered_load"] >= 0.6
    assert figures["worlds"]["computegrid"]["latency_slo_violations"] == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    for name in ("utilisation.png", "idle.png", "waits.png", "spot_index.png", "cost_per_du.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 1000
        assert name in html


def test_federation_rejects_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(sim_app, ["federation", "--trace", str(tmp_path / "missing.csv"), "--pool",
                                     str(write_pool_csv(tmp_path / "pool.csv")), "--quiet"])
    assert result.exit_code == 2 and "no such trace file" in result.output
    result = runner.invoke(sim_app, ["federation", "--load", "0", "--quiet"])
    assert result.exit_code == 2 and "--load" in result.output
    result = runner.invoke(sim_app, ["federation", "--json", str(tmp_path / "nowhere" / "out.json"), "--quiet"])
    assert result.exit_code == 2 and "does not exist" in result.output
