"""computegrid's command line. Every command but `up` talks to the API through client.py."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from computegrid.cli import market as market_cli
from computegrid.cli import money
from computegrid.cli import regions as regions_cli
from computegrid.cli import tenants as tenants_cli
from computegrid.cli.bench import bench_app
from computegrid.cli.common import call, client, err, fail, out
from computegrid.cli.render import jobs_table, nodes_table, sites_table, state_text
from computegrid.cli.sim import sim_app
from computegrid.client import Client

app = typer.Typer(help="computegrid: pool, schedule and trade accelerator capacity.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
jobs_app = typer.Typer(help="List and inspect jobs.", invoke_without_command=True)
sites_app = typer.Typer(help="List or create sites.", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(sites_app, name="sites")
app.add_typer(bench_app, name="bench")
app.add_typer(sim_app, name="sim")
FINAL = {"succeeded", "failed", "cancelled"}


def _check_queue_policy(name: str) -> None:
    from computegrid.core.queueing import QUEUE_POLICIES

    if name not in QUEUE_POLICIES:
        raise fail(f"unknown queue policy {name!r}; known: {', '.join(QUEUE_POLICIES)}", 2)


@app.command()
def up(
    port: Annotated[int, typer.Option(help="Port for the API.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    state_dir: Annotated[Path, typer.Option(help="Where SQLite, keys and job files live.")] = Path(".computegrid"),
    site_file: Annotated[Path | None, typer.Option(help="Declare extra devices for the local node (demo).")] = None,
    policy: Annotated[str, typer.Option(help="Placement policy (see core/placement).")] = "default",
    queue_policy: Annotated[str, typer.Option(help="Queue order: multifactor (priority class, fair share, age, "
                                                   "package; EASY backfill), fair, fifo or sjf.")] = "multifactor",
    heartbeat_timeout: Annotated[float, typer.Option(help="Seconds of silence before a node's jobs are lost.")] = 30,
    poll_interval: Annotated[float, typer.Option(help="Agent poll interval, seconds.")] = 0.5,
    no_agent: Annotated[bool, typer.Option("--no-agent", help="Run the API and scheduler only.")] = False,
    backend: Annotated[str, typer.Option(help="Engine the agent drives: local, slurm, ray, kubernetes.")] = "local",
    backend_config: Annotated[Path | None, typer.Option(help="YAML file of engine options (docs/backends/).")] = None,
) -> None:
    """Run the API, the scheduler and a local agent together (Ctrl-C stops all)."""
    from computegrid.agent.backend_config import BackendConfigError
    from computegrid.cli.up import UpOptions, run_up

    for given in (site_file, backend_config):
        if given is not None and not given.exists():
            raise fail(f"{given} does not exist", 2)
    _check_queue_policy(queue_policy)
    try:
        run_up(UpOptions(host=host, port=port, state_dir=state_dir, site_file=site_file, policy=policy,
                         queue_policy=queue_policy,
                         heartbeat_timeout_s=heartbeat_timeout, poll_interval_s=poll_interval, agent=not no_agent,
                         backend=backend, backend_config=backend_config),
               out)
    except BackendConfigError as exc:
        raise fail(str(exc), 2) from exc
    except (RuntimeError, KeyError, ValueError) as exc:
        raise fail(str(exc)) from exc


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port for the API.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, max=64, help="API worker processes.")] = 2,
    state_dir: Annotated[Path, typer.Option(help="State directory (SQLite, keys).")] = Path(".computegrid"),
) -> None:
    """Run only the API, in several processes (full-size layout; pair with `computegrid scheduler`)."""
    from computegrid.cli.serve import run_serve

    run_serve(host=host, port=port, workers=workers, state_dir=state_dir, console=out)


@app.command()
def scheduler(
    policy: Annotated[str, typer.Option(help="Placement policy (see core/placement).")] = "default",
    queue_policy: Annotated[str, typer.Option(help="Queue order: multifactor (priority class, fair share, age, "
                                                   "package; EASY backfill), fair, fifo or sjf.")] = "multifactor",
    heartbeat_timeout: Annotated[float, typer.Option(help="Seconds of silence before a node's jobs are lost.")] = 30,
    state_dir: Annotated[Path, typer.Option(help="State directory (SQLite).")] = Path(".computegrid"),
) -> None:
    """Run only the scheduler (full-size layout). On PostgreSQL a second one waits for the leader's lock."""
    from computegrid.cli.serve import run_scheduler

    _check_queue_policy(queue_policy)
    try:
        run_scheduler(policy=policy, queue_policy=queue_policy, heartbeat_timeout_s=heartbeat_timeout,
                      state_dir=state_dir, console=out)
    except KeyError as exc:
        raise fail(str(exc), 2) from exc


