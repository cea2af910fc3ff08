#!/usr/bin/env bash
# Start a two-node Ray cluster on this machine (loopback only) for the contract suite and local development.
#
#   head     GCS on 127.0.0.1:6390 (not 6379: Redis lives there), dashboard + Jobs API on 127.0.0.1:8265,
#            2 CPUs, 2 fake A100s as the custom resource GPU_A100, and cg_node_head (the node's stable name)
#   worker1  a second raylet on this machine joined to the head: 2 CPUs, 2 GPU_A100, cg_node_worker1
#
# Idempotent: when both nodes are up and the Jobs API answers it does nothing. Each node runs under
# `ray start --block` in its own session; the PIDs go to $CG_RAY_STATE/{head,worker1}.pid and ray-down.sh
# kills the whole process trees by PID (Ray's daemons ignore SIGTERM). Uses the repo's venv `ray` unless
# RAY_BIN is set; job entrypoints run `python` from the same directory (it is put first on PATH).
#
# Environment: RAY_BIN, CG_RAY_STATE (/tmp/cg-ray), CG_RAY_GCS_PORT (6390), CG_RAY_DASHBOARD_PORT (8265),
#              CG_RAY_OBJECT_STORE_BYTES (100 MB per node), CG_RAY_MEMORY_BYTES (Ray's `memory` resource per
#              node, 2 GiB), CG_RAY_TIMEOUT (120 s to come up), CG_RAY_SETTLE (12 s: how long both nodes must
#              stay up after they first answer).
# Fixed ports sit below Linux's ephemeral range (32768-60999): a port in that range can be taken at any
# moment by an outgoing connection's local end, and a Ray agent that cannot bind exits, taking its raylet
# with it (seen: runtime_env_agent on 52404 exited at start, the head went down 10 s later).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAY_BIN="${RAY_BIN:-$REPO/.venv/bin/ray}"
STATE="${CG_RAY_STATE:-/tmp/cg-ray}"
GCS_PORT="${CG_RAY_GCS_PORT:-6390}"
DASH_PORT="${CG_RAY_DASHBOARD_PORT:-8265}"
OBJ_BYTES="${CG_RAY_OBJECT_STORE_BYTES:-100000000}"
MEM_BYTES="${CG_RAY_MEMORY_BYTES:-2147483648}"
TIMEOUT="${CG_RAY_TIMEOUT:-120}"
SETTLE="${CG_RAY_SETTLE:-12}"
API="http://127.0.0.1:$DASH_PORT"

[ -x "$RAY_BIN" ] || { echo "ray-up: no ray at $RAY_BIN (run make install, or set RAY_BIN)" >&2; exit 1; }
# The Python that runs `ray` (from its #! line), for the worker-node shim and the readiness probe.
RAY_PY="$(head -n 1 "$RAY_BIN" | sed -n 's/^#! *//p')"
[ -x "$RAY_PY" ] || RAY_PY="$(dirname "$RAY_BIN")/python"

RAY_DIR="$(dirname "$RAY_BIN")"
export PATH="$RAY_DIR:$PATH"
export RAY_USAGE_STATS_ENABLED=0
unset RAY_ADDRESS RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
# Not RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper: it makes workers ignore SIGCHLD, and the
# Jobs API then reports every entrypoint's exit code as 0. The launcher cleans up its own children.
unset RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper

