"""The full-size layout: `serve` runs only the API (several worker processes), `scheduler` only the
scheduler. Both are stateless over the database; on PostgreSQL one scheduler leads at a time."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import uvicorn
from rich.console import Console

from computegrid.cli.up import Platform, UpOptions, check_port_free
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services.clock import SystemClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database, default_database_url


def run_serve(*, host: str, port: int, workers: int, state_dir: Path, console: Console) -> None:
    """Migrate and bootstrap once, then run `workers` API processes on one port."""
    platform = Platform(UpOptions(host=host, port=port, state_dir=state_dir, agent=False), console)
    check_port_free(host, port)
    operator_key, _agent_key = platform.prepare()
    platform.publish_credentials(operator_key)
    platform.db.dispose()
    os.environ.setdefault("COMPUTEGRID_STATE_DIR", str(state_dir))
    console.print(f"computegrid API at [bold cyan]http://{host}:{port}[/] with {workers} worker(s), "
                  f"database: {platform.db.engine.dialect.name}")
    uvicorn.run("computegrid.api.factory:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, timeout_graceful_shutdown=5)


def run_scheduler(*, policy: str, heartbeat_timeout_s: float, state_dir: Path, console: Console,
                  queue_policy: str = "multifactor") -> None:
    """Run the scheduler loop until SIGINT/SIGTERM; it polls for new jobs, having no API to wake it."""
    logging.basicConfig(level=os.environ.get("COMPUTEGRID_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = Database(default_database_url(state_dir))
    scheduler = Scheduler(db=db, policy=get_policy(policy), catalog=default_catalog(), clock=SystemClock(),
                          heartbeat_timeout_ms=int(heartbeat_timeout_s * 1000), new_jobs_poll_s=0.2,
                          queue_policy=queue_policy)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        scheduler.wake.capacity()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    console.print(f"computegrid scheduler ({policy}, queue {queue_policy}) on {db.engine.dialect.name}; "
                  "Ctrl-C stops it.")
    scheduler.run(stop)
    db.dispose()
