"""The driver of one computegrid attempt on Ray: place every rank, run its command, stream its output.

The Ray backend (ray.py) does not need computegrid on the cluster: it ships this file's source in the
job's runtime env (COMPUTEGRID_RAY_LAUNCHER) and the job's entrypoint execs it with the cluster's Python,
so it imports only the standard library and Ray. The attempt itself is JSON in COMPUTEGRID_RAY_SPEC:

    {"engine_id": "cg-12-1", "run": "...", "workdir": "/path" | null, "env": {...},
     "strategy": "STRICT_SPREAD" | "PACK",
     "ranks": [{"rank": 0, "host": "head", "devices": [0, 1],
                "resources": {"CPU": 0.5, "memory": 268435456, "GPU_A100": 2, "cg_node_head": 0.001},
                "label_selector": {}}]}

One placement group holds one bundle per rank (STRICT_SPREAD for a gang: every rank on its own node; each
bundle also asks for a sliver of its node's `cg_node_<host>` resource, or a node-id label selector, so it
lands on the node the control plane chose). Once it is placed the driver prints `computegrid: placed at <epoch
ms>`, then starts one actor per bundle. Each actor prints the resources Ray granted it (`computegrid: rank R
on HOST (ray node ...): ray resources {...}`) and runs `bash -c RUN` with the rank's environment
(COMPUTEGRID_NODE_RANK, CUDA_VISIBLE_DEVICES = the part's device indices, ...) in the workdir (without one, a
fresh $TMPDIR/computegrid-<engine id>-rank<R>-* on the node, removed when the command ends), streaming the
output back; with several ranks each line is prefixed `[rank R] `. When the command ends, whatever it left
running in its process group is killed (as Slurm ends a step). The driver exits with the command's exit code;
in a gang, the first rank that fails stops the others and its code is the job's. SIGTERM (what `ray job stop`
sends) stops every rank's command (SIGTERM, then SIGKILL) and exits 143.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

SPEC_ENV = "COMPUTEGRID_RAY_SPEC"
SOURCE_ENV = "COMPUTEGRID_RAY_LAUNCHER"
PLACED = "computegrid: placed at "
RESOURCES = ": ray resources "
STOP_GRACE_S = 1.5  # the Jobs API SIGKILLs the driver 3 s after SIGTERM
CHUNK = 64 * 1024
FLUSH_S = 0.2
LINGER_S = 0.5  # how long output is still read after the command ended, when something else holds it open


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _watch(pid: int, pgid: int) -> int | None:
    """Start a detached watcher that SIGKILLs process group `pgid` once process `pid` is gone; its PID."""
    loop = f"while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 -{pgid} 2>/dev/null"
    started = subprocess.run(["sh", "-c", f"({loop}) </dev/null >/dev/null 2>&1 & echo $!"], capture_output=True,
                             text=True, start_new_session=True, check=False)
    text = started.stdout.strip()
    return int(text) if text.isdigit() else None


class RankRunner:
    """One rank, as a Ray actor holding its bundle. `run` streams bytes, then yields the exit code (an int)."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None

    def run(self, spec: dict[str, Any], index: int) -> Any:
        import ray

        part = spec["ranks"][index]
        context: Any = ray.get_runtime_context()
        granted = {k: round(v, 4) for k, v in sorted(context.get_assigned_resources().items())}
        yield (f"computegrid: rank {part['rank']} on {part['host']} (ray node {context.get_node_id()[:12]})"
               f"{RESOURCES}{json.dumps(granted)}\n").encode()
        workdir = spec.get("workdir")
        scratch = not workdir
        if not workdir:  # a scratch directory of its own on the node, removed when the command ends
            workdir = tempfile.mkdtemp(prefix=f"computegrid-{spec['engine_id']}-rank{part['rank']}-")
        if not os.path.isdir(workdir):
            yield f"computegrid: workdir {workdir} does not exist on {part['host']}\n".encode()
            yield 127
            return
        env = {k: v for k, v in os.environ.items() if k not in (SPEC_ENV, SOURCE_ENV)}
        env.update(spec["env"])
        env["COMPUTEGRID_NODE_RANK"] = str(part["rank"])
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in part["devices"])
        # The exit code comes back through a pipe, not wait(): a raylet may have its workers ignore SIGCHLD
        # (then the kernel reaps the child and wait() says 0). The command runs in its own process group, so a
        # stop reaches everything it started. If this actor's process dies without stopping it (its worker is
        # SIGKILLed when the driver goes, and the raylet then kills the worker's direct children, which leaves
        # their children behind), a watcher that is nobody's child here kills the whole group.
        code_r, code_w = os.pipe()
        wrapper = f'bash -c "$1" "$2" {code_w}>&-; code=$?; echo "$code" >&{code_w}; exit "$code"'
        child = subprocess.Popen(["bash", "-c", wrapper, "computegrid", spec["run"], f"rank-{part['rank']}"],
                                 cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(code_w,))
        os.close(code_w)
        self.child = child
        watcher = _watch(os.getpid(), child.pid)
        assert child.stdout is not None
        out = child.stdout.fileno()
        open_fds, reported, done_at = [out, code_r], b"", None
        pending, last = b"", time.monotonic()
        try:
            # Until the output closes, or shortly after the command ended if something it left in the
            # background still holds the output open.
            while out in open_fds and (done_at is None or time.monotonic() - done_at < LINGER_S):
                ready, _, _ = select.select(open_fds, [], [], FLUSH_S)
                if code_r in ready:
                    got = os.read(code_r, 64)
                    reported += got
                    if not got:
                        open_fds.remove(code_r)
                        done_at = time.monotonic()
                if out in ready:
                    data = os.read(out, CHUNK)
                    if not data:
                        open_fds.remove(out)
                    pending += data
                if pending and (len(pending) >= CHUNK or time.monotonic() - last >= FLUSH_S or out not in open_fds):
                    yield pending
                    pending, last = b"", time.monotonic()
            if pending:
                yield pending
        finally:
            _kill_group(child.pid, signal.SIGKILL)  # what the command left behind ends with the rank
            os.close(code_r)
            waited = child.wait()
            if watcher:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(watcher, signal.SIGKILL)
            if scratch:
                shutil.rmtree(workdir, ignore_errors=True)
        text = reported.strip()
        if text.isdigit():
            yield int(text)
        else:  # the wrapper itself was killed before it could tell
            yield 128 - waited if waited < 0 else (waited or 128 + signal.SIGKILL)

    def stop(self, grace_s: float) -> None:
        """SIGTERM the command's process group; SIGKILL what is left after `grace_s`."""
        child = self.child
        if child is None or child.poll() is not None:
            return
        _kill_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        _kill_group(child.pid, signal.SIGKILL)


