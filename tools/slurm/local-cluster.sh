#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (Debian's slurm-wlm and munge), for
# running sprint's job arrays the way a cluster does: `start` installs what is missing,
# writes a configuration for this host into $SPRINT_SLURM_DIR and starts munged, slurmctld
# and slurmd; `stop` stops them; `status` prints sinfo. Needs root (package install, daemons).
#
#   tools/slurm/local-cluster.sh start
#   export SLURM_CONF=${SPRINT_SLURM_DIR:-/tmp/sprint-slurm}/slurm.conf
#   sbatch ...; squeue; sinfo
#   tools/slurm/local-cluster.sh stop
#
# The configuration is the smallest that runs batch jobs and arrays: one node with this
# machine's cores and memory, one partition, no accounting, process tracking without cgroups
# (containers often have no writable cgroup tree). See docs/reproduce.md, "On a cluster".
set -euo pipefail

DIR=${SPRINT_SLURM_DIR:-/tmp/sprint-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "local-cluster.sh: needs root (it installs packages and starts daemons)" >&2
        exit 1
    fi
}

install() {
    local missing=()
    for c in slurmctld slurmd sbatch munged; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
        if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
            apt-get update -qq
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    fi
}

write_conf() {
    mkdir -p "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log"
    chown -R slurm:slurm "$DIR/spool/ctld" "$DIR/log" 2>/dev/null || true
    local cpus mem_mb
    cpus=$(nproc)
    # Leave a quarter of the memory to the daemons and the system.
    mem_mb=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 3 / 4 ))
    cat >"$CONF" <<EOF
# Written by tools/slurm/local-cluster.sh: one node, this host.
ClusterName=sprint-local
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
NodeName=$HOST CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_munge() {
    if pgrep -x munged >/dev/null; then
        return
    fi
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge
    chown munge:munge /run/munge
    # As the munge user when possible (munged refuses root without --force).
    if command -v runuser >/dev/null 2>&1; then
        runuser -u munge -- munged
    else
        munged --force
    fi
}

start() {
    need_root
    install
    write_conf
    start_munge
    pgrep -x slurmctld >/dev/null || slurmctld -f "$CONF"
    pgrep -x slurmd >/dev/null || slurmd -f "$CONF"
    export SLURM_CONF=$CONF
    # Wait for the node to come up (at most 60 s).
    for _ in $(seq 1 60); do
        if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm: node $HOST up ($(nproc) CPUs); export SLURM_CONF=$CONF"
            return
        fi
        sleep 1
    done
    echo "slurm: the node did not come up within 60 s; logs in $DIR/log" >&2
    sinfo >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
}

stop() {
    need_root
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    echo "slurm: stopped (munged left running)"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) SLURM_CONF=$CONF sinfo ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
