"""Where the server's time goes, from a py-spy raw profile of a submission run.

    .venv/bin/python benchmarks/api_submit.py --db postgres --py-spy /tmp/submit.txt   # records with --gil
    .venv/bin/python benchmarks/profile_breakdown.py /tmp/submit.txt

Each sample is put in one bucket: samples from the scheduler thread go to "scheduler"; the others go to the
first rule matched walking from the innermost frame outwards, so a bucket holds the time spent in that layer
and below it, up to the next named layer. With `--gil` (api_submit's default) a sample is a moment when that
thread held the GIL, so the shares are shares of the process's Python CPU time.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (substring of a frame "function (file:line)", bucket); checked per frame from the innermost outwards
RULES: list[tuple[str, str]] = [
    ("do_ping", "DB: pool pre-ping (SELECT 1 per checkout)"),
    ("_ConnectionFairy._checkout", "DB: pool checkout"),
    ("Pool.connect", "DB: pool checkout"),
    ("raw_connection", "DB: pool checkout"),
    ("_ConnectionFairy._checkin", "DB: pool checkin / reset"),
    ("_finalize_fairy", "DB: pool checkin / reset"),
    ("do_commit", "DB: COMMIT"),
    ("SessionTransaction.commit", "DB: COMMIT"),
    ("Session._flush", "DB: ORM flush (INSERT job / INSERT event)"),
    ("job_view", "DB: job_view (SELECT tenant for the answer)"),
    ("principal_for", "auth (key lookup, cached 5 s)"),
    ("validate_spec", "job spec validation"),
    ("check_fits_somewhere", "job spec validation"),
    ("pool_shape", "pool shape refresh (every 2 s)"),
    ("Session.close", "DB: session close"),
    ("Session.__exit__", "DB: session close"),
    ("store_batch", "DB: group-committed insert (submission writer)"),
    ("submit_job (", "submit route, other"),
    ("serialize_response", "FastAPI response serialization"),
    ("jsonable_encoder", "FastAPI response serialization"),
    ("JSONResponse", "FastAPI response serialization"),
    ("parse_body", "request body parsing"),
    ("solve_dependencies", "FastAPI dependency resolution"),
    ("run_in_threadpool", "threadpool hand-off"),
    ("run_sync_in_worker_thread", "threadpool hand-off"),
    ("WorkerThread", "threadpool hand-off"),
    ("to_thread", "threadpool hand-off"),
    ("RequestCounter", "middleware (computegrid)"),
    ("BodySizeLimit", "middleware (computegrid)"),
    ("_asgi.py", "middleware (FastAPI/Starlette/uvicorn)"),
    ("_body_limit", "middleware (FastAPI/Starlette/uvicorn)"),
    ("middleware", "middleware (FastAPI/Starlette/uvicorn)"),
    ("_exception_handler", "middleware (FastAPI/Starlette/uvicorn)"),
    ("routing.py", "routing / endpoint call"),
    ("httptools_impl", "uvicorn HTTP protocol"),
    ("h11_impl", "uvicorn HTTP protocol"),
]


def bucket(frames: list[str]) -> str:
    if any("Scheduler." in f for f in frames):
        return "scheduler thread (tick: load pool + pending jobs)"
    for frame in reversed(frames):
        for needle, name in RULES:
            if needle in frame:
                return name
    return "event loop / other"


def main(path: str) -> None:
    counts: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")[1:]
        counts[bucket(frames)] += int(n)
        total += int(n)
    print(f"{total} samples from {path}")
    for name, samples in counts.most_common():
        print(f"  {100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
