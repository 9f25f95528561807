#!/usr/bin/env bash
# The two headline recipes on real WM-811K maps, as named DVC experiments, at a CPU-affordable
# size. Run from the repository root (or a clone of it); each run's params, metrics and figures
# are copied to $OUT/<name>/ so that they survive without the experiment refs.
#
#   DATA=../shared/data/wm811k-subset/LSWMD-subset.pkl.xz OUT=docs/real scripts/real_experiments.sh
set -euo pipefail
DATA=${DATA:-../shared/data/wm811k-subset/LSWMD-subset.pkl.xz}
OUT=${OUT:-docs/real}
EPOCHS=${EPOCHS:-5}
SIZE=${SIZE:-32}
common=(-S "ingest.input=$DATA" -S "shard.size=$SIZE" -S train.stem=compact
        -S "train.epochs=$EPOCHS" -S "train.patience=$EPOCHS")

save() {
  local name=$1 dst="$OUT/$1"
  mkdir -p "$dst"
  cp params.yaml metrics/*.json "$dst/"
  mkdir -p "$dst/timing" && cp metrics/timing/*.json "$dst/timing/"
  cp plots/confusion.png plots/reliability.png plots/sweep.png plots/train_curves.csv "$dst/"
  # (not the Grad-CAM report: it shows real wafer maps, which stay out of the repository)
}

dvc exp run -n real-ce "${common[@]}" -S train.loss=ce -S train.cbam=false
save real-ce
dvc exp run -n real-focal-cbam "${common[@]}" -S train.loss=focal -S train.focal_gamma=2 \
  -S train.cbam=true -S train.cbam_reduction=16
save real-focal-cbam
dvc exp show --json > "$OUT/exp_show.json"
