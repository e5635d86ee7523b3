#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine (munge + slurmctld + slurmd, no systemd), for
# trying lorasweep's Slurm path and for tests/slurm_test.cc.
#
#   cluster/slurm/local-cluster.sh start    # idempotent: a running cluster is left as it is
#   cluster/slurm/local-cluster.sh status   # daemons and sinfo
#   cluster/slurm/local-cluster.sh env      # prints: export SLURM_CONF=...   (eval "$(... env)")
#   cluster/slurm/local-cluster.sh stop     # cancels jobs, stops the daemons by their pid files
#
# Config, state, spool, logs and pid files live in $LORASWEEP_SLURM_DIR (default
# /tmp/lorasweep-slurm) so nothing under /etc/slurm is touched. One node (this host, CPUs = nproc),
# one partition "debug" (plus "gpusim" for --test-only checks of GPU layouts). Needs root (slurmd runs jobs as their user) and the Debian packages
# slurmctld slurmd slurm-client munge (cluster/setup.sh installs them).
set -euo pipefail

dir=${LORASWEEP_SLURM_DIR:-/tmp/lorasweep-slurm}
conf=$dir/slurm.conf
host=$(hostname -s)

log() { echo "[local-cluster] $*" >&2; }

# Whether the daemon whose pid file is $1 is alive.
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  mkdir -p "$dir"/{state,spool,log}
  # Why each line: SlurmctldHost/NodeAddr 127.0.0.1 (the host name may not resolve); root users
  # (no slurm account setup needed); MpiDefault=pmix (Open MPI here has PMIx, no PMI2);
  # proctrack/linuxproc + task/none (no cgroups or systemd in containers); cons_tres+CR_Core so
  # jobs share the node by cores; batch_sched_delay=0 so a batch job starts within ~1 s and
  # sched_interval/bf_interval=2 so a requeued job starts ~2 s after it becomes eligible (not 30 s);
  # ReturnToService=2 so a restarted node comes back without `scontrol update`; no accounting
  # (sacct would need slurmdbd + MariaDB). JobRequeue=1: jobs are requeueable by default.
  # Partition gpusim: 4 simulated nodes of 64 CPUs and 8 GPUs that never run anything (State=CLOUD
  # without a ResumeProgram: no slurmd serves them). It exists so `sbatch --test-only -p gpusim`
  # checks multi-node GPU scripts against real Slurm rules on this one GPU-less machine; do not
  # submit real jobs there (they would wait for a node that never boots).
  # cred_expire=10: a requeued job waits cred_expire + 1 s before it may start again (default 120 s,
  # measured: Reason=BeginTime for 121 s); 10 s keeps the requeue test short.
  local tmp=$conf.tmp.$$
  cat >"$tmp" <<EOF
ClusterName=lorasweep-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CryptoType=crypto/munge
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldPort=${LORASWEEP_SLURMCTLD_PORT:-6817}
SlurmdPort=${LORASWEEP_SLURMD_PORT:-6818}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=300
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
GresTypes=gpu
NodeName=gpusim[1-4] NodeAddr=127.0.0.1 CPUs=64 Gres=gpu:8 State=CLOUD
PartitionName=gpusim Nodes=gpusim[1-4] Default=NO MaxTime=INFINITE State=UP
EOF
  mv "$tmp" "$conf"
}

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  [[ -f /etc/munge/munge.key ]] || { log "no /etc/munge/munge.key (install the munge package)"; exit 1; }
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged </dev/null >>"$dir/log/munged.out" 2>&1 9>&-
  for _ in $(seq 50); do
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
    sleep 0.1
  done
  log "munged did not come up; see $dir/log/munged.out and /var/log/munge/munged.log"
  exit 1
}

wait_node_up() {
  for _ in $(seq 100); do
    local state
    state=$(SLURM_CONF=$conf sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    case $state in
      idle*|mixed*|allocated*) return 0 ;;
    esac
    sleep 0.2
  done
  log "node did not become idle; see $dir/log/"
  SLURM_CONF=$conf sinfo -N >&2 || true
  exit 1
}

cmd_start() {
  for tool in slurmctld slurmd sbatch munged; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] || {
      log "$tool is not installed (apt-get install slurmctld slurmd slurm-client munge)"; exit 1; }
  done
  if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid"; then
    log "already running ($conf)"
    return 0
  fi
  write_conf
  start_munge
  alive "$dir/slurmctld.pid" || /usr/sbin/slurmctld -f "$conf" </dev/null >>"$dir/log/slurmctld.out" 2>&1 9>&-
  for _ in $(seq 50); do SLURM_CONF=$conf scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
  alive "$dir/slurmd.pid" || /usr/sbin/slurmd -f "$conf" </dev/null >>"$dir/log/slurmd.out" 2>&1 9>&-
  wait_node_up
  log "up: $host with $(nproc) CPUs, partition debug ($conf)"
}

stop_daemon() {
  local pidfile=$1
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }; sleep 0.1; done
  log "pid $pid ($pidfile) ignored SIGTERM for 10 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

cmd_stop() {
  if alive "$dir/slurmctld.pid"; then
    SLURM_CONF=$conf scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    # Give the jobs' processes a moment to get the signal before slurmd goes away.
    for _ in $(seq 30); do
      [[ -z $(SLURM_CONF=$conf squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.1
    done
  fi
  stop_daemon "$dir/slurmd.pid"
  stop_daemon "$dir/slurmctld.pid"
  # munged is shared with anything else on the machine that uses munge: left running (cheap).
  log "stopped"
}

cmd_status() {
  local ok=0
  for d in slurmctld slurmd; do
    if alive "$dir/$d.pid"; then echo "$d: running (pid $(cat "$dir/$d.pid"))"; else echo "$d: stopped"; ok=1; fi
  done
  if ((ok == 0)); then
    SLURM_CONF=$conf sinfo
    SLURM_CONF=$conf squeue
  fi
  return $ok
}

# start/stop from several processes at once (ctest -j runs each test in its own process) must not
# start two slurmctld or stop one mid-start: serialize them. The daemons are started with fd 9
# closed (`9>&-`): a daemon that inherited it would hold the lock for its whole life and every
# later start/stop would wait forever; their stdout/stderr go to files for the same reason (a caller
# reading our output until EOF would wait as long as the daemons live). The wait is bounded so a stuck holder is an error, not a hang.
lock() {
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock -w "${LORASWEEP_SLURM_LOCK_WAIT:-120}" 9 || {
    log "timed out waiting for $dir/.lock (another start/stop, or a process that inherited it, holds it)"
    exit 1
  }
}

case ${1:-} in
  start) lock; cmd_start ;;
  stop) lock; cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *) echo "usage: $0 start|stop|status|env   (state in \$LORASWEEP_SLURM_DIR, default /tmp/lorasweep-slurm)" >&2
     exit 2 ;;
esac
