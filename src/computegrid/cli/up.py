"""`computegrid up`: the API, the scheduler and one local agent in one process, on SQLite by default."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn
from rich.console import Console

from computegrid.agent.agent import Agent
from computegrid.agent.backend_config import make_backend
from computegrid.api.app import create_app
from computegrid.api.deps import AppState
from computegrid.client import Client, Credentials, load_credentials, save_credentials, write_private_file
from computegrid.core.catalog import default_catalog
from computegrid.core.placement import get_policy
from computegrid.services import bootstrap
from computegrid.services.clock import SystemClock
from computegrid.services.scheduler import Scheduler
from computegrid.store.db import Database, default_database_url
from computegrid.store.migrate import upgrade

log = logging.getLogger("computegrid.up")


@dataclass(frozen=True)
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: Path = Path(".computegrid")
    site_file: Path | None = None
    policy: str = "default"
    queue_policy: str = "multifactor"
    heartbeat_timeout_s: float = 30.0
    poll_interval_s: float = 0.5
    agent: bool = True
    credentials: Path | None = None
    backend: str = "local"
    backend_config: Path | None = None


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def check_port_free(host: str, port: int) -> None:
    """Fail early, before touching any state, when the address is taken."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {host}:{port} ({exc.strerror}); is computegrid already up? "
                               "Use --port to pick another") from exc


class Platform:
    """Everything `up` runs, started and stopped in order."""

    def __init__(self, opts: UpOptions, console: Console):
        self.opts = opts
        self.console = console
        self.url = f"http://{opts.host}:{opts.port}"
        opts.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(default_database_url(opts.state_dir))
        self.clock = SystemClock()
        self.catalog = default_catalog()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.agent: Agent | None = None
        self._operator_key_issued = False

    def prepare(self) -> tuple[str, str]:
        """Migrate, bootstrap, and make sure the operator's and agent's keys work. Returns both keys."""
        upgrade(self.db.engine)
        now = self.clock.now_ms()
        with self.db.transaction() as session:
            if bootstrap.ensure_platform(session=session, now_ms=now, site=bootstrap.LocalSite()):
                self.console.print("[green]First start:[/] created operator [bold]admin[/], tenant "
                                   "[bold]default[/] and site [bold]local[/].")
            existing = load_credentials(self.opts.credentials)
            operator_key, issued = bootstrap.key_for(session=session, user_name=bootstrap.OPERATOR,
                                                     existing=existing.api_key if existing else None, now_ms=now)
            agent_file = self.opts.state_dir / "agent-key"
            agent_key, agent_issued = bootstrap.key_for(session=session, user_name=bootstrap.AGENT_USER,
                                                        existing=_read(agent_file), now_ms=now)
        if agent_issued:
            write_private_file(agent_file, agent_key + "\n")
        self._operator_key_issued = issued
        return operator_key, agent_key

    def publish_credentials(self, operator_key: str) -> None:
        """Point the CLI at this platform; only once it answers, so a failed start changes nothing."""
        path = save_credentials(Credentials(url=self.url, api_key=operator_key), self.opts.credentials)
        if self._operator_key_issued:
            self.console.print(f"Operator API key written to [bold]{path}[/] (the CLI reads it from there).")

    def start(self) -> None:
        check_port_free(self.opts.host, self.opts.port)
        backend = None
        if self.opts.agent:  # a bad engine config fails here, before any state is written
            backend = make_backend(self.opts.backend, work_dir=self.opts.state_dir / "agent" / self.opts.backend,
                                   config_file=self.opts.backend_config, site_file=self.opts.site_file)
        operator_key, agent_key = self.prepare()
        scheduler = Scheduler(db=self.db, policy=get_policy(self.opts.policy), catalog=self.catalog,
                              clock=self.clock, heartbeat_timeout_ms=int(self.opts.heartbeat_timeout_s * 1000),
                              queue_policy=self.opts.queue_policy)
        state = AppState(db=self.db, catalog=self.catalog, clock=self.clock, scheduler_wake=scheduler.wake)
        config = uvicorn.Config(create_app(state), host=self.opts.host, port=self.opts.port, log_level="warning",
                                access_log=False, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self._spawn("api", self.server.run)
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.threads[0].is_alive():
                raise RuntimeError(f"the API did not start on {self.url} (is the port taken? try --port)")
            time.sleep(0.05)
        self.publish_credentials(operator_key)
        self.scheduler = scheduler
        self._spawn("scheduler", lambda: scheduler.run(self.stop))
        if backend is not None:
            self.agent = Agent(Client(self.url, agent_key), backend, site="local",
                               poll_interval=self.opts.poll_interval_s)
            agent = self.agent
            self._spawn("agent", lambda: agent.run(self.stop))
        self.console.print(f"computegrid is up at [bold cyan]{self.url}[/]  (API docs: {self.url}/docs, "
                           f"database: {self.db.engine.dialect.name})")
        self.console.print("In another terminal: [bold]computegrid submit examples/hello.yaml --wait[/]. "
                           "Ctrl-C stops everything.")

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self.threads.append(thread)

    def shutdown(self) -> None:
        """Stop the agent's jobs (reported lost, so they requeue), then the scheduler, then the API."""
        self.console.print("Stopping computegrid...")
        self.stop.set()
        self.scheduler.wake.capacity()  # end its wait now
        for thread in self.threads[1:]:
            thread.join(timeout=10)
        if self.agent is not None:
            self.agent.shutdown("computegrid up was stopped")
        self.server.should_exit = True
        self.threads[0].join(timeout=10)
        self.db.dispose()
        self.console.print("Stopped.")


def run_up(opts: UpOptions, console: Console) -> None:
    logging.basicConfig(level=os.environ.get("COMPUTEGRID_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    platform = Platform(opts, console)
    stopped = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    platform.start()
    while not stopped.wait(0.5):
        if not platform.threads[0].is_alive():
            console.print("[red]The API server stopped unexpectedly.[/]")
            break
    platform.shutdown()
