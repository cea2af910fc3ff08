"""The agent loop. It never runs an attempt twice: the backend's `submit` is idempotent per
(job, attempt), and after a restart the agent re-attaches to what the engine already runs."""

from __future__ import annotations

import codecs
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from computegrid.backends.base import FINISHED, Backend, EngineState, Inventory, RunRequest, SubmitRefused
from computegrid.client import ApiError, Client

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 120.0  # how long a stopped attempt is watched for its last output and usage
NO_LEASE_MS = 9_999_999_999_999  # a lease term that never comes (year 2286): an agent run without `--lease`


@dataclass
class RankLog:
    """How far one rank's output has been read from the engine (bytes) and shipped (characters)."""

    node_id: int  # the node that holds the rank: its output is shipped through it
    read_bytes: int = 0
    shipped_chars: int = 0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))


@dataclass
class Tracked:
    """An attempt this agent is watching, and what it has told the control plane so far.

    Of a gang's agents only the one holding rank 0 `leads`: it reports the attempt's progress (running,
    succeeded, stopped). The others run their ranks and report only what ends the gang (a failed or lost
    rank). So a follower that first sees an attempt already running learns only that the leader's ranks
    run: its own may not have started yet, and it starts them."""

    job_id: int
    attempt: int
    engine_id: str
    node_id: int  # the node of the attempt's first rank here: state is reported through it
    reported: str = ""
    time_limit_s: int | None = None
    timed_out: bool = False
    preempted: bool = False  # the control plane took the capacity back: stop, then report "stopped"
    leads: bool = True
    ended: bool = False  # a follower's ranks ended well: nothing more to do until the gang ends
    logs: dict[int, RankLog] = field(default_factory=dict)  # by rank, the ranks held here


