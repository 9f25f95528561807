#!/usr/bin/env bash
# Real-data experiments as named DVC experiments: the two headline recipes, training-seed
# repeats of focal + CBAM, and a resolution study. Run from the repository root (or a clone).
# Each run's exact command, params, metrics and figures are copied to $OUT/<name>/ so that they
# survive without the experiment refs (which do not travel with git); `dvc exp show --json` goes
# to $OUT/exp_show/<commit>.json. docs/RESULTS.md is generated from $OUT by
# scripts/report_results.py.
#
#   scripts/real_experiments.sh                        # the current generation's runs, in order
#   scripts/real_experiments.sh cpu-headline res96-4ep  # just these
#
# Env: DATA (default ../shared/data/wm811k-subset/LSWMD-subset.pkl.xz, or your LSWMD.pkl),
#      OUT (default results), EPOCHS (default 4: what this 2-core CPU affords per run),
#      SERVED (set: also save the served model, calibration and thresholds in $OUT/<name>/served/).
set -euo pipefail
DATA=${DATA:-../shared/data/wm811k-subset/LSWMD-subset.pkl.xz}
OUT=${OUT:-results}
EPOCHS=${EPOCHS:-4}

real=(-S "ingest.input=$DATA" -S ingest.trust_pickle=true)  # the subset: a trusted pickle
budget=(-S "train.epochs=$EPOCHS" -S "train.patience=$EPOCHS")  # the 4-epoch studies
ce=(-S train.loss=ce -S train.cbam=false)
focal=(-S train.loss=focal -S train.focal_gamma=2 -S train.cbam=true -S train.cbam_reduction=16)
recipe() { python -m wafer.tools.recipes "$@"; }  # a named recipe (recipes/<name>.yaml) as -S
# args; key=value after its name replaces the recipe's value, so each key is named once

