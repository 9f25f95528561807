#!/usr/bin/env bash
# Paired A/B of train.ema_warmup on real maps: train one model of a finished real run again with
# train.ema_warmup true and nothing else changed (same maps, same seed, so the same initial
# weights, data order and augmentation), and save its validation curve beside the one the run
# recorded (docs/TRAINING.md, "EMA warmup"). The difference is the EMA's alone, with no seed
# noise in it.
#
#   scripts/ema_warmup_ab.sh WORKSPACE MODEL OUT
#
# WORKSPACE: a clone of this repository where the real run ran (its data/shards, params.yaml and,
# for a member, pipelines/crossfit); MODEL: `single` (the root's model, plots/train_curves.csv)
# or a fold number k (cross-fitted member k, pipelines/crossfit/plots/members/k.csv); OUT: the
# folder written (train.json, curves.csv, baseline_curves.csv, root_params.yaml, timing,
# command.txt, machine.txt). The model file itself goes to a temporary folder, not OUT.
# Heavy: one training of the recipe (about 25 min for `single` on a 2-core CPU). Run it alone.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 WORKSPACE single|FOLD OUT" >&2; exit 2; }
ws=$(cd "$1" && pwd)
which=$2
mkdir -p "$3"
out=$(cd "$3" && pwd)
code=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python - "$ws/params.yaml" "$out/root_params.yaml" <<'EOF'
import sys
import yaml
p = yaml.safe_load(open(sys.argv[1]))
p["train"]["ema_warmup"] = True  # the one change; a workspace older than the param lacks it
yaml.safe_dump(p, open(sys.argv[2], "w"), sort_keys=False)
EOF

args=(--params "$out/root_params.yaml" --shards "$ws/data/shards" --model-out "$tmp/model.pt"
  --curves "$out/curves.csv" --metrics "$out/train.json")
if [ "$which" = single ]; then
  baseline=$ws/plots/train_curves.csv
else
  cf=$ws/pipelines/crossfit
  args+=(--folds "$cf/data/folds.npz" --fold "$which" --crossfit-params "$cf/params.yaml")
  baseline=$cf/plots/members/$which.csv
fi
cp "$baseline" "$out/baseline_curves.csv"
printf 'python stages/train.py %s\n' "${args[*]}" | sed "s|$tmp|<temporary folder>|" > "$out/command.txt"
{
  echo "code: $(git -C "$code" rev-parse HEAD)$(git -C "$code" diff --quiet HEAD -- src stages || echo ' (with uncommitted changes)')"
  echo "workspace: $ws at $(git -C "$ws" rev-parse HEAD)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), family $(lscpu | sed -n 's/^CPU family: *//p'), $(nproc) cores, torch capability $(python -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')"
  echo "started: $(date -u +%FT%TZ)"
} > "$out/machine.txt"
(cd "$tmp" && PYTHONPATH="$code/src" python "$code/stages/train.py" "${args[@]}")
mkdir -p "$out/timing" && cp "$tmp"/metrics/timing/*.json "$out/timing/"
echo "finished: $(date -u +%FT%TZ)" >> "$out/machine.txt"
