#!/bin/bash
# A single-node Slurm for meshfarm's Slurm tests: installs Debian's slurm-wlm and munge when missing, writes a
# slurm.conf for this machine and starts munged, slurmctld and slurmd. Idempotent: a second run finds them
# answering and returns at once. Prints one line and exits non-zero when it cannot (the tests skip with it).
#
# Settings: proctrack/linuxproc and task/none (no cgroups in this VM), SlurmUser=root, cons_tres with
# CR_Core_Memory, partitions `debug` (default, no time limit) and `short` (MaxTime=2 minutes, for limit tests).
# MaxArraySize=21 (highest index 20; MESHFARM_TEST_SLURM_MAX_ARRAY_SIZE changes it, e.g. 1001 for a benchmark of
# 1,000-task arrays) so the chunking test splits an array of 45 tasks in three without waiting for hundreds:
# this node starts about two trivial jobs a second. SchedulerParameters start jobs as soon as they are
# submitted or a CPU frees (batch_sched_delay=0, sched_min_interval=0), max_array_tasks=1000 shows in the config.
# KillWait=5: a job past its time limit or cancelled gets SIGKILL 5 s after SIGTERM (default 30).
# MinJobAge stays at its default (300 s): the tests read terminal states from squeue well within it.
# EnforcePartLimits=ALL (as many sites set it) makes sbatch refuse at submission what a partition can never run;
# partition `lab` allows only the accounts in ALLOWED_ACCOUNTS, so a bad --account there is a real, permanent
# sbatch error without an accounting daemon (without one, Slurm knows no accounts to check otherwise).
set -u
STATE=${MESHFARM_TEST_SLURM_STATE:-/var/lib/meshfarm-test-slurm}
CONF=/etc/slurm/slurm.conf
MARK='# written by meshfarm test/slurm/setup.sh'
ALLOWED_ACCOUNTS=lab
MAX_ARRAY_SIZE=${MESHFARM_TEST_SLURM_MAX_ARRAY_SIZE:-21}

fail () { echo "slurm setup: $*"; exit 1; }

# Up means: slurmctld answers and the node takes jobs. A node left DOWN or DRAINED by an earlier run (a test
# killed mid-way) is resumed on the way.
answering () {
  timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP' || return 1
  local st; st=$(timeout 10 sinfo -h -N -o %T 2>/dev/null | head -1)
  case "$st" in
    idle*|mix*|alloc*|comp*) return 0 ;;
    down*|drain*) scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1; return 1 ;;
    *) return 1 ;;
  esac
}

[ "$(id -u)" = 0 ] || fail "not root (needs to install and start slurmctld, slurmd and munged)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  command -v apt-get >/dev/null || fail "no apt-get to install slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq slurm-wlm munge >"$STATE.apt.log" 2>&1; then
    apt-get update -qq >>"$STATE.apt.log" 2>&1
    apt-get install -y -qq slurm-wlm munge >>"$STATE.apt.log" 2>&1 || fail "apt-get install slurm-wlm munge failed (see $STATE.apt.log)"
  fi
fi

# A restart test stops the controller with SIGSTOP; one that died half-way leaves it stopped.
[ -f "$STATE/slurmctld.pid" ] && kill -CONT "$(cat "$STATE/slurmctld.pid")" 2>/dev/null

if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  fail "$CONF exists and was not written by meshfarm: not touching a real cluster's configuration"
fi

NODE=$(hostname -s)
# slurmd -C reads the machine as slurmd will see it; RealMemory keeps 1 GiB (or a quarter) of headroom.
HW=$(slurmd -C 2>/dev/null | head -1)
CPUS=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
[ -n "$CPUS" ] && [ -n "$MEM" ] || fail "slurmd -C did not report CPUs and RealMemory: $HW"
HEADROOM=$(( MEM / 4 < 1024 ? MEM / 4 : 1024 ))
MEM=$(( MEM - HEADROOM ))
ADDR=$(getent hosts "$NODE" | awk '{print $1; exit}')
[ -n "$ADDR" ] || ADDR=127.0.0.1

GRES_LINE=''
GRES_NODE=''
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  NGPU=$(ls /dev/nvidia[0-9]* 2>/dev/null | wc -l)
  if [ "$NGPU" -gt 0 ]; then
    GRES_LINE='GresTypes=gpu'
    GRES_NODE="Gres=gpu:$NGPU"
    { echo 'AutoDetect=off'; for d in /dev/nvidia[0-9]*; do echo "Name=gpu File=$d"; done; } > /etc/slurm/gres.conf
  fi
fi

mkdir -p "$STATE/ctld" "$STATE/d" /etc/slurm /run/munge /var/log/munge /var/lib/munge
cat > "$CONF.new" <<EOF
$MARK
ClusterName=meshfarm-test
SlurmctldHost=$NODE($ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MaxArraySize=$MAX_ARRAY_SIZE
EnforcePartLimits=ALL
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,max_array_tasks=1000
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
KillWait=5
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
$GRES_LINE
NodeName=$NODE NodeAddr=$ADDR CPUs=$CPUS RealMemory=$MEM $GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$NODE MaxTime=2 State=UP
PartitionName=lab Nodes=$NODE MaxTime=INFINITE State=UP AllowAccounts=$ALLOWED_ACCOUNTS
EOF

# A changed configuration restarts the daemons (node and partition changes need it); an unchanged one is left.
if cmp -s "$CONF.new" "$CONF"; then
  rm -f "$CONF.new"
  if pgrep -x slurmd >/dev/null && answering; then echo "slurm: up"; exit 0; fi
else
  mv -f "$CONF.new" "$CONF"
  for d in slurmctld slurmd; do [ -f "$STATE/$d.pid" ] && kill "$(cat "$STATE/$d.pid")" 2>/dev/null; done
  for _ in $(seq 1 50); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 0.2; done
fi

# munge: the package made a key; --force because this VM's folders are not owned the way munged likes.
[ -f /etc/munge/munge.key ] || mungekey --create >/dev/null 2>&1 || fail "no munge key and mungekey failed"
# Started inside the wait: a daemon still exiting from an earlier stop is started again once it is gone.
start_missing () {
  pgrep -x munged >/dev/null || munged --force >/dev/null 2>&1 || fail "munged did not start"
  pgrep -x slurmctld >/dev/null || slurmctld || fail "slurmctld did not start (see $STATE/slurmctld.log)"
  pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start (see $STATE/slurmd.log)"
}

for _ in $(seq 1 60); do
  start_missing
  if answering; then echo "slurm: up"; exit 0; fi
  sleep 1
done
fail "slurmctld or slurmd did not answer within 60 s (see $STATE/slurmctld.log and $STATE/slurmd.log)"
