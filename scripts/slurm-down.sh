#!/usr/bin/env bash
# Stop the one-node Slurm site that scripts/slurm-up.sh started, by the PIDs it recorded.
#
#   scripts/slurm-down.sh [STATE_DIR]      (default /tmp/computegrid-slurm)
#
# Stops slurmd, slurmctld, slurmdbd and munged in that order and waits for each to exit. Leaves
# MariaDB running, and keeps STATE_DIR (its job state and accounting survive a restart).
set -euo pipefail

STATE="${1:-/tmp/computegrid-slurm}"
say() { printf '[slurm-down] %s\n' "$*"; }

if [[ ! -d "$STATE/run" ]]; then
    say "nothing to stop: $STATE/run does not exist"
    exit 0
fi

for daemon in slurmd slurmctld slurmdbd munged; do
    pidfile="$STATE/run/$daemon.pid"
    if [[ ! -s "$pidfile" ]]; then
        continue
    fi
    pid="$(cat "$pidfile")"
    # Only a process that is this daemon (a recycled PID is left alone).
    if ! kill -0 "$pid" 2>/dev/null || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$daemon"; then
        rm -f "$pidfile"
        continue
    fi
    say "stopping $daemon (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 80); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$daemon did not stop in 20s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
done
say "stopped (state kept in $STATE)"
