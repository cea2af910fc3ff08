"""`computegrid up` with experimental changes patched in at run time, to measure them without editing src/.

    python benchmarks/server_variants.py --variants no-wake,core-insert up --no-agent --port 8000 --state-dir DIR

api_submit.py runs this when given `--variant`. Each variant is one change a maintainer might make in src/;
nothing here is meant for production — it exists to price the changes before making them.

Variants (comma-separated):
  no-wake        submissions do not wake the scheduler; it still ticks every 0.2 s
  no-scheduler   the scheduler thread does nothing (lower bound on its cost)
  no-preping     the PostgreSQL pool does not ping a connection on each checkout (pool_pre_ping=False)
  async-deps     the state and principal dependencies run on the event loop, not in the threadpool
  no-middleware  drop computegrid's RequestCounter and BodySizeLimit middleware
  core-insert    POST /v1/jobs inserts with two SQLAlchemy Core statements in one transaction (no ORM unit of
                 work, no tenant SELECT for the view); falls back to the original for Idempotency-Key requests
  pg-cte         like core-insert, but on PostgreSQL one statement (INSERT job ... RETURNING feeding the event
                 INSERT in a CTE) on the raw psycopg connection
  workers=N      N API processes sharing the port with SO_REUSEPORT; the first also runs the scheduler
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the overrides' annotations from these globals

VARIANTS = {"no-wake", "no-scheduler", "no-preping", "async-deps", "no-middleware", "core-insert", "pg-cte"}


def parse_variants(text: str) -> dict[str, Any]:
    chosen: dict[str, Any] = {}
    for item in filter(None, (v.strip() for v in text.split(","))):
        name, _, value = item.partition("=")
        if name == "workers":
            chosen["workers"] = int(value)
        elif name in VARIANTS:
            chosen[name] = True
        else:
            raise SystemExit(f"unknown variant {item!r}; known: {', '.join(sorted(VARIANTS))}, workers=N")
    return chosen


def reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(False)
    return sock


def die_with_parent() -> None:
    """Linux: get SIGTERM if the parent dies, so a killed launcher leaves no workers behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def lean_submit(pg_cte: bool) -> Any:
    """A replacement for routes.jobs._submit: same checks and answer, leaner persistence."""
    from sqlalchemy import insert, select

    from computegrid.api.routes import jobs as routes
    from computegrid.core.jobs import JobState
    from computegrid.services import jobs
    from computegrid.services.errors import Forbidden
    from computegrid.services.views import iso
    from computegrid.store.models import Job, JobEvent, Tenant

    original = routes._submit
    tenant_names: dict[int, str] = {}
    ins_job = insert(Job).returning(Job.id)
    ins_event = insert(JobEvent)
    cte_sql = ("WITH j AS (INSERT INTO jobs (tenant_id, user_id, name, spec, state, state_reason, attempt, "
               "submitted_ms, updated_ms) VALUES (%s, %s, %s, %s, %s, %s, 0, %s, %s) RETURNING id) "
               "INSERT INTO job_events (job_id, at_ms, from_state, to_state, reason) "
               "SELECT id, %s, NULL, %s, 'submitted' FROM j RETURNING job_id")

    def _submit(data: Any, response: Any, principal: Any, state: Any, idempotency_key: str | None) -> dict[str, Any]:
        if idempotency_key is not None:
            return original(data, response, principal, state, idempotency_key)
        spec = jobs.validate_spec(data, state.catalog)
        jobs.check_fits_somewhere(spec, state.pool_shape())
        if principal.tenant_id is None:
            raise Forbidden("only a tenant's users (or an operator with a tenant) may submit jobs")
        now = state.clock.now_ms()
        spec_json = json.dumps(spec.to_dict(), sort_keys=True)
        pending = JobState.PENDING.value
        engine = state.db.engine
        if pg_cte and engine.dialect.name == "postgresql":
            raw = engine.raw_connection()
            try:
                with raw.driver_connection.cursor() as cur:
                    cur.execute(cte_sql, (principal.tenant_id, principal.user_id, spec.name, spec_json, pending,
                                          "waiting for placement", now, now, now, pending))
                    row = cur.fetchone()
                raw.driver_connection.commit()
            except BaseException:
                raw.driver_connection.rollback()
                raise
            finally:
                raw.close()
            job_id = int(row[0])
        else:
            with engine.begin() as conn:
                job_id = conn.execute(ins_job, {
                    "tenant_id": principal.tenant_id, "user_id": principal.user_id, "name": spec.name,
                    "spec": spec_json, "state": pending, "state_reason": "waiting for placement", "attempt": 0,
                    "idempotency_key": None, "submitted_ms": now, "updated_ms": now}).scalar_one()
                conn.execute(ins_event, {"job_id": job_id, "at_ms": now, "from_state": None, "to_state": pending,
                                         "reason": "submitted"})
        tenant = tenant_names.get(principal.tenant_id)
        if tenant is None:
            with engine.connect() as conn:
                tenant = conn.execute(select(Tenant.name).where(Tenant.id == principal.tenant_id)).scalar_one()
            tenant_names[principal.tenant_id] = tenant
        if state.http is not None:
            state.http.submitted.inc()
        if state.wake_scheduler is not None:
            state.wake_scheduler.set()
        return {"id": job_id, "name": spec.name, "tenant": tenant, "state": pending,
                "state_reason": "waiting for placement", "attempt": 0, "site": None, "exit_code": None,
                "submitted_at": iso(now), "placed_at": None, "started_at": None, "ended_at": None}

    return _submit


