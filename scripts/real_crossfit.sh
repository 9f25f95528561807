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
# (their metric files in the workspace are still the committed synthetic default's: left out).
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
rm -rf "$dst" && mkdir -p "$dst/single/timing" "$dst/audit"
printf '%s\n' "$cmd" > "$dst/command.txt"
git rev-parse HEAD > "$dst/commit.txt"
cp -r pipelines/crossfit/metrics "$dst/metrics"
if $save_only; then  # the stages DVC would still run: their metrics are not this run's
  (cd pipelines/crossfit && dvc status --json) | python -c '
import json, re, sys, yaml
changed = json.load(sys.stdin)
doc = yaml.safe_load(open("pipelines/crossfit/dvc.yaml"))
names = {k: v for d in doc.get("vars", []) if isinstance(d, dict) for k, v in d.items()}
def resolve(m):  # ${paths.x} from vars; ${item.x} (a matrix member): every member
    keys = m.group(1).split(".")
    if keys[0] == "item":
        return "*"
    value = names
    for k in keys:
        value = value[k]
    return str(value)
for name in changed:
    for m in doc["stages"].get(name.split("@")[0], {}).get("metrics", []):
        path = next(iter(m)) if isinstance(m, dict) else m
        print(name, re.sub(r"\$\{([^}]+)\}", resolve, path))
' > "$dst/not_run.txt"
  while read -r _stage path; do
    case $path in
      # shellcheck disable=SC2086  # a matrix member's path is a glob on purpose
      metrics/*) rm -f "$dst"/$path ;;
      *) echo "not_run.txt: unexpected metrics path $path" >&2; exit 1 ;;
    esac
  done < "$dst/not_run.txt"
fi
cp pipelines/crossfit/params.yaml "$dst/params.yaml"
cp params.yaml "$dst/root_params.yaml"
cp metrics/evaluate.json "$dst/single/"
cp metrics/timing/train.json "$dst/single/timing/"
# the audit's list and review page (small rendered figures, no data file), once it ran
if ! $save_only || ! grep -q '^audit ' "$dst/not_run.txt"; then
  cp pipelines/crossfit/reports/audit/label_issues.csv pipelines/crossfit/reports/audit/index.html \
    "$dst/audit/"
fi
echo "saved $dst"
