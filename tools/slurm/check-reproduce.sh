#!/usr/bin/env bash
# The stage-sharded reproduction check (docs/reproduce.md, "On a cluster"): on a real
# single-node Slurm started by tools/slurm/local-cluster.sh, `sprint reproduce` sharded by
# stages over 4 array tasks and merged by a dependent job must give the one-machine report
# apart from wall times: every table equal byte for byte except the stage wall times
# (provenance-stages) and the worker-thread count, and report.md equal once the lines that
# carry wall times are dropped.
#
#   tools/slurm/check-reproduce.sh [SPRINT_BINARY] [--quick|--full]
#
# Runs the reproduction twice (one machine, then sharded): about 2 x the run's time. Needs
# root (the cluster script installs and starts the daemons). Exit 0 when equal.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=$(realpath "${1:-target/release/sprint}")
MODE=${2:---quick}
[ -x "$BIN" ] || { echo "check-reproduce.sh: $BIN is not an executable sprint binary" >&2; exit 1; }
WORK=$(mktemp -d /tmp/sprint-slurm-reproduce.XXXXXX)
SHARDS=4
started=$(date +%s)

tools/slurm/local-cluster.sh start
export SLURM_CONF=${SPRINT_SLURM_DIR:-/tmp/sprint-slurm}/slurm.conf

echo "one machine: $BIN reproduce $MODE --out $WORK/one"
"$BIN" reproduce "$MODE" --out "$WORK/one" >"$WORK/one.log" 2>&1 || {
    cat "$WORK/one.log" >&2
    exit 1
}
one_s=$(( $(date +%s) - started ))

export SPRINT_BIN=$BIN SPRINT_MODE=$MODE SPRINT_SHARDS=$SHARDS SPRINT_OUT=$WORK/sharded
cd "$WORK"
array=$(sbatch --parsable --array=0-$((SHARDS - 1)) --export=ALL "$OLDPWD/tools/slurm/reproduce-array.sbatch")
merge=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes --export=ALL \
    "$OLDPWD/tools/slurm/reproduce-merge.sbatch")
echo "slurm: array job $array ($SHARDS tasks), merge job $merge"
for _ in $(seq 1 10800); do
    if [ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; then
        break
    fi
    sleep 1
done
if [ -n "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; then
    echo "check-reproduce.sh: the jobs did not finish within 3 hours" >&2
    exit 1
fi
tail -n 3 slurm-*.out
[ -s "$WORK/sharded/report.md" ] || {
    echo "check-reproduce.sh: no merged report (a task or the merge failed; logs above)" >&2
    exit 1
}

# Lines that carry wall times or the thread count.
volatile='wall time|worker threads|s of computation|s together|^\| (accuracy|trace|sim|precision|noise|sparsity|decode)[-a-z0-9]* +\| [0-9a-f]{16} '
status=0
for f in "$WORK/one/tables/"*.csv; do
    name=$(basename "$f")
    [ "$name" = provenance-stages.csv ] && continue
    if ! cmp -s <(grep -Ev "$volatile" "$f") <(grep -Ev "$volatile" "$WORK/sharded/tables/$name"); then
        echo "check-reproduce.sh: tables/$name differs" >&2
        diff <(grep -Ev "$volatile" "$f") <(grep -Ev "$volatile" "$WORK/sharded/tables/$name") | head -10 >&2
        status=1
    fi
done
if ! cmp -s <(grep -Ev "$volatile" "$WORK/one/report.md") <(grep -Ev "$volatile" "$WORK/sharded/report.md"); then
    echo "check-reproduce.sh: report.md differs beyond wall times" >&2
    diff <(grep -Ev "$volatile" "$WORK/one/report.md") <(grep -Ev "$volatile" "$WORK/sharded/report.md") | head -20 >&2
    status=1
fi
total=$(( $(date +%s) - started ))
if [ $status = 0 ]; then
    echo "slurm: $SHARDS stage shards + merge equal the one-machine report apart from wall times ($(ls "$WORK/one/tables/"*.csv | wc -l) tables; one machine ${one_s} s, sharded $((total - one_s)) s)"
    rm -rf "$WORK"
fi
exit $status
