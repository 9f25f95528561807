#!/usr/bin/env bash
# Issue 25 on real data: the cross-fitting pipeline (pipelines/crossfit) at the recipe and on the
# maps the root workspace holds, saved to $OUT/crossfit/<name>/ for docs/RESULTS.md
# (scripts/report_results.py renders it with scripts/results_crossfit.py). First the root: its
# data, split, shards and the single model of the same recipe, e.g.
#
#   scripts/real_experiments.sh cpu-headline-seed2          # the root at the headline recipe
#   scripts/real_crossfit.sh crossfit-headline-seed2         # K = 3 members, student, audit...
#   scripts/real_crossfit.sh crossfit-k5 -S 'crossfit.folds=[0,1,2,3,4]'
#
# crossfit.epochs is set to the root's train.epochs (one budget for every model compared); more
# -S overrides go to `dvc exp run` in pipelines/crossfit. Hours on a 2-core CPU: a member trains
# like the single model on (K-1)/K of its maps. An interrupted run resumes: stages already done
# are in dvc.lock, and WAFER_RESUME_DIR resumes a member's training (docs/TRAINING.md).
# Env: OUT (default results).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 NAME [-S key=value ...]" >&2; exit 2; }
name=$1
shift
OUT=${OUT:-results}
dvc status -q || {
  echo "the root pipeline is not up to date: its single model would not be this recipe's" >&2
  exit 1
}
epochs=$(python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['train']['epochs'])")
args=(-n "$name" -S "crossfit.epochs=$epochs" "$@")
cmd="cd pipelines/crossfit && dvc exp run ${args[*]}"
echo "== $cmd"
(cd pipelines/crossfit && git checkout -- params.yaml && dvc exp run "${args[@]}")

dst="$OUT/crossfit/$name"
rm -rf "$dst" && mkdir -p "$dst/single/timing" "$dst/audit"
printf '%s\n' "$cmd" > "$dst/command.txt"
git rev-parse HEAD > "$dst/commit.txt"
cp -r pipelines/crossfit/metrics "$dst/metrics"
cp pipelines/crossfit/params.yaml "$dst/params.yaml"
cp params.yaml "$dst/root_params.yaml"
cp metrics/evaluate.json "$dst/single/"
cp metrics/timing/train.json "$dst/single/timing/"
# the audit's list and review page (small rendered figures, no data file)
cp pipelines/crossfit/reports/audit/label_issues.csv pipelines/crossfit/reports/audit/index.html \
  "$dst/audit/"
echo "saved $dst"
