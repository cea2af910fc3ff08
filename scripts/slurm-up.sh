#!/usr/bin/env bash
# Start a one-node Slurm site on this machine, for the Slurm backend's tests and demos.
#
#   scripts/slurm-up.sh [STATE_DIR]        (default /tmp/computegrid-slurm)
#
# Installs Debian's slurm-wlm, slurmdbd, munge and mariadb-client when missing (and mariadb-server
# when nothing listens on 127.0.0.1:3306), writes slurm.conf, gres.conf, slurmdbd.conf and cgroup.conf
# into STATE_DIR, makes four fake A100s (character devices STATE_DIR/dev/nvidia0..3, listed in
# gres.conf with AutoDetect=off), then starts munged, slurmdbd, slurmctld and slurmd, all as root and
# all with their files under STATE_DIR. Every Slurm command must be told the config:
#
#   export SLURM_CONF=STATE_DIR/slurm.conf
#
# Idempotent: when this site already answers and its node is up, it exits 0 at once.
# scripts/slurm-down.sh STATE_DIR stops the daemons by the PIDs recorded in STATE_DIR/run/.
# Environment: SLURM_DB_HOST/SLURM_DB_PORT (127.0.0.1/3306), SLURM_DB_ROOT_USER (root, no password),
# SLURM_CLUSTER (computegrid), SLURM_ACCOUNT (computegrid), SLURM_PARTITION (debug).
set -euo pipefail

STATE="${1:-/tmp/computegrid-slurm}"
mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
CLUSTER="${SLURM_CLUSTER:-computegrid}"
ACCOUNT="${SLURM_ACCOUNT:-computegrid}"
PARTITION="${SLURM_PARTITION:-debug}"
DB_HOST="${SLURM_DB_HOST:-127.0.0.1}"
DB_PORT="${SLURM_DB_PORT:-3306}"
DB_ROOT="${SLURM_DB_ROOT_USER:-root}"
DB_NAME="computegrid_slurm_acct"
DB_USER="computegrid_slurm"
NODE="$(hostname -s)"
export SLURM_CONF="$STATE/slurm.conf"
export PATH="$PATH:/usr/sbin:/sbin"

say() { printf '[slurm-up] %s\n' "$*"; }
die() { printf '[slurm-up] ERROR: %s\n' "$*" >&2; exit 1; }

pid_alive() { # pidfile: its process runs, and is the daemon the file is named after (not a recycled PID)
    local pid
    [[ -s "$1" ]] || return 1
    pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$(basename "$1" .pid)"
}

node_state() {
    sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1 || true
}

# --- already up? -------------------------------------------------------------------------------
if [[ -f "$SLURM_CONF" ]] && command -v scontrol >/dev/null 2>&1 \
        && pid_alive "$STATE/run/munged.pid" && pid_alive "$STATE/run/slurmdbd.pid" \
        && pid_alive "$STATE/run/slurmctld.pid" && pid_alive "$STATE/run/slurmd.pid" \
        && timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
    state="$(node_state)"
    case "$state" in
        idle*|mixed*|allocated*|completing*)
            say "already up: node $NODE is $state (SLURM_CONF=$SLURM_CONF)"
            exit 0 ;;
    esac
    say "daemons are up but node $NODE is '$state'; restarting them"
    "$(dirname "$0")/slurm-down.sh" "$STATE" || true
fi

# --- packages ----------------------------------------------------------------------------------
db_listening() {
    (exec 3<>"/dev/tcp/$DB_HOST/$DB_PORT") 2>/dev/null
}

wanted=()
for pkg in slurm-wlm slurmdbd munge mariadb-client; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || wanted+=("$pkg")
done
if ! db_listening && ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
    wanted+=(mariadb-server)
