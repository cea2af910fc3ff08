"""Runs one job attempt for the local backend, detached from the agent.

`python -m computegrid.backends.local_runner DIR` is started in its own session, so
a killed agent leaves it running. It records everything in DIR:
`started/` (made atomically: a second runner exits at once, so nothing runs twice),
`pid`, `start_ms`, `output.log`, and at the end `end_ms` and `exit`.
SIGTERM is passed to the job's process group; after the grace period, SIGKILL.

Fencing: the runner watches its agent's lease file (`lease` in run.json; `<term_ms> <kill_ms>`, epoch ms,
rewritten by the agent after every heartbeat the control plane answered). Once `term_ms` has passed the
agent has been silent too long and the control plane is about to requeue the attempt elsewhere, so the
runner stops it: SIGTERM to the process group, SIGKILL at `kill_ms`, and `stopped` records
"lease expired". No lease file: no lease (a runner started without an agent).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_S = 10.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _lease(path: str | None) -> tuple[int, int] | None:
    """(term_ms, kill_ms) from the agent's lease file; None when there is none (or it is being rewritten)."""
    if not path:
        return None
    try:
        term, kill = Path(path).read_text().split()
        return int(term), int(kill)
    except (FileNotFoundError, ValueError):
        return None


def main(directory: str) -> int:
    root = Path(directory)
    try:
        (root / "started").mkdir()
    except FileExistsError:
        return 0  # another runner owns this attempt
    spec = json.loads((root / "run.json").read_text())
    _write(root / "pid", str(os.getpid()))
    _write(root / "start_ms", str(_now_ms()))
    env = dict(os.environ)
    env.update(spec["env"])
    with open(root / "output.log", "ab", buffering=0) as out:
        child = subprocess.Popen(["/bin/sh", str(root / "run.sh")], cwd=spec["cwd"], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline: list[float] = []

        def forward(signum: int, _frame: object) -> None:
            (root / "cancelled").touch()
            deadline.append(time.monotonic() + GRACE_S)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        while True:
            try:
                code = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                lease = _lease(spec.get("lease"))
                if not deadline and lease is not None and _now_ms() >= lease[0]:
                    _write(root / "stopped", "lease expired")
                    out.write(b"computegrid: stopped: the agent's lease expired (it has not reached the control "
                              b"plane in time; the attempt is requeued)\n")
                    deadline.append(time.monotonic() + max(0, lease[1] - _now_ms()) / 1000)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGTERM)
                if deadline and time.monotonic() > deadline[0]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)
        if deadline:  # it was stopped: nothing it started may outlive it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
    _write(root / "end_ms", str(_now_ms()))
    _write(root / "exit", str(code))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
