"""The agent loop. It never runs an attempt twice: the backend's `submit` is idempotent per
(job, attempt), and after a restart the agent re-attaches to what the engine already runs."""

from __future__ import annotations

import codecs
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx

from computegrid.backends.base import FINISHED, Backend, EngineState, Inventory, RunRequest
from computegrid.client import ApiError, Client

log = logging.getLogger(__name__)


@dataclass
class Tracked:
    """An attempt this agent is watching, and what it has told the control plane so far."""

    job_id: int
    attempt: int
    engine_id: str
    reported: str = ""
    log_bytes: int = 0
    log_chars: int = 0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))


class Agent:
    def __init__(self, client: Client, backend: Backend, *, site: str, node_name: str | None = None,
                 poll_interval: float = 0.5, telemetry_every: int = 10):
        self.client = client
        self.backend = backend
        self.site = site
        self.node_name = node_name
        self.poll_interval = poll_interval
        self.telemetry_every = telemetry_every
        self.node_id: int | None = None
        self.inventory: Inventory | None = None
        self.tracked: dict[tuple[int, int], Tracked] = {}
        self._polls = 0
        self._models: dict[int, str] = {}

    def register(self) -> int:
        inv = self.backend.inventory()
        self.inventory = inv
        self._models = {d.index: d.model for d in inv.devices}
        self.node_id = self.client.register_node(
            site=self.site, name=self.node_name or inv.hostname, cpu_milli=inv.cpu_milli, memory_mb=inv.memory_mb,
            devices=[{"index": d.index, "model": d.model, "memory_gb": d.memory_gb, "source": d.source}
                     for d in inv.devices])
        log.info("registered node %s (id %s) at site %s: %d CPUs, %d devices", self.node_name or inv.hostname,
                 self.node_id, self.site, inv.cpu_milli // 1000, len(inv.devices))
        return self.node_id

    # -- one poll
    def poll_once(self) -> None:
        assert self.node_id is not None, "register() first"
        telemetry = self.backend.telemetry() if self._polls % self.telemetry_every == 0 else []
        self._polls += 1
        assignments = self.client.heartbeat(self.node_id, telemetry)
        wanted = {(int(a["job_id"]), int(a["attempt"])): a for a in assignments}
        for key, assignment in wanted.items():
            if key not in self.tracked:
                self._adopt(assignment)
        for key in list(self.tracked):
            if key not in wanted:
                self._stop(self.tracked.pop(key))
        for key, tracked in list(self.tracked.items()):
            if self._advance(tracked):
                del self.tracked[key]

    def _adopt(self, a: dict[str, Any]) -> None:
        job_id, attempt = int(a["job_id"]), int(a["attempt"])
        engine_id = self.backend.engine_id(job_id, attempt)
        status = self.backend.status(engine_id)
        if status.state in (EngineState.UNKNOWN, EngineState.QUEUED):
            if a["state"] != "placed" and status.state == EngineState.UNKNOWN:
                self._report(Tracked(job_id, attempt, engine_id), "failed",
                             reason="the node has no record of this attempt (its local state was lost)")
                return
            engine_id = self.backend.submit(RunRequest.from_assignment(a, self._models))
            log.info("started job %s attempt %s as %s", job_id, attempt, engine_id)
        else:
            log.info("re-attached to job %s attempt %s (%s)", job_id, attempt, status.state)
        self.tracked[(job_id, attempt)] = Tracked(job_id, attempt, engine_id, reported=a["state"])

    def _advance(self, t: Tracked) -> bool:
        """Ship logs and state for one attempt; True when it is finished and reported."""
        status = self.backend.status(t.engine_id)
        self._ship_logs(t, final=status.state in FINISHED)
        if status.state != EngineState.QUEUED and status.started_ms and t.reported in ("placed", "starting"):
            self._report(t, "running", at_ms=status.started_ms)
        if status.state in FINISHED:
            self._ship_usage(t)
            state = "succeeded" if status.state == EngineState.SUCCEEDED else "failed"
            self._report(t, state, exit_code=status.exit_code, reason=status.reason, at_ms=status.ended_ms)
            return True
        return False

    def _stop(self, t: Tracked) -> None:
        """The control plane no longer wants this attempt: stop it and account for what it ran."""
        log.info("stopping job %s attempt %s: no longer assigned here", t.job_id, t.attempt)
        self.backend.cancel(t.engine_id)
        try:
            self._ship_logs(t, final=False)
            self._ship_usage(t)
        except ApiError as exc:
            log.warning("could not report the end of job %s: %s", t.job_id, exc.detail)

    def _report(self, t: Tracked, state: str, **kwargs: Any) -> None:
        assert self.node_id is not None
        try:
            self.client.report_state(t.job_id, node_id=self.node_id, attempt=t.attempt, state=state, **kwargs)
            t.reported = state
        except ApiError as exc:
            if exc.status in (404, 409):  # superseded attempt or ended job: nothing more to say
                t.reported = state
                log.info("job %s attempt %s: %s", t.job_id, t.attempt, exc.detail)
            else:
                raise

    def _ship_logs(self, t: Tracked, *, final: bool) -> None:
        assert self.node_id is not None
        while True:
            read = self.backend.logs(t.engine_id, t.log_bytes)
            text = t.decoder.decode(read.data, final=final and not read.data)
            t.log_bytes = read.next_offset
            if text:
                t.log_chars = self.client.append_log(t.job_id, node_id=self.node_id, attempt=t.attempt,
                                                     offset=t.log_chars, data=text)
            if not read.data:
                return

    def _ship_usage(self, t: Tracked) -> None:
        assert self.node_id is not None
        slices = self.backend.usage(t.engine_id)
        if slices:
            self.client.report_usage(t.job_id, node_id=self.node_id, attempt=t.attempt,
                                     intervals=[vars(s) for s in slices])

    # -- lifecycle
    def reap_orphans(self) -> None:
        """Stop attempts the engine runs but the control plane does not list (cancelled while we were away)."""
        wanted = {t.engine_id for t in self.tracked.values()}
        for engine_id in self.backend.active_ids():
            if engine_id not in wanted:
                log.info("stopping orphaned %s", engine_id)
                self.backend.cancel(engine_id)

    def run(self, stop: threading.Event) -> None:
        """Register, then poll until `stop` is set. Network errors are retried; the engine keeps running."""
        while not stop.is_set() and self.node_id is None:
            try:
                self.register()
            except (httpx.HTTPError, ApiError) as exc:
                log.warning("cannot register yet: %s", exc)
                stop.wait(1.0)
        first = True
        while not stop.is_set():
            try:
                self.poll_once()
                if first:
                    self.reap_orphans()
                    first = False
            except (httpx.HTTPError, ApiError) as exc:
                log.warning("poll failed, will retry: %s", exc)
            stop.wait(self.poll_interval)

    def shutdown(self, reason: str = "the agent stopped") -> None:
        """Stop every attempt here and tell the control plane they are lost (so they can be requeued)."""
        for t in list(self.tracked.values()):
            self.backend.cancel(t.engine_id)
        for t in list(self.tracked.values()):
            try:
                self._ship_logs(t, final=False)
                self._ship_usage(t)
                self._report(t, "lost", reason=reason)
            except (httpx.HTTPError, ApiError) as exc:
                log.warning("could not report job %s as lost: %s", t.job_id, exc)
        self.tracked.clear()
