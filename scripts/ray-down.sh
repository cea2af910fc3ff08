#!/usr/bin/env bash
# Stop the Ray cluster scripts/ray-up.sh started: kill each node's whole process tree by PID.
#
# Each node runs under `ray start --block` started with setsid, so its daemons (GCS, raylet, dashboard,
# agents, workers) are its descendants and share its session. Ray's daemons ignore SIGTERM, so: SIGTERM,
# a short wait, then SIGSTOP (nothing forks or re-parents any more), gather again, SIGKILL.
# Job drivers start their own sessions, so descendants are gathered by parent PID, not only by session.
# Idempotent: with nothing running it only removes stale PID files. Env: CG_RAY_STATE, CG_RAY_DOWN_WAIT (3 s),
# CG_RAY_KEEP_LOGS=1 (keep $CG_RAY_STATE/tmp, Ray's session logs).
set -uo pipefail

STATE="${CG_RAY_STATE:-/tmp/cg-ray}"
WAIT_S="${CG_RAY_DOWN_WAIT:-3}"

roots=()
for name in worker1 head; do
    file="$STATE/$name.pid"
    [ -s "$file" ] || continue
    pid="$(cat "$file")"
    # Only a PID that is still one of our `ray start`s (PIDs get recycled).
    if (tr '\0' ' ' <"/proc/$pid/cmdline") 2>/dev/null | grep -q -- "--temp-dir=$STATE/tmp"; then
        roots+=("$pid")
    fi
done

# Every process that descends from a root or shares a root's session (one ps snapshot).
gather() {
    [ "${#roots[@]}" -gt 0 ] || return 0
    ps -e -o pid=,ppid=,sid= | awk -v roots="${roots[*]}" '
        BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) { keep[r[i]] = 1; sess[r[i]] = 1 } }
        { pid[NR] = $1; ppid[NR] = $2; sid[NR] = $3 }
        END {
            for (i = 1; i <= NR; i++) if (sid[i] in sess) keep[pid[i]] = 1
            do { changed = 0
                 for (i = 1; i <= NR; i++) if ((ppid[i] in keep) && !(pid[i] in keep)) { keep[pid[i]] = 1; changed = 1 }
            } while (changed)
            for (p in keep) print p
        }'
}

if [ "${#roots[@]}" -gt 0 ]; then
    mapfile -t procs < <(gather)
    kill -TERM "${procs[@]}" 2>/dev/null
    deadline=$((SECONDS + WAIT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        left=0
        for p in "${procs[@]}"; do kill -0 "$p" 2>/dev/null && left=1 && break; done
        [ "$left" = 0 ] && break
        sleep 0.2
    done
    mapfile -t more < <(gather)
    procs+=("${more[@]}")
    kill -STOP "${procs[@]}" 2>/dev/null
    mapfile -t more < <(gather)
    procs+=("${more[@]}")
    kill -KILL "${procs[@]}" 2>/dev/null
    kill -CONT "${procs[@]}" 2>/dev/null
    echo "ray-down: stopped ${#roots[@]} node(s), ${#procs[@]} process(es)"
else
    echo "ray-down: nothing running"
fi
rm -f "$STATE/head.pid" "$STATE/worker1.pid"
# Ray's temp dir (sockets, session logs); CG_RAY_KEEP_LOGS=1 keeps it for a post-mortem (ray-up.sh clears it).
[ "${CG_RAY_KEEP_LOGS:-0}" = 1 ] || rm -rf "$STATE/tmp"
exit 0