fi
if ((${#wanted[@]})); then
    say "installing ${wanted[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # Daemons are started below by this script, not by the packages' maintainer scripts.
    policy_rc=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e "$policy_rc" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod +x "$policy_rc" && made_policy=1
    fi
    if ! apt-get install -y -q --no-install-recommends "${wanted[@]}"; then
        say "install failed; running apt-get update once and retrying"
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${wanted[@]}"
    fi
    if ((made_policy)); then rm -f "$policy_rc"; fi
fi
for cmd in slurmctld slurmd slurmdbd munged sbatch sacctmgr mysql; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd is missing after the install"
done
say "Slurm $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null || echo '(version unknown)')"

# --- MariaDB -----------------------------------------------------------------------------------
if ! db_listening; then
    say "starting MariaDB (nothing listens on $DB_HOST:$DB_PORT)"
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld 2>/dev/null || true
    if [[ -x /etc/init.d/mariadb ]]; then
        /etc/init.d/mariadb start || true
    fi
    if ! db_listening; then
        (setsid mariadbd --user=mysql --bind-address=127.0.0.1 --port="$DB_PORT" \
            >"$STATE/mariadb.log" 2>&1 < /dev/null &)
    fi
    for _ in $(seq 60); do db_listening && break; sleep 1; done
    db_listening || die "MariaDB did not start; see $STATE/mariadb.log"
fi

mysql_root() { # SQL: as root over TCP with no password (this machine's setup), else over the local socket
    # (a fresh Debian MariaDB lets the system's root in through unix_socket authentication).
    mysql -h "$DB_HOST" -P "$DB_PORT" -u "$DB_ROOT" -e "$1" 2>/dev/null || mysql -u root -e "$1"
}

DB_PASS_FILE="$STATE/db-password"
if [[ ! -s "$DB_PASS_FILE" ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DB_PASS_FILE")
fi
DB_PASS="$(cat "$DB_PASS_FILE")"
say "creating database $DB_NAME and user $DB_USER in MariaDB (if missing)"
mysql_root "$(cat <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
)"

# --- files -------------------------------------------------------------------------------------
mkdir -p "$STATE"/{run,log,ctld,spool,munge,dev}
chmod 700 "$STATE/munge"
for i in 0 1 2 3; do
    [[ -c "$STATE/dev/nvidia$i" ]] || mknod "$STATE/dev/nvidia$i" c 1 3
done
if [[ ! -s "$STATE/munge/munge.key" ]]; then
    say "making a munge key"
    (umask 077; dd if=/dev/urandom bs=1 count=1024 of="$STATE/munge/munge.key" status=none)
fi
chmod 400 "$STATE/munge/munge.key"

cpus="$(nproc)"
mem_total_mb="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
real_mb=$((mem_total_mb * 95 / 100))
socket="$STATE/munge/munge.socket"

say "writing $STATE/slurm.conf (node $NODE: $cpus CPUs, ${real_mb} MB, gpu:a100:4)"
cat >"$STATE/slurm.conf" <<CONF
# Written by scripts/slurm-up.sh: a one-node site for computegrid's tests.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=5
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
# Clients reach slurmdbd through this munge socket (Slurm reads it from AccountingStoragePass).
AccountingStoragePass=$socket
AccountingStorageTRES=gres/gpu,gres/gpu:a100
AccountingStoreFlags=job_comment
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb Gres=gpu:a100:4 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

cat >"$STATE/gres.conf" <<CONF
# Fake GPUs: character devices (c 1 3, like /dev/null) that Slurm hands out as gpu:a100.
AutoDetect=off
NodeName=$NODE Name=gpu Type=a100 File=$STATE/dev/nvidia[0-3]
CONF

cat >"$STATE/cgroup.conf" <<CONF
# Unused here (proctrack/linuxproc, task/none: containers rarely let Slurm manage cgroups).
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
CONF

(umask 077; cat >"$STATE/slurmdbd.conf" <<CONF
# Written by scripts/slurm-up.sh.
AuthType=auth/munge
AuthInfo=socket=$socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=$DB_HOST
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
CONF
)
chmod 600 "$STATE/slurmdbd.conf"

# --- daemons -----------------------------------------------------------------------------------
wait_for() { # seconds description command...
    local seconds="$1" what="$2"; shift 2
    for _ in $(seq $((seconds * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    die "$what did not come up in ${seconds}s"
}

if pid_alive "$STATE/run/munged.pid"; then
    say "munged already runs (pid $(cat "$STATE/run/munged.pid"))"
else
    say "starting munged (socket $socket)"
    munged --force --socket="$socket" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
    wait_for 15 munged bash -c "munge -S '$socket' -n | unmunge -S '$socket'"
fi

if pid_alive "$STATE/run/slurmdbd.pid"; then
    say "slurmdbd already runs (pid $(cat "$STATE/run/slurmdbd.pid"))"
else
    say "starting slurmdbd"
    slurmdbd
    wait_for 60 slurmdbd sacctmgr -n list cluster
fi

if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    say "adding cluster $CLUSTER to the accounting database"
    sacctmgr -i add cluster "$CLUSTER"
fi
if ! sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
    say "adding account $ACCOUNT"
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=computegrid Organization=computegrid
fi
if ! sacctmgr -n -P list user root format=user,defaultaccount | grep -q "|$ACCOUNT\$\|^root|$ACCOUNT"; then
    say "adding user root to account $ACCOUNT"
    sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" || true
fi

if pid_alive "$STATE/run/slurmctld.pid"; then
    say "slurmctld already runs (pid $(cat "$STATE/run/slurmctld.pid"))"
else
    say "starting slurmctld"
    slurmctld
    wait_for 60 "slurmctld (scontrol ping)" bash -c "scontrol ping | grep -q 'is UP'"
fi

if pid_alive "$STATE/run/slurmd.pid"; then
    say "slurmd already runs (pid $(cat "$STATE/run/slurmd.pid"))"
else
    say "starting slurmd (node $NODE)"
    slurmd -N "$NODE"
fi

say "waiting for node $NODE to be idle"
for i in $(seq 240); do
    state="$(node_state)"
    case "$state" in
        idle*|mixed*|allocated*) break ;;
        *drain*|down*|fail*)
            if ((i % 8 == 4)); then
                say "node is '$state'; resuming it"
                scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
            fi ;;
    esac
    sleep 0.25
done
case "$state" in
    idle*|mixed*|allocated*) ;;
    *) scontrol show node "$NODE" >&2 || true
       tail -n 20 "$STATE/log/slurmd.log" "$STATE/log/slurmctld.log" >&2 || true
       die "node $NODE is '$state', not idle" ;;
esac
say "Slurm is up: node $NODE is $state. Use: export SLURM_CONF=$SLURM_CONF"
