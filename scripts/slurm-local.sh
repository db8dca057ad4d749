#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurm-wlm 22.05 and munge) on this
# machine, for the Slurm test (crates/cli/tests/slurm.rs) and for trying
# `embedlab study submit --slurm` by hand.
#
#   scripts/slurm-local.sh up DIR     install (as root, with apt-get) if needed,
#                                     write DIR/slurm.conf, start munged,
#                                     slurmctld and slurmd, wait for the node
#   scripts/slurm-local.sh down DIR   stop the daemons started by `up DIR`
#
# Every Slurm command must then see SLURM_CONF=DIR/slurm.conf. The node is
# this host with its cores (or $SLURM_LOCAL_CPUS) and memory, one partition `debug`; processes are
# tracked without cgroups (linuxproc), so it runs in a container too.
# Exits non-zero, saying why, when Slurm cannot be installed or started.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf

say() { echo "slurm-local: $*" >&2; }

stop() {
  for d in slurmd slurmctld; do
    if [ -f "$dir/$d.pid" ]; then
      kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
    fi
  done
  for d in slurmd slurmctld; do
    if [ -f "$dir/$d.pid" ]; then
      p=$(cat "$dir/$d.pid")
      for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
      rm -f "$dir/$d.pid"
    fi
  done
}

case "$cmd" in
down)
  stop
  if [ -f "$dir/munged.started" ]; then
    pkill -x munged 2>/dev/null || true
    rm -f "$dir/munged.started"
  fi
  exit 0
  ;;
up) ;;
*) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
  ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "Slurm is not installed and this is not root with apt-get: cannot install slurmctld slurmd slurm-client munge"
    exit 1
  fi
  say "installing Debian slurmctld slurmd slurm-client munge..."
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >"$dir/apt.log" 2>&1; then
    apt-get update -qq >>"$dir/apt.log" 2>&1 || true
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >>"$dir/apt.log" 2>&1 ||
      { say "apt-get could not install Slurm (see $dir/apt.log)"; tail -5 "$dir/apt.log" >&2; exit 1; }
  fi
fi

# munge: the key the package made (or a new one), the daemon on its default socket.
if ! pgrep -x munged >/dev/null; then
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  if [ "$(id -u)" = 0 ]; then
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    if id munge >/dev/null 2>&1; then
      runuser -u munge -- munged || { say "munged did not start"; exit 1; }
    else
      munged --force || { say "munged did not start"; exit 1; }
    fi
  else
    munged || { say "munged did not start"; exit 1; }
  fi
  touch "$dir/munged.started"
fi
munge -n | unmunge >/dev/null || { say "munge does not work (munge -n | unmunge)"; exit 1; }

stop
host=$(hostname -s)
cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
user=$(id -un)
mkdir -p "$dir/state" "$dir/spool"
cat >"$conf" <<EOF
ClusterName=embedlab
SlurmctldHost=$host
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=$((16817 + RANDOM % 1000))
SlurmdPort=$((17817 + RANDOM % 1000))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
# SLURM_LOCAL_CPUS may give the node more cores than it has (a test of the
# array's concurrency cap needs room above the cap)
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=600
JobRequeue=1
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf
slurmctld -i || { say "slurmctld did not start (see $dir/slurmctld.log)"; tail -5 "$dir/slurmctld.log" >&2; exit 1; }
slurmd || { say "slurmd did not start (see $dir/slurmd.log)"; tail -5 "$dir/slurmd.log" >&2; exit 1; }
for _ in $(seq 60); do
  if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
    say "up: node $host ($cpus cores, $mem MiB), SLURM_CONF=$conf"
    exit 0
  fi
  sleep 0.5
done
say "the node did not come up (sinfo: $(sinfo -h -N -o '%T %E' 2>&1)); see $dir/slurmctld.log and $dir/slurmd.log"
tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2
exit 1