def apply(chosen: dict[str, Any]) -> None:
    """Patch the modules before `up` builds anything."""
    import uvicorn

    from computegrid.api import app as app_module
    from computegrid.api import deps, limits
    from computegrid.api.routes import jobs as routes
    from computegrid.cli import up
    from computegrid.services.scheduler import Scheduler
    from computegrid.store import db

    if chosen.get("no-preping"):
        make_engine = db.make_engine

        def make_engine_no_ping(url: str, **kwargs: Any) -> Any:
            if not url.startswith("sqlite"):
                kwargs["pool_pre_ping"] = False
            return make_engine(url, **kwargs)

        db.make_engine = make_engine_no_ping

    if chosen.get("no-scheduler"):
        def idle(self: Scheduler, stop: threading.Event, interval_s: float = 0.2) -> None:
            stop.wait()

        Scheduler.run = idle  # type: ignore[method-assign]

    if chosen.get("core-insert") or chosen.get("pg-cte"):
        routes._submit = lean_submit(pg_cte=bool(chosen.get("pg-cte")))

    create_app = app_module.create_app

    def create_app_variant(state: deps.AppState, **kwargs: Any) -> Any:
        if chosen.get("no-wake"):
            state.wake_scheduler = None
        app = create_app(state, **kwargs)
        if chosen.get("async-deps"):
            async def state_on_loop(request: Request) -> deps.AppState:
                return request.app.state.computegrid  # type: ignore[no-any-return]

            async def principal_on_loop(request: Request) -> Any:
                return deps.get_principal(request, request.app.state.computegrid)

            app.dependency_overrides[deps.get_state] = state_on_loop
            app.dependency_overrides[deps.get_principal] = principal_on_loop
        if chosen.get("no-middleware"):
            ours: tuple[Any, ...] = (app_module.RequestCounter, limits.BodySizeLimit)
            app.user_middleware[:] = [m for m in app.user_middleware if m.cls not in ours]
        return app

    up.create_app = create_app_variant  # type: ignore[attr-defined]
    app_module.create_app = create_app_variant

    workers = int(chosen.get("workers", 1))
    if workers > 1:
        # every process listens on its own SO_REUSEPORT socket; the kernel spreads connections across them
        run = uvicorn.Server.run

        def run_on_shared_port(self: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
            run(self, sockets=sockets or [reuse_port_socket(self.config.host, self.config.port)])

        uvicorn.Server.run = run_on_shared_port  # type: ignore[method-assign]
        children: list[subprocess.Popen[bytes]] = []
        start, shutdown = up.Platform.start, up.Platform.shutdown

        def start_with_workers(self: up.Platform) -> None:
            start(self)
            argv = [sys.executable, os.path.abspath(__file__), "--variants", os.environ["CG_VARIANTS"], "--child",
                    "--host", self.opts.host, "--port", str(self.opts.port), "--state-dir", str(self.opts.state_dir)]
            for _ in range(workers - 1):
                children.append(subprocess.Popen(argv, preexec_fn=die_with_parent))  # noqa: PLW1509
            deadline = time.monotonic() + 60
            while not all(_child_ready(c) for c in children):
                if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                    raise RuntimeError("an API worker process did not start")
                time.sleep(0.1)
            self.console.print(f"{workers} API processes share port {self.opts.port} (SO_REUSEPORT)")

        def shutdown_with_workers(self: up.Platform) -> None:
            for c in children:
                if c.poll() is None:
                    c.send_signal(signal.SIGINT)
            for c in children:
                try:
                    c.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    c.kill()
                    c.wait()
            shutdown(self)

        up.Platform.start = start_with_workers  # type: ignore[method-assign]
        up.Platform.shutdown = shutdown_with_workers  # type: ignore[method-assign]


def _child_ready(child: subprocess.Popen[bytes]) -> bool:
    return os.path.exists(f"/tmp/.cg-variant-ready-{child.pid}")


def run_child(host: str, port: int, state_dir: str) -> None:
    """One extra API process: its own engine and app state, no scheduler, same port."""
    from pathlib import Path

    import uvicorn

    from computegrid.api.app import create_app
    from computegrid.api.deps import AppState
    from computegrid.core.catalog import default_catalog
    from computegrid.services.clock import SystemClock
    from computegrid.store.db import Database, default_database_url

    database = Database(default_database_url(Path(state_dir)))
    state = AppState(db=database, catalog=default_catalog(), clock=SystemClock())
    config = uvicorn.Config(create_app(state), host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    marker = f"/tmp/.cg-variant-ready-{os.getpid()}"

    def mark_ready() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        Path(marker).touch()

    threading.Thread(target=mark_ready, daemon=True).start()
    try:
        server.run()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(marker)
        database.dispose()


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--variants":
        raise SystemExit(__doc__)
    os.environ["CG_VARIANTS"] = args[1]
    chosen = parse_variants(args[1])
    apply(chosen)
    rest = args[2:]
    if rest and rest[0] == "--child":
        opts = dict(zip(rest[1::2], rest[2::2], strict=False))
        run_child(opts["--host"], int(opts["--port"]), opts["--state-dir"])
        return
    from computegrid.cli.main import app

    sys.argv = ["computegrid", *rest]
    app()


if __name__ == "__main__":
    main()
