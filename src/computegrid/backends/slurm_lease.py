"""Fencing for the Slurm backend: the lease watchdog that each batch job runs beside its task.

The agent rewrites `WORK/lease` (`<term_ms> <kill_ms>`, epoch ms; see `SlurmBackend.renew_lease`) after every
heartbeat round the control plane answered. WORK is on storage the compute nodes share, so the batch script
(on the job's first node) reads it. Before it starts the task, the batch script runs `watchdog.sh check`: a
lease already past its term time (the job waited in Slurm's queue while its agent was silent) stops the job
before anything runs. Then `watchdog.sh watch` runs in the background and checks the lease every second.
Once the term time has passed it writes `stopped` ("lease expired") in the attempt's directory, says so in
the job's output, and ends the job: `scancel --full --signal=TERM` (every process of every step on every
node, the batch script included), then at the kill time `scancel --full --signal=KILL` (which Slurm records
as CANCELLED). Without SLURM_JOB_ID, or when scancel fails, it signals the batch script's process group
instead (Slurm makes the batch script a process group leader; srun passes the signal on to the ranks).
No lease file (an agent run without `--lease`): the watchdog does nothing. A job that ends on its own
stops the watchdog on the way out (the batch script's EXIT trap), so nothing waits for it.

Plain POSIX sh and date(1): no Python is needed on the compute nodes. The times compared are the agent's
clock and the node's, so the site's clocks must agree (NTP) to well under the lease.
"""

from __future__ import annotations

import shlex
from pathlib import Path

POLL_S = 1

_WATCHDOG = r"""#!/bin/sh
# The lease watchdog of computegrid job {job} attempt {attempt} (written by the Slurm backend; see
# backends/slurm_lease.py). `check`: exit 1 (and record the stop) when the lease has already expired.
# `watch`: once the lease has expired, end the job (SIGTERM now, SIGKILL at the lease's kill time).
lease={lease}
stopped={stopped}
trap '' TERM  # scancel --full --signal=TERM reaches this process too: it must live on to send the kill
trap 'kill -KILL "$cg_nap" 2>/dev/null; exit 0' USR1  # the batch script ended: stop watching

now_ms() {{
    cg_now=$(date +%s%3N 2>/dev/null)
    case "$cg_now" in ''|*[!0-9]*) cg_now=$(( $(date +%s) * 1000 )) ;; esac
    echo "$cg_now"
}}

read_lease() {{  # sets term and kill_at; false when there is no (readable) lease
    term=; kill_at=
    [ -r "$lease" ] || return 1
    read -r term kill_at < "$lease" || return 1
    case "$term$kill_at" in ''|*[!0-9]*) return 1 ;; esac
    [ -n "$term" ] && [ -n "$kill_at" ]
}}

expired() {{ read_lease && [ "$(now_ms)" -ge "$term" ]; }}

record_stop() {{
    printf 'lease expired\n' > "$stopped.tmp" && mv -f "$stopped.tmp" "$stopped"
    echo "computegrid: stopped: the agent's lease expired (it has not reached the control plane in time;" \
         "the attempt is requeued)" >&2
}}

signal_job() {{  # $1: TERM or KILL
    if [ -n "${{SLURM_JOB_ID:-}}" ] && scancel --full --signal="$1" "$SLURM_JOB_ID"; then
        return 0
    fi
    kill -s "$1" 0
}}

nap() {{ sleep {poll} & cg_nap=$!; wait "$cg_nap"; }}

case "${{1:-watch}}" in
    check)
        if expired; then record_stop; exit 1; fi
        exit 0 ;;
esac
until expired; do nap; done
record_stop
signal_job TERM
while [ "$(now_ms)" -lt "$kill_at" ]; do nap; done
signal_job KILL
"""


def watchdog_script(*, job_id: int, attempt: int, lease: Path, stopped: Path) -> str:
    """The watchdog (sh) for one attempt; `lease` is the agent's lease file, `stopped` the attempt's marker."""
    return _WATCHDOG.format(job=job_id, attempt=attempt, lease=shlex.quote(str(lease)),
                            stopped=shlex.quote(str(stopped)), poll=POLL_S)


def batch_script(*, job_id: int, attempt: int, launch: str, watchdog: Path) -> str:
    """The batch script sbatch runs: the lease check, then `launch` (a command line) with the watchdog beside
    it. It waits for the task through the SIGTERM that a cancel or the watchdog sends to every process of the
    job (the task ends; this shell goes on waiting), and exits with the task's exit code."""
    dog = shlex.quote(str(watchdog))
    return f"""#!/bin/bash
# computegrid job {job_id} attempt {attempt}: Slurm runs this once (--no-requeue).
/bin/sh {dog} check || exit 143
trap ':' TERM
{launch} &
cg_task=$!
/bin/sh {dog} watch &
cg_watchdog=$!
trap 'kill -USR1 "$cg_watchdog" 2>/dev/null' EXIT
while :; do
    wait "$cg_task"; cg_code=$?
    kill -0 "$cg_task" 2>/dev/null || break
done
exit "$cg_code"
"""