class _Output:
    """Writes the ranks' output to stdout, whole lines prefixed with the rank when there are several."""

    def __init__(self, prefixed: bool) -> None:
        self.prefixed = prefixed
        self.lock = threading.Lock()
        self.partial: dict[int, bytes] = {}

    def write(self, rank: int, data: bytes, final: bool = False) -> None:
        with self.lock:
            if not self.prefixed:
                sys.stdout.buffer.write(data)
            else:
                text = self.partial.pop(rank, b"") + data
                lines = text.split(b"\n")
                rest = lines.pop()
                if final and rest:
                    lines.append(rest)
                elif rest:
                    self.partial[rank] = rest
                for line in lines:
                    sys.stdout.buffer.write(f"[rank {rank}] ".encode() + line + b"\n")
            sys.stdout.buffer.flush()


def say(message: str) -> None:
    sys.stdout.write(f"computegrid: {message}\n")
    sys.stdout.flush()


def main() -> int:
    spec = json.loads(os.environ[SPEC_ENV])
    import logging

    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(address="auto", log_to_driver=False, logging_level=logging.WARNING)
    stopping = threading.Event()  # handlers after ray.init, which installs its own
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    ranks = spec["ranks"]
    bundles = [part["resources"] for part in ranks]
    selectors = [part.get("label_selector") or {} for part in ranks]
    options: dict[str, Any] = {"strategy": spec.get("strategy", "PACK"), "name": spec["engine_id"]}
    if any(selectors):
        options["bundle_label_selector"] = selectors
    group = placement_group(bundles, **options)
    waited = 0.0
    while not stopping.is_set():
        ready, _ = ray.wait([group.ready()], timeout=1.0)
        if ready:
            break
        waited += 1.0
        if waited in (5.0, 60.0) or waited % 600 == 0:
            say(f"still waiting for Ray to place {json.dumps(bundles)} ({spec.get('strategy')})")
    if stopping.is_set():
        say("stopped before it was placed")
        return 143
    sys.stdout.write(f"{PLACED}{_now_ms()}\n")
    sys.stdout.flush()

    actor_class: Any = ray.remote(RankRunner)
    actors: list[Any] = []
    streams: list[Any] = []
    for index, part in enumerate(ranks):
        resources = dict(part["resources"])
        cpus, memory = resources.pop("CPU", 0), resources.pop("memory", None)
        strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)
        actor = actor_class.options(num_cpus=cpus, memory=memory, resources=resources, max_concurrency=2,
                                    scheduling_strategy=strategy).remote()
        actors.append(actor)
        streams.append(actor.run.options(num_returns="streaming").remote(spec, index))

    output = _Output(prefixed=len(ranks) > 1)
    codes: dict[int, int] = {}
    failed = threading.Event()

    def follow(index: int) -> None:
        rank = int(ranks[index]["rank"])
        try:
            for ref in streams[index]:
                item = ray.get(ref)
                if isinstance(item, int):
                    codes[index] = item
                else:
                    output.write(rank, item)
        except Exception as error:  # the actor died (its node went away, it was killed, ...)
            if not stopping.is_set():
                output.write(rank, f"computegrid: rank {rank} was lost: {error}\n".encode())
            codes.setdefault(index, 1)
        output.write(rank, b"", final=True)
        if codes.get(index, 1) != 0:
            failed.set()

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(len(ranks))]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) and not stopping.is_set() and not failed.is_set():
        time.sleep(0.1)

    if stopping.is_set() or failed.is_set():
        first_failure = next((codes[i] for i in sorted(codes) if codes[i] != 0), None)
        if stopping.is_set():
            say("stopping every rank")
        elif len(ranks) > 1:
            say(f"a rank failed with exit code {first_failure}; stopping the others")
        try:
            ray.get([a.stop.remote(STOP_GRACE_S) for a in actors], timeout=STOP_GRACE_S + 0.5)
        except Exception as error:
            say(f"could not stop every rank cleanly: {error!r}")
        for thread in threads:
            thread.join(timeout=0.5)
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if stopping.is_set():
            return 143
        return first_failure or 1
    for thread in threads:
        thread.join()
    return next((codes[i] for i in sorted(codes) if codes[i] != 0), 0) if len(codes) == len(ranks) else 1


if __name__ == "__main__":
    sys.exit(main())