# name -> overrides. Input size and stem: 32 px with the compact stem is the CPU default; the
# resolution study keeps the seed's standard ResNet-18 stem and changes only shard.input_px. It ran
# at train.seed=2 (first by accident: see docs/RESULTS.md), next to real-focal-cbam-seed2.
# The real-* runs are the earlier code generation (kept so that their commands stay
# documented: each reproduces at the commit in results/<name>/commit.txt); res96-4ep re-runs
# the one that validation chose among them with the current code (res96-4ep-seed* are its
# other training seeds), and cpu-headline* are the CPU headline recipe's training seeds.
# The param was `shard.size` until commit 0f4c48a (results/*/command.txt say so); it is
# `shard.input_px` now, since DVC's run cache ignores keys named `size`. Every saved run's
# shard.json shows the side its command asked for (scripts/report_results.py checks it).
declare -A runs=(
  [real-ce]="${budget[*]} ${ce[*]} -S shard.input_px=32 -S train.stem=compact"
  [real-focal-cbam]="${budget[*]} ${focal[*]} -S shard.input_px=32 -S train.stem=compact"
  [real-focal-cbam-seed1]="${budget[*]} ${focal[*]} -S shard.input_px=32 -S train.stem=compact -S train.seed=1"
  [real-focal-cbam-seed2]="${budget[*]} ${focal[*]} -S shard.input_px=32 -S train.stem=compact -S train.seed=2"
  [real-res32]="${budget[*]} ${focal[*]} -S shard.input_px=32 -S train.stem=standard -S train.seed=2"
  [real-res48]="${budget[*]} ${focal[*]} -S shard.input_px=48 -S train.stem=standard -S train.seed=2"
  [real-res64]="${budget[*]} ${focal[*]} -S shard.input_px=64 -S train.stem=standard -S train.seed=2"
  [real-ce-res64]="${budget[*]} ${ce[*]} -S shard.input_px=64 -S train.stem=standard -S train.seed=2"
  [real-res96]="${budget[*]} ${focal[*]} -S shard.input_px=96 -S train.stem=standard -S train.seed=2"
  [res96-4ep]="${budget[*]} ${focal[*]} -S shard.input_px=96 -S train.stem=standard -S train.seed=2"
  [res96-4ep-seed0]="${budget[*]} ${focal[*]} -S shard.input_px=96 -S train.stem=standard -S train.seed=0"
  [res96-4ep-seed1]="${budget[*]} ${focal[*]} -S shard.input_px=96 -S train.stem=standard -S train.seed=1"
  [cpu-headline]="$(recipe cpu-headline)"
  [cpu-headline-seed1]="$(recipe cpu-headline) -S train.seed=1"
  [cpu-headline-seed2]="$(recipe cpu-headline) -S train.seed=2"
  # the headline recipe re-run with the current code (issue 23: the screen's budget point and
  # prediction sets; served with bf16 at 8 views, as the recipe said from 442660d until int8 at 4
  # views was adopted) on a CPU with AVX-512 BF16: a recipe group
  # of its own on the results page, compared with the earlier one once it has as many seeds
  [cpu-headline-r2-seed0]="$(recipe cpu-headline) -S train.seed=0"
  [cpu-headline-r2-seed1]="$(recipe cpu-headline) -S train.seed=1"
  [cpu-headline-r2-seed2]="$(recipe cpu-headline) -S train.seed=2"
  # the same recipe in fp32, served in fp32 at 8 views, for a CPU without AVX-512 BF16, where bf16
  # autocast runs at 0.18x fp32 (docs/SERVING.md). Resumable across sessions with WAFER_RESUME_DIR
  # set (docs/TRAINING.md): hours of training each on a 2-core AVX2 CPU.
  [cpu-headline-fp32]="$(recipe cpu-headline) -S train.precision=fp32 -S infer.runtime=eager -S infer.views=8"
  [cpu-headline-fp32-seed1]="$(recipe cpu-headline) -S train.precision=fp32 -S infer.runtime=eager -S infer.views=8 -S train.seed=1"
  [cpu-headline-fp32-seed2]="$(recipe cpu-headline) -S train.precision=fp32 -S infer.runtime=eager -S infer.views=8 -S train.seed=2"
  # the headline recipe with train.ema_warmup (docs/TRAINING.md, "EMA warmup"): the root of a
  # cross-fitting run whose every model warms its EMA up (docs/CROSSFIT.md)
  [cpu-headline-warmup-seed0]="$(recipe cpu-headline) -S train.seed=0 -S train.ema_warmup=true"
  # the same at 128 px (issue 25): the first member of a 128-px seed ensemble, whose size
  # validation chooses against the 96-px one (docs/CROSSFIT.md); about 1.8x the training time
  [cpu-headline-128-warmup-seed0]="$(recipe cpu-headline shard.input_px=128) -S train.seed=0 -S train.ema_warmup=true"
  # and at 160 px (docs/CROSSFIT.md, "Next on a CPU: 160 px"): about 1.6x the training of 128 px
  [cpu-headline-160-warmup-seed0]="$(recipe cpu-headline shard.input_px=160) -S train.seed=0 -S train.ema_warmup=true"
)
# the current generation: both candidate headline recipes at three training seeds each
order=(res96-4ep res96-4ep-seed0 res96-4ep-seed1 cpu-headline cpu-headline-seed1 cpu-headline-seed2)
[ $# -gt 0 ] && order=("$@")

save() {  # copy what the run wrote: metrics, params, command, figures (no real wafer maps)
  local name=$1 dst="$OUT/$1"
  rm -rf "$dst" && mkdir -p "$dst/timing"
  printf '%s\n' "$2" > "$dst/command.txt"
  git rev-parse HEAD > "$dst/commit.txt"
  cp params.yaml metrics/*.json "$dst/"
  # timing files exist only for the stages this run executed: none when every stage was
  # restored from the run cache or already up to date, which the folder then says
  if compgen -G "metrics/timing/*.json" > /dev/null; then
    cp metrics/timing/*.json "$dst/timing/"
  else
    echo "no stage ran in this experiment (all restored or up to date): no timings" > "$dst/timing/NONE.txt"
  fi
  cp plots/confusion.png plots/reliability.png plots/sweep.png plots/train_curves.csv "$dst/"
  # SERVED=1: the served files too (model, calibration, thresholds: about 45 MB), so that a run
  # that takes a place, or is a member a later session builds on, survives the machine; at the
  # paths dvc.yaml names (wafer.config.pipeline), each bound to the model by SHA-256
  if [ -n "${SERVED:-}" ]; then
    mkdir -p "$dst/served"
    local f served='from wafer.config.pipeline import pipeline_paths as p
print(*(p()[k] for k in ("model", "calibration", "thresholds")))'
    for f in $(python -c "$served"); do cp "$f" "$dst/served/"; done
  fi
}

for name in "${order[@]}"; do
  [ -n "${runs[$name]:-}" ] || { echo "unknown run: $name (one of: ${order[*]})" >&2; exit 2; }
  # shellcheck disable=SC2206  # the recipe strings are word-split on purpose
  args=(-n "$name" "${real[@]}" ${runs[$name]})
  cmd="dvc exp run ${args[*]}"
  echo "== $cmd"
  rm -f metrics/timing/*.json
  # `dvc exp run -S` edits params.yaml in place: start each run from the commit's params, so
  # that the recorded command alone reproduces it.
  git checkout -- params.yaml
  dvc exp run "${args[@]}"
  save "$name" "$cmd"
done
mkdir -p "$OUT/exp_show"
dvc exp show --json > "$OUT/exp_show/$(git rev-parse --short HEAD).json"