@app.command()
def agent(
    site: Annotated[str, typer.Option(help="Site this node belongs to.")],
    backend: Annotated[str, typer.Option(help="Execution backend: local, slurm, ray or kubernetes.")] = "local",
    backend_config: Annotated[Path | None, typer.Option(help="YAML file of engine options (docs/backends/).")] = None,
    site_file: Annotated[Path | None, typer.Option(help="Declare extra devices (local backend, demo).")] = None,
    node_name: Annotated[str | None, typer.Option(help="Node name on a one-node site (default: hostname).")] = None,
    work_dir: Annotated[Path, typer.Option(help="Where the backend keeps its job files.")] = Path(
        ".computegrid/agent"),
    poll_interval: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 1.0,
    lease: Annotated[float, typer.Option(
        help="Seconds without an answered heartbeat after which local jobs stop themselves; keep it below "
             "the control plane's --heartbeat-timeout (default 30), which requeues them.")] = 20.0,
) -> None:
    """Join a site: register its nodes' inventory, heartbeat, and run assigned jobs on its engine."""
    import logging
    import threading

    from computegrid.agent.agent import Agent
    from computegrid.agent.backend_config import BackendConfigError, make_backend
    from computegrid.agent.work_lock import WorkDirTaken, hold_work_dir

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(message)s")
    if lease <= 0:
        raise fail("--lease must be positive", 2)
    # Each node's agent keeps its own attempts, so two agents of one site never share (or reap) them.
    where = work_dir / site / node_name if node_name else work_dir / site
    try:
        held = hold_work_dir(where)  # noqa: F841 - the lock lasts as long as the handle
    except WorkDirTaken as exc:
        raise fail(str(exc), 2) from exc
    try:
        engine = make_backend(backend, work_dir=where, config_file=backend_config, site_file=site_file)
    except BackendConfigError as exc:
        raise fail(str(exc), 2) from exc
    runner = Agent(client(), engine, site=site, node_name=node_name, poll_interval=poll_interval, lease_s=lease)
    call(runner.register)
    stop = threading.Event()
    try:
        runner.run(stop)
    except KeyboardInterrupt:
        stop.set()
        runner.shutdown("the agent was stopped")


def _read_spec(file: Path) -> dict[str, Any] | str:
    """The spec to send: a dict with workdir made absolute, or the raw text for the server to judge."""
    if not file.exists():
        raise fail(f"{file} does not exist", 2)
    text = file.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # the server names the line and column
    if isinstance(data, dict) and isinstance(data.get("workdir"), str):
        workdir = Path(data["workdir"]).expanduser()
        if not workdir.is_absolute():
            data["workdir"] = str((file.parent / workdir).resolve())
        return data
    return text


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="Job spec (YAML).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job, streaming its output.")] = False,
    idempotency_key: Annotated[str | None, typer.Option(help="Resubmitting with the same key is a no-op.")] = None,
) -> None:
    """Submit a job. Prints the job id last; with --wait, prints the id at once, then each change of state and
    its reason (on stderr) while streaming the job's output (on stdout), and exits with the job's outcome."""
    api = client()
    job = call(api.submit, _read_spec(file), idempotency_key=idempotency_key)
    if not wait:
        out.print(f"submitted job {job['id']} ({job['name']}): {state_text(job['state'])}", highlight=False)
        typer.echo(job["id"])
        return
    err.print(f"submitted job {job['id']} ({job['name']})", highlight=False)
    final = _wait(api, job["id"])
    out.print(f"job {final['id']} {state_text(final['state'])}"
              + (f" (exit code {final['exit_code']})" if final["exit_code"] is not None else ""), highlight=False)
    raise typer.Exit(0 if final["state"] == "succeeded" else 1)


def _wait(api: Client, job_id: int) -> dict[str, Any]:
    """Stream the job's output until it ends, printing its state and reason each time either changes."""
    offset, attempt = 0, None
    shown: tuple[str, str] | None = None
    while True:
        logs = call(api.logs, job_id, offset=offset)
        if attempt != logs["attempt"]:
            attempt, offset = logs["attempt"], 0
            logs = call(api.logs, job_id, offset=0)
        if logs["data"]:
            sys.stdout.write(logs["data"])
            sys.stdout.flush()
        offset = logs["next_offset"]
        job = call(api.job, job_id)
        if (job["state"], job["state_reason"]) != shown:
            shown = (job["state"], job["state_reason"])
            err.print(f"job {job_id}: {state_text(job['state'])} — {job['state_reason']}", highlight=False)
        if job["state"] in FINAL and job["state"] == logs["state"]:
            rest = call(api.logs, job_id, offset=offset)
            if rest["data"]:
                sys.stdout.write(rest["data"])
            return dict(job)
        time.sleep(0.3)