class Agent:
    """Drives one site's engine. A site may have one node (local) or many (a Slurm or Ray cluster):
    the agent registers every node the engine lists and heartbeats for each."""

    def __init__(self, client: Client, backend: Backend, *, site: str, node_name: str | None = None,
                 poll_interval: float = 0.5, telemetry_every: int = 10, lease_s: float | None = None):
        self.client = client
        self.backend = backend
        self.site = site
        self.node_name = node_name
        self.poll_interval = poll_interval
        self.telemetry_every = telemetry_every
        # Fencing: after this long without an answered heartbeat the engine stops our attempts itself (it
        # must be shorter than the control plane's heartbeat timeout, which requeues them). None: no lease.
        self.lease_s = lease_s
        self._lease_lifted = False
        self.inventory: list[Inventory] = []
        self.node_ids: dict[str, int] = {}  # hostname -> node id
        self.hostnames: dict[int, str] = {}  # node id -> hostname
        self.tracked: dict[tuple[int, int], Tracked] = {}
        self.draining: dict[tuple[int, int], tuple[Tracked, float]] = {}  # stopped here, not yet ended: deadline
        self._polls = 0
        self._models: dict[tuple[str, int], str] = {}

    @property
    def node_id(self) -> int | None:
        """The first node's id (the only one on a one-node site)."""
        return next(iter(self.node_ids.values()), None)

    def register(self) -> int:
        nodes = self.backend.inventory()
        if not nodes:
            raise RuntimeError(f"the {self.backend.name} engine lists no nodes")
        self.inventory = nodes
        capabilities = self.backend.capabilities.to_dict()  # the site's engine: placement filters on it
        for inv in nodes:
            name = self.node_name if self.node_name and len(nodes) == 1 else inv.hostname
            node_id = self.client.register_node(
                site=self.site, name=name, cpu_milli=inv.cpu_milli, memory_mb=inv.memory_mb,
                devices=[{"index": d.index, "model": d.model, "memory_gb": d.memory_gb, "source": d.source}
                         for d in inv.devices], capabilities=capabilities)
            self.node_ids[inv.hostname] = node_id
            self.hostnames[node_id] = inv.hostname
            self._models.update({(inv.hostname, d.index): d.model for d in inv.devices})
            log.info("registered node %s (id %s) at site %s: %d CPUs, %d devices", name, node_id, self.site,
                     inv.cpu_milli // 1000, len(inv.devices))
        first = self.node_id
        assert first is not None
        return first

    # -- one poll
    def poll_once(self) -> None:
        assert self.node_ids, "register() first"
        wanted: dict[tuple[int, int], list[dict[str, Any]]] = {}
        asked_ms = time.time_ns() // 1_000_000
        for i, node_id in enumerate(self.node_ids.values()):
            telemetry = self.backend.telemetry() if i == 0 and self._polls % self.telemetry_every == 0 else []
            for a in self.client.heartbeat(node_id, telemetry):
                wanted.setdefault((int(a["job_id"]), int(a["attempt"])), []).append(a)
        self._polls += 1
        self._renew_lease(asked_ms)
        for key, group in wanted.items():
            if key not in self.tracked and self._whole(group):
                self._isolated(key, self._adopt, group)
            tracked = self.tracked.get(key)
            if tracked is not None and not tracked.preempted and group[0]["state"] == "preempting":
                self._isolated(key, self._preempt, tracked)
        for key in list(self.tracked):
            if key not in wanted:
                self._isolated(key, self._stop, self.tracked.pop(key))
        for key, tracked in list(self.tracked.items()):
            if self._isolated(key, self._advance, tracked):
                del self.tracked[key]
        for key, entry in list(self.draining.items()):
            if self._isolated(key, self._drain, entry):
                del self.draining[key]

    def _renew_lease(self, asked_ms: int) -> None:
        """The control plane has heard every node (no later than `asked_ms`): our attempts may run until
        `lease_s` after that; a quarter more for those that ignore SIGTERM."""
        if self.lease_s is not None:
            lease_ms = int(self.lease_s * 1000)
            self.backend.renew_lease(asked_ms + lease_ms, asked_ms + lease_ms + lease_ms // 4)
        elif not self._lease_lifted:
            # No lease: lift one an earlier agent with `--lease` may have left in this work folder, so that its
            # expired term does not stop the jobs this agent runs.
            self.backend.renew_lease(NO_LEASE_MS, NO_LEASE_MS)
            self._lease_lifted = True

    def _isolated(self, key: tuple[int, int], step: Callable[[Any], bool | None], arg: Any) -> bool | None:
        """Run one attempt's step; an engine error is logged and retried next poll, not fatal to the others.
        Control-plane errors (HTTP, API) still propagate: the whole poll is retried."""
        try:
            return step(arg)
        except (httpx.HTTPError, ApiError):
            raise
        except Exception:
            log.exception("job %s attempt %s: the %s engine failed; will retry", *key, self.backend.name)
            return False

    def _whole(self, group: list[dict[str, Any]]) -> bool:
        """Every rank of the attempt that lives on this site's nodes has arrived (a gang starts whole)."""
        ours = {int(n) for n in group[0].get("placement") or [group[0]["node_id"]] if int(n) in self.hostnames}
        return ours <= {int(a["node_id"]) for a in group}

    def _adopt(self, group: list[dict[str, Any]]) -> None:
        first = min(group, key=lambda a: int(a["rank"]))
        job_id, attempt = int(first["job_id"]), int(first["attempt"])
        engine_id = self.backend.engine_id(job_id, attempt)
        limit = first["spec"].get("time_limit")
        tracked = Tracked(job_id, attempt, engine_id, node_id=int(first["node_id"]), reported=first["state"],
                          time_limit_s=int(limit) if limit is not None else None, leads=int(first["rank"]) == 0,
                          logs={int(a["rank"]): RankLog(node_id=int(a["node_id"])) for a in group})
        status = self.backend.status(engine_id)
        if status.state in (EngineState.UNKNOWN, EngineState.QUEUED):
            if first["state"] == "preempting" and status.state == EngineState.UNKNOWN:
                if tracked.leads:  # a follower has nothing here to stop; the leader reports the gang
                    self._report(tracked, "stopped", reason="it was not running here")
                return
            # Only the leader reports an attempt starting or running, so only it can tell that an attempt
            # it started is gone; a follower sees "running" as soon as the leader's ranks run.
            if first["state"] != "placed" and status.state == EngineState.UNKNOWN and tracked.leads:
                self._report(tracked, "failed",
                             reason="the site has no record of this attempt (its engine state was lost)")
                return
            try:
                engine_id = self.backend.submit(RunRequest.from_assignments(group, self._models, self.hostnames))
            except SubmitRefused as refused:
                log.error("capabilities said yes but the engine refused: the %s engine refused job %s (a bug in "
                          "its declared capabilities): %s", self.backend.name, job_id, refused)
                self._report(tracked, "failed", reason=f"the {self.backend.name} engine refused it: {refused}")
                return
            tracked.engine_id = engine_id
            log.info("started job %s attempt %s as %s", job_id, attempt, engine_id)
        else:
            log.info("re-attached to job %s attempt %s (%s, %s)", job_id, attempt, engine_id, status.state)
        self.tracked[(job_id, attempt)] = tracked

    def _preempt(self, t: Tracked) -> None:
        """Signal the attempt to stop (SIGTERM; the engine kills it after its grace period)."""
        log.info("job %s attempt %s is preempted: stopping it", t.job_id, t.attempt)
        t.preempted = True
        self.backend.cancel(t.engine_id)

    def _advance(self, t: Tracked) -> bool:
        """Ship logs and state for one attempt; True when it is finished and reported."""
        if t.ended:
            return False
        status = self.backend.status(t.engine_id)
        self._ship_logs(t, final=status.state in FINISHED)
        if (t.leads and status.state != EngineState.QUEUED and status.started_ms
                and t.reported in ("placed", "starting")):
            self._report(t, "running", at_ms=status.started_ms)
        if status.state in FINISHED:
            self._ship_usage(t)
            state = "succeeded" if status.state == EngineState.SUCCEEDED else "failed"
            if t.preempted and state == "failed":
                state = "stopped"
            if status.lost and not t.preempted:
                state = "lost"  # the engine stopped it (its lease ran out): not the job's failure
            reason = f"stopped after its time limit of {t.time_limit_s} s" if t.timed_out else status.reason
            if not t.leads and state in ("succeeded", "stopped"):
                t.ended = True  # the leader's ranks decide how the gang ends; wait for the assignment to go
                return False
            self._report(t, state, exit_code=status.exit_code, reason=reason, at_ms=status.ended_ms)
            return True
        if (status.state == EngineState.RUNNING and t.time_limit_s and status.started_ms and not t.timed_out
                and time.time_ns() // 1_000_000 - status.started_ms > t.time_limit_s * 1000):
            log.info("job %s attempt %s ran past its time limit (%s s): stopping it", t.job_id, t.attempt,
                     t.time_limit_s)
            t.timed_out = True
            self.backend.cancel(t.engine_id)
        return False

    def _stop(self, t: Tracked) -> None:
        """The control plane no longer wants this attempt (cancelled, or its preemption notice ran out):
        signal it, and keep watching until it has ended, to ship its last output and what it ran."""
        log.info("stopping job %s attempt %s: no longer assigned here", t.job_id, t.attempt)
        self.backend.cancel(t.engine_id)
        self.draining[(t.job_id, t.attempt)] = (t, time.monotonic() + DRAIN_TIMEOUT_S)

    def _drain(self, entry: tuple[Tracked, float]) -> bool:
        """Ship a stopping attempt's output; once it has ended (or we stop waiting), its usage. True when done."""
        t, deadline = entry
        ended = self.backend.status(t.engine_id).state in FINISHED
        if not ended and time.monotonic() < deadline:
            self._ship_logs(t, final=False)
            return False
        try:
            self._ship_logs(t, final=ended)
            self._ship_usage(t)
        except ApiError as exc:
            log.warning("could not report the end of job %s: %s", t.job_id, exc.detail)
        return True

    def _report(self, t: Tracked, state: str, **kwargs: Any) -> None:
        try:
            self.client.report_state(t.job_id, node_id=t.node_id, attempt=t.attempt, state=state, **kwargs)
            t.reported = state
        except ApiError as exc:
            if exc.status in (404, 409):  # superseded attempt or ended job: nothing more to say
                t.reported = state
                log.info("job %s attempt %s: %s", t.job_id, t.attempt, exc.detail)
            else:
                raise

    def _ship_logs(self, t: Tracked, *, final: bool) -> None:
        """Ship each rank's new output under its rank. The first rank here is read without naming it, so an
        engine that cannot tell ranks apart (`rank_logs` False) ships all of its output as that rank's."""
        first = min(t.logs, default=None)
        for rank, rank_log in t.logs.items():
            if rank != first and not self.backend.rank_logs:
                continue
            while True:
                if rank == first:
                    read = self.backend.logs(t.engine_id, rank_log.read_bytes)
                else:
                    read = self.backend.logs(t.engine_id, rank_log.read_bytes, rank=rank)
                text = rank_log.decoder.decode(read.data, final=final and not read.data)
                rank_log.read_bytes = read.next_offset
                if text:
                    rank_log.shipped_chars = self.client.append_log(
                        t.job_id, node_id=rank_log.node_id, attempt=t.attempt, rank=rank,
                        offset=rank_log.shipped_chars, data=text)
                if not read.data:
                    break

    def _ship_usage(self, t: Tracked) -> None:
        """Report usage per node: a slice names its node by hostname ("" = the attempt's first node)."""
        by_node: dict[int, list[dict[str, Any]]] = {}
        for piece in self.backend.usage(t.engine_id):
            node_id = self.node_ids.get(piece.hostname, t.node_id) if piece.hostname else t.node_id
            interval = {k: v for k, v in vars(piece).items() if k != "hostname"}
            by_node.setdefault(node_id, []).append(interval)
        for node_id, intervals in by_node.items():
            self.client.report_usage(t.job_id, node_id=node_id, attempt=t.attempt, intervals=intervals)

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
        while not stop.is_set() and not self.node_ids:
            try:
                self.register()
            except (httpx.HTTPError, ApiError) as exc:
                log.warning("cannot register yet: %s", exc)
                stop.wait(1.0)
            except Exception as exc:  # the engine is not answering yet: keep trying, the site may come up
                log.warning("cannot read the %s engine's inventory yet: %s", self.backend.name, exc)
                stop.wait(5.0)
        first = True
        while not stop.is_set():
            try:
                self.poll_once()
                if first:
                    self.reap_orphans()
                    first = False
            except (httpx.HTTPError, ApiError) as exc:
                log.warning("poll failed, will retry: %s", exc)
            except Exception:  # an engine error (sbatch, the Ray or Kubernetes API) must not end the agent
                log.exception("the %s engine failed during a poll; will retry", self.backend.name)
            stop.wait(self.poll_interval)

    def shutdown(self, reason: str = "the agent stopped") -> None:
        """Stop every attempt here and tell the control plane they are lost (so they can be requeued)."""
        for t in list(self.tracked.values()):
            try:
                self.backend.cancel(t.engine_id)
            except Exception as exc:
                log.warning("could not stop %s: %s", t.engine_id, exc)
        for t in list(self.tracked.values()):
            try:
                self._ship_logs(t, final=False)
                self._ship_usage(t)
                self._report(t, "lost", reason=reason)
            except Exception as exc:  # report what we can for every attempt, whatever fails for one
                log.warning("could not report job %s as lost: %s", t.job_id, exc)
        self.tracked.clear()
