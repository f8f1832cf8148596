#!/usr/bin/env bash
# First-stage baselines (dense, BM25, hybrid) on every shared dataset: builds each index once, then evaluates.
# Usage: bash benchmarks/quality/run_first_stages.sh [DATASET ...]   (default: every set, smallest first)
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${WINNOW_DATASETS:-../shared/datasets}
BIN=${BIN:-.venv/bin}
sets=("$@")
[ ${#sets[@]} -gt 0 ] || sets=(abt-buy tatqa qed-nq msmarco-instructir-base checkthat2020-task2 arguana squad-v1.1)
for name in "${sets[@]}"; do
  split=test; [ "$name" = tatqa ] && split=dev
  idx=work/idx-$name
  [ -f "$idx/manifest.json" ] || "$BIN/winnow" index --corpus "$DATA/$name" --out "$idx" --json
  "$BIN/python" benchmarks/quality/first_stage.py --dataset "$DATA/$name" --index "$idx" --split "$split" \
    --out "benchmarks/results/first_stage_$name"
done
