#!/usr/bin/env bash
# The cluster check (docs/reproduce.md, "On a cluster"): on a real single-node Slurm started
# by tools/slurm/local-cluster.sh, a simulator grid sharded over 4 array tasks and merged by
# a dependent job must equal the one-machine run of the same grid byte for byte.
#
#   tools/slurm/check-grid.sh [SPRINT_BINARY]     (default: target/release/sprint)
#
# Needs root (the cluster script installs and starts the daemons). Exit 0 when equal.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=$(realpath "${1:-target/release/sprint}")
[ -x "$BIN" ] || { echo "check-grid.sh: $BIN is not an executable sprint binary" >&2; exit 1; }
WORK=$(mktemp -d /tmp/sprint-slurm-check.XXXXXX)
SHARDS=4
started=$(date +%s)

tools/slurm/local-cluster.sh start
export SLURM_CONF=${SPRINT_SLURM_DIR:-/tmp/sprint-slurm}/slurm.conf

# 16 points: 2 designs x 2 workloads x 2 x 2 axis values.
cat >"$WORK/grid.toml" <<'EOF'
kind = "simulate"
designs = ["s-sprint", "m-sprint"]
baseline = "s-baseline"
workloads = ["BERT-B", "ViT-B"]

[axes]
"core.corelets" = [1, 2]
"memory.channels" = [2, 4]
EOF

echo "one machine: $BIN sweep --grid grid.toml"
"$BIN" sweep --grid "$WORK/grid.toml" --threads 1 --out "$WORK/one.csv" --cache "$WORK/one-cache" >/dev/null

export SPRINT_BIN=$BIN SPRINT_GRID=$WORK/grid.toml SPRINT_SHARDS=$SHARDS SPRINT_OUT=$WORK/parts
cd "$WORK"
array=$(sbatch --parsable --array=0-$((SHARDS - 1)) --export=ALL "$OLDPWD/tools/slurm/grid-array.sbatch")
merge=$(sbatch --parsable --dependency=afterok:"$array" --kill-on-invalid-dep=yes --export=ALL \
    "$OLDPWD/tools/slurm/grid-merge.sbatch")
echo "slurm: array job $array ($SHARDS tasks), merge job $merge"

# Wait for both jobs to leave the queue (at most 10 minutes).
for _ in $(seq 1 600); do
    if [ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; then
        break
    fi
    sleep 1
done
if [ -n "$(squeue -h -j "$array,$merge" 2>/dev/null)" ]; then
    echo "check-grid.sh: the jobs did not finish within 10 minutes" >&2
    squeue >&2
    exit 1
fi
cat slurm-*.out

if [ ! -s "$WORK/parts/merged.csv" ]; then
    echo "check-grid.sh: no merged CSV (a task or the merge failed; logs above)" >&2
    exit 1
fi
if cmp "$WORK/one.csv" "$WORK/parts/merged.csv"; then
    echo "slurm: $SHARDS array tasks + merge equal the one-machine grid byte for byte ($(wc -l <"$WORK/one.csv") lines, $(( $(date +%s) - started )) s)"
else
    echo "check-grid.sh: the merged CSV differs from the one-machine run" >&2
    diff "$WORK/one.csv" "$WORK/parts/merged.csv" | head -20 >&2
    exit 1
fi
rm -rf "$WORK"