@jobs_app.callback()
def jobs_list(ctx: typer.Context,
              state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
              limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50) -> None:
    """List jobs, newest first."""
    if ctx.invoked_subcommand is None:
        out.print(jobs_table(call(client().jobs, state=state, limit=limit)))


@jobs_app.command("show")
def jobs_show(job_id: int,
              as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Show one job: state, placement, times and usage."""
    job = call(client().job, job_id)
    if as_json:
        typer.echo(json.dumps(job, sort_keys=True))
        return
    out.print(f"[bold]job {job['id']}[/] {job['name']}: {state_text(job['state'])} — {job['state_reason']}")
    out.print(f"priority {job.get('priority', '-')}  package priority {job.get('package_priority', '-')}",
              highlight=False)
    nodes = ", ".join(f"{n['node']}{n['devices'] or ''}" for n in job.get("nodes", []))
    out.print(f"site {job['site'] or '-'}  nodes {nodes or '-'}  attempt {job['attempt']}  "
              f"exit {job['exit_code'] if job['exit_code'] is not None else '-'}")
    out.print(f"submitted {job['submitted_at']}  started {job['started_at'] or '-'}  ended {job['ended_at'] or '-'}")
    usage = job["usage"]
    out.print(f"usage: {usage['device_seconds']} device-s, {usage['cpu_seconds']} CPU-s, du {usage['du'] or '-'}")


@app.command()
def logs(job_id: int,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
         attempt: Annotated[int | None, typer.Option(help="Attempt (default: latest).")] = None,
         rank: Annotated[int | None, typer.Option(
             help="One rank of a gang (default: every rank, each line prefixed \\[rank N]).")] = None) -> None:
    """Print a job's output."""
    api = client()
    offset = 0
    while True:
        chunk = call(api.logs, job_id, offset=offset, attempt=attempt, rank=rank)
        sys.stdout.write(chunk["data"])
        sys.stdout.flush()
        offset = chunk["next_offset"]
        if not follow or (chunk["state"] in FINAL and not chunk["data"]):
            return
        time.sleep(0.5)


@app.command()
def cancel(job_id: int) -> None:
    """Cancel a job; a running one is stopped by its agent."""
    job = call(client().cancel, job_id)
    out.print(f"job {job['id']} {state_text(job['state'])}", highlight=False)


@app.command()
def events(job_id: int) -> None:
    """A job's state changes, with reasons."""
    for e in call(client().events, job_id):
        out.print(f"{e['at']}  {e['from'] or '-':>9} -> {state_text(e['to'])}  {e['reason']}", highlight=False)


@sites_app.callback()
def sites_list(ctx: typer.Context) -> None:
    """List sites."""
    if ctx.invoked_subcommand is None:
        out.print(sites_table(call(client().sites)))


@sites_app.command("create")
def sites_create(name: str,
                 region: Annotated[str, typer.Option(help="Region, e.g. yangtze-delta.")],
                 tier: Annotated[str, typer.Option(help="core, hub or edge.")],
                 backend: Annotated[str, typer.Option(help="local, slurm, ray or kubernetes.")] = "local",
                 electricity: Annotated[float, typer.Option(help="Electricity price, fen per kWh.")] = 0,
                 provider: Annotated[str | None, typer.Option(help="Owning provider (operators only).")] = None,
                 ) -> None:
    """Create a site for your provider."""
    site = call(client().create_site, name, region=region, tier=tier, backend=backend,
                electricity_fen_per_kwh=electricity, provider=provider)
    out.print(f"created site {site['name']} ({site['region']}, {site['tier']})")


@app.command()
def nodes(site: Annotated[str | None, typer.Option(help="Only this site.")] = None) -> None:
    """List nodes with their devices and last heartbeat."""
    out.print(nodes_table(call(client().nodes, site)))


money.register(app)  # after the core commands, so `--help` lists those first
market_cli.register(app)
tenants_cli.register(app)
regions_cli.register(app)


if __name__ == "__main__":
    app()
