#!/bin/bash
# Captures real Slurm 22.05 output for the unit tests (test/unit/fixtures/slurm/). Needs the test Slurm
# (bash test/slurm/setup.sh) and nothing else running on it; takes about a minute (a TIMEOUT needs the
# controller's periodic time-limit check). Re-run after changing the squeue format in parse.ts.
set -eu
cd "$(dirname "$0")/../.."
OUT=$PWD/test/unit/fixtures/slurm
W=$(mktemp -d /tmp/meshfarm-capture-XXXXXX)
NODE=$(hostname -s)
SEP=$'\x1f'
FMT="%i${SEP}%A${SEP}%T${SEP}%r${SEP}%N${SEP}%j${SEP}%k"
mkdir -p "$OUT"
cd "$W"
sb () { sbatch --parsable --no-requeue -o "$W/%x_%A_%a.out" "$@"; }
done_=$(sb -J 'mf:cap:j1:0' --comment='mf:cap:j1:0' --array=0-2 --wrap 'exit 0')
failed=$(sb -J 'plain job' --comment='a comment with spaces Reason=not-a-field' --wrap 'exit 3')
timeout=$(sb -J 'mf:cap:j2:0' -p short --time=0:05 --wrap 'sleep 300')
cancel=$(sb -J 'mf:cap:j3:0' --wrap 'sleep 300')
held=$(sb -J 'mf:cap:j4:0' --comment='mf:cap:j4:0' --array=0-5%1 --hold --wrap 'sleep 1')
sleep 2
scancel "$cancel"
until [ "$(squeue -h -j "$timeout" -t all -o %T)" = TIMEOUT ]; do sleep 2; done
squeue --me -h -r -t all -o "$FMT" > "$W/q1"
scontrol show job -o "$done_" > "$OUT/scontrol-job-array.txt"
scontrol show job -o "$failed" > "$OUT/scontrol-job-failed.txt"
scontrol show job -o "$timeout" > "$OUT/scontrol-job-timeout.txt"
scontrol show job -o "$cancel" > "$OUT/scontrol-job-cancelled.txt"
scontrol show job -o "$held" > "$OUT/scontrol-job-pending-array.txt"
scancel "$held"
nf=$(sb -J 'mf:cap:j5:0' --comment='mf:cap:j5:0' --wrap 'sleep 300')
until [ "$(squeue -h -j "$nf" -o %T)" = RUNNING ]; do sleep 1; done
scontrol show job -o "$nf" > "$OUT/scontrol-job-running.txt"
scontrol update nodename="$NODE" state=down reason='meshfarm capture'
until [ "$(squeue -h -j "$nf" -t all -o %T)" = NODE_FAIL ]; do sleep 1; done
scontrol show job -o "$nf" > "$OUT/scontrol-job-node-fail.txt"
squeue --me -h -r -t all -o "$FMT" > "$W/q2"
sinfo -h -N -p debug -o "%N${SEP}%c${SEP}%m${SEP}%G${SEP}%T" > "$OUT/sinfo-nodes-down.txt"
scontrol update nodename="$NODE" state=resume 2>/dev/null || true # ReturnToService=2 may have brought it back
until sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)$'; do sleep 1; done
cat "$W/q1" "$W/q2" | awk -F"$SEP" '!seen[$1]++' > "$OUT/squeue.txt"
scontrol show config > "$OUT/scontrol-config.txt"
scontrol show partition -o > "$OUT/scontrol-partitions.txt"
sinfo -h -N -p debug -o "%N${SEP}%c${SEP}%m${SEP}%G${SEP}%T" > "$OUT/sinfo-nodes.txt"
scontrol show job -o 999999 > "$OUT/scontrol-job-unknown.txt" 2>&1 || true
{ sbatch --parsable -p nopart --wrap true 2>&1 || true; } > "$OUT/sbatch-bad-partition.txt"
{ sbatch --parsable -p lab --account=nope --wrap true 2>&1 || true; } > "$OUT/sbatch-bad-account.txt"
{ sbatch --parsable -p short --time=10 --wrap true 2>&1 || true; } > "$OUT/sbatch-time-limit.txt"
{ sbatch --parsable --bogus --wrap true 2>&1 || true; } > "$OUT/sbatch-bad-option.txt"
{ sbatch --parsable -c 99 --wrap true 2>&1 || true; } > "$OUT/sbatch-too-many-cpus.txt"
{ sbatch --parsable --array=0-200 --wrap true 2>&1 || true; } > "$OUT/sbatch-array-too-big.txt"
{ scancel 999999 2>&1 || true; } > "$OUT/scancel-unknown.txt"
rm -rf "$W"
echo "captured into $OUT"
