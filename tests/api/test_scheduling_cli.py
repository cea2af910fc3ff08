"""The CLI around the queue's inputs, run in-process against the API: operators set tenant limits, and
`submit --wait` prints the job id at once, then each state and reason while the job waits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from computegrid.cli import main
from computegrid.cli import tenants as tenants_cli
from computegrid.client import Client
from computegrid.store.models import Job, Tenant
from tests.api.conftest import World


def client_for(world: World, who: str) -> Client:
    api = Client("http://testserver", world.keys[who])
    api.http = world.app_client
    api.http.headers["Authorization"] = f"Bearer {world.keys[who]}"
    return api


def run_as(world: World, monkeypatch: pytest.MonkeyPatch, who: str) -> Any:
    monkeypatch.setattr(main, "client", lambda: client_for(world, who))
    monkeypatch.setattr(tenants_cli, "_client", lambda: client_for(world, who))
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main.app, list(args), env={"COLUMNS": "200"})

    return run


def test_operator_sets_tenant_limits_from_the_cli(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_as(world, monkeypatch, "op")
    done = run("tenants", "set", "alpha", "--priority-classes", "low,normal,high", "--fair-share", "2")
    assert done.exit_code == 0, done.output
    assert "low,normal,high" in done.output
    with world.db.reading() as session:
        alpha = session.get(Tenant, 1)
        assert alpha is not None and (alpha.priority_classes, alpha.fair_share) == ("low,normal,high", 2)
    listed = run("tenants")
    assert listed.exit_code == 0 and "beta" in listed.output and "low,normal" in listed.output

    bad = run("tenants", "set", "alpha", "--priority-classes", "low,urgent")
    assert bad.exit_code == 1 and "unknown priority class 'urgent'" in bad.output and "HTTP 422" in bad.output
    assert run("tenants", "set", "alpha", "--fair-share", "0").exit_code == 1
    assert run("tenants", "set", "nobody", "--fair-share", "2").exit_code == 1
    refused = run_as(world, monkeypatch, "alice")("tenants", "set", "alpha", "--fair-share", "5")
    assert refused.exit_code == 1 and "HTTP 403" in refused.output
    with world.db.reading() as session:
        alpha = session.get(Tenant, 1)
        assert alpha is not None and (alpha.priority_classes, alpha.fair_share) == ("low,normal,high", 2)


def test_submit_wait_prints_the_id_at_once_then_each_state_and_reason(
        world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: waiting\nrun: echo hi\n")
    polls = {"n": 0}

    def next_poll(_seconds: float) -> None:
        """Stands in for the scheduler and the user between polls: a reason changes, then the job is cancelled."""
        polls["n"] += 1
        with world.db.transaction() as session:
            job = session.query(Job).one()
            if polls["n"] == 2:
                job.state_reason = "no site has a free A100 now"
        if polls["n"] == 4:
            assert world.call("alice", "POST", f"/v1/jobs/{job.id}/cancel").status_code == 200

    monkeypatch.setattr(main.time, "sleep", next_poll)
    run = run_as(world, monkeypatch, "alice")
    result = run("submit", str(spec), "--wait")
    assert result.exit_code == 1, result.output  # cancelled is not success
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    with world.db.reading() as session:
        job_id = session.query(Job).one().id
    assert lines == [f"submitted job {job_id} (waiting)",
                     f"job {job_id}: pending — waiting for placement",
                     f"job {job_id}: pending — no site has a free A100 now",
                     f"job {job_id}: cancelled — cancelled by alice"]
    assert f"job {job_id} cancelled" in result.output

    shown = run("jobs", "show", str(job_id))
    assert shown.exit_code == 0, shown.output
    assert "cancelled by alice" in shown.output and "priority normal" in shown.output
