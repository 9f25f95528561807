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
# A run stopped before its end (to free the CPU; it resumes as above) can be saved as it stands:
#
#   scripts/real_crossfit.sh --save-only crossfit-headline-seed2 [-S ...]   # the same arguments
#
# saves the metrics of the stages that ran for this run and lists the others in not_run.txt
# (their metric files in the workspace are an earlier run's: left out). Either way only the
# run's own files are saved (scripts/crossfit_outputs.py), and a provenance.txt or repro.log
# written next to an earlier save of the same name is kept.
# Env: OUT (default results).
set -euo pipefail
save_only=false
if [ "${1:-}" = --save-only ]; then save_only=true; shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [--save-only] NAME [-S key=value ...]" >&2; exit 2; }
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
if ! $save_only; then
  echo "== $cmd"
  (cd pipelines/crossfit && git checkout -- params.yaml && dvc exp run "${args[@]}")
fi

dst="$OUT/crossfit/$name"
# built aside, then swapped in: a failed save leaves the previous one whole
tmp=$(realpath -m "$dst.tmp")
rm -rf "$tmp" && mkdir -p "$tmp/single/timing" "$tmp/audit"
# the run's own files only (scripts/crossfit_outputs.py): the declared metrics and timings of
# the stages that ran, not files an earlier run left in the workspace; not_run.txt lists the rest
files=$(python scripts/crossfit_outputs.py pipelines/crossfit "$tmp/not_run.txt")
[ -s "$tmp/not_run.txt" ] || rm "$tmp/not_run.txt"
if ! $save_only && [ -e "$tmp/not_run.txt" ]; then
  echo "the run ended with stages not up to date (see $tmp/not_run.txt)" >&2
  exit 1
fi
(cd pipelines/crossfit && printf '%s\n' $files | xargs -r cp --parents -t "$tmp")
printf '%s\n' "$cmd" > "$tmp/command.txt"
git rev-parse HEAD > "$tmp/commit.txt"
cp pipelines/crossfit/params.yaml "$tmp/params.yaml"
cp params.yaml "$tmp/root_params.yaml"
cp metrics/evaluate.json "$tmp/single/"
cp metrics/timing/train.json "$tmp/single/timing/"
# the audit's list and review page (small rendered figures, no data file), once it ran
if ! grep -qs '^audit ' "$tmp/not_run.txt"; then
  cp pipelines/crossfit/reports/audit/label_issues.csv pipelines/crossfit/reports/audit/index.html \
    "$tmp/audit/"
fi
for f in provenance.txt repro.log; do  # written by hand next to an earlier save: kept
  if [ -e "$dst/$f" ]; then cp "$dst/$f" "$tmp/"; fi
done
rm -rf "$dst" && mv "$tmp" "$dst"
echo "saved $dst"