alive() {  # is node $1's `ray start` still running (not a zombie, not a recycled PID)?
    local pid
    pid="$(cat "$STATE/$1.pid" 2>/dev/null)" || return 1
    [ -n "$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] &&
        (tr '\0' ' ' <"/proc/$pid/cmdline") 2>/dev/null | grep -q -- "--temp-dir=$STATE/tmp"
}

alive_nodes() {  # the number of alive nodes, or nothing while the state API or the Jobs API does not answer
    "$RAY_PY" - "$API" <<'EOF' 2>/dev/null
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/api/v0/nodes?limit=100", timeout=3) as r:
        nodes = json.load(r)["data"]["result"]["result"]
    with urllib.request.urlopen(sys.argv[1] + "/api/jobs/", timeout=3) as r:
        r.read()
except Exception:
    sys.exit(0)
print(sum(n.get("state") == "ALIVE" for n in nodes))
EOF
}

wait_gcs() {  # wait until the head's GCS takes connections (all a second node needs to join)
    local deadline=$((SECONDS + TIMEOUT))
    until (exec 3<>"/dev/tcp/127.0.0.1/$GCS_PORT") 2>/dev/null; do
        if ! alive head || [ "$SECONDS" -ge "$deadline" ]; then
            echo "ray-up: the head's GCS never listened on 127.0.0.1:$GCS_PORT; the end of $STATE/head.log:" >&2
            return 1
        fi
        sleep 0.2
    done
}

wait_nodes() {  # wait until the APIs answer and $1 nodes are alive, while node $2's `ray start` runs
    local want="$1" node="$2" deadline=$((SECONDS + TIMEOUT)) n
    while :; do
        n="$(alive_nodes)"
        [ "${n:-0}" -ge "$want" ] && return 0
        if ! alive "$node"; then
            echo "ray-up: \`ray start\` for $node exited; the end of $STATE/$node.log:" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "ray-up: no $want alive node(s) after ${TIMEOUT}s (have ${n:-none}); the end of $STATE/$node.log:" >&2
            return 1
        fi
        sleep 0.5
    done
}

if alive head && alive worker1 && [ "$(alive_nodes)" -ge 2 ] 2>/dev/null; then
    echo "ray-up: already running (Jobs API $API, GCS 127.0.0.1:$GCS_PORT)"
    exit 0
fi
if [ -e "$STATE/head.pid" ] || [ -e "$STATE/worker1.pid" ]; then
    echo "ray-up: a previous cluster is partly up; stopping it first" >&2
    "$REPO/scripts/ray-down.sh" >&2
fi
for port in "$GCS_PORT" "$DASH_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "ray-up: port $port on 127.0.0.1 is taken by something else (CG_RAY_GCS_PORT / CG_RAY_DASHBOARD_PORT)" >&2
        exit 1
    fi
done
mkdir -p "$STATE"
rm -rf "$STATE/tmp"

common=(--block --node-ip-address=127.0.0.1 --num-cpus=2 --num-gpus=0 --memory="$MEM_BYTES"
        --object-store-memory="$OBJ_BYTES" --disable-usage-stats --temp-dir="$STATE/tmp")

# Loopback only. `ray start` turns --node-ip-address=127.0.0.1 (and 127.0.0.1 in --address) into the
# machine's routable address, and its servers then listen on every interface, unless
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0. The head runs with that. A worker cannot: with it set, `ray start
# --address` refuses to add a node ("Multi-node Ray clusters are not supported on Windows and OSX"), even on
# Linux. So the worker runs `ray start` through a two-line shim that keeps 127.0.0.1 as given.
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 setsid "$RAY_BIN" start --head "${common[@]}" --port="$GCS_PORT" \
    --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" \
    --ray-client-server-port=10401 --dashboard-agent-listen-port=21401 --dashboard-agent-grpc-port=21402 \
    --metrics-export-port=21403 --runtime-env-agent-port=21404 \
    --node-manager-port=21405 --object-manager-port=21406 --min-worker-port=21500 --max-worker-port=21599 \
    --resources='{"GPU_A100": 2, "cg_node_head": 1}' \
    </dev/null >"$STATE/head.log" 2>&1 &
echo $! >"$STATE/head.pid"
wait_gcs || { tail -n 30 "$STATE/head.log" >&2; exit 1; }

# The second node, on the same machine, as soon as the GCS listens: every port distinct from the head's.
SHIM='import sys
from ray._private import services
services.resolve_ip_for_localhost = lambda host: host  # keep 127.0.0.1: this node stays on loopback
from ray.scripts.scripts import main
sys.argv[0] = "ray"
sys.exit(main())'
setsid "$RAY_PY" -c "$SHIM" start "${common[@]}" --address="127.0.0.1:$GCS_PORT" \
    --dashboard-agent-listen-port=21411 --dashboard-agent-grpc-port=21412 \
    --metrics-export-port=21413 --runtime-env-agent-port=21414 \
    --node-manager-port=21415 --object-manager-port=21416 --min-worker-port=21600 --max-worker-port=21699 \
    --resources='{"GPU_A100": 2, "cg_node_worker1": 1}' \
    </dev/null >"$STATE/worker1.log" 2>&1 &
echo $! >"$STATE/worker1.pid"
alive head || { echo "ray-up: the head exited; the end of $STATE/head.log:" >&2; tail -n 30 "$STATE/head.log" >&2; exit 1; }
wait_nodes 2 worker1 || { tail -n 30 "$STATE/worker1.log" "$STATE/head.log" >&2; exit 1; }

# A raylet whose agent dies exits about 10 s later ("fate-shares"), taking the node down after the APIs first
# answered. Look again once that window has passed, so that a caller's retry covers this case too.
sleep "$SETTLE"
for node in head worker1; do
    alive "$node" || { echo "ray-up: $node went down within ${SETTLE}s of starting; the end of $STATE/$node.log:" >&2
                       tail -n 30 "$STATE/$node.log" >&2; exit 1; }
done
[ "$(alive_nodes)" -ge 2 ] 2>/dev/null || { echo "ray-up: fewer than 2 alive nodes ${SETTLE}s after start" >&2; exit 1; }

echo "ray-up: 2 nodes up; Jobs API $API, GCS 127.0.0.1:$GCS_PORT, state in $STATE"
