#!/usr/bin/env bash
# The one command of a GPU lease (issue 27): the seed's 224-px recipe, seed-224, alone, through
# every stage to evaluate, with a time limit that counts training only, then (in whatever is
# left of the command's time) the first-steps probe that says where the first epoch's time goes.
#
#   run(command="scripts/gpu_lease.sh", carry=["data/external"], timeout_s=600)   # the lease
#   scripts/gpu_lease.sh --tiny     # the CPU rehearsal: synthetic maps, 32 px, same code paths
#   python -m wafer.tools.returned <files_at>          # then, here: results/gpu/seed-224/
#
# SEED=1 (or 2, ...): a seed member of the 224-px seed ensemble instead (issue 25,
# docs/CROSSFIT.md "Next on a GPU"): the same recipe, split and limits at train.seed=SEED,
# results/gpu/seed-224-seedSEED/, and no first-steps probe (the first lease measured it):
#   run(command="SEED=1 scripts/gpu_lease.sh", carry=["data/external"], timeout_s=600)
#
# Time (one 10-minute command; the machine's start is not in it): the whole run is bounded by
# --time-limit 575 s, and --after-train keeps 160 s of it for what follows training (train's own
# start-up and end, infer, calibrate, thresholds, evaluate: ~60 s on an H200 by the first
# lease's rates), so training gets what the data stages leave, at most --train-time-limit 400 s.
# train.epochs=30: at the first lease's 3,659 maps/s an epoch of the 37,028 training maps is
# ~10 s plus validation, so 30 epochs and the first epoch's start-up fit ~360 s and the cosine
# schedule runs to its end; the time limit is the safety net. gradcam (not needed to evaluate)
# and index (78 MB, more than the tool returns: rebuilt here from the returned model) are left
# out. Patience stays the recipe's 10.
#
# $OUT (set on the device machine) receives seed-224.tar.gz (results), the checkpoint in 15-MiB
# parts, seed-224.log and first_steps_{on,off}.json: 7 files, about 50 MiB.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-lease-out}
mkdir -p "$OUT"
export OUT
name=seed-224 member=()
if [ -n "${SEED:-}" ]; then
  [[ "$SEED" =~ ^[1-9][0-9]*$ ]] || { echo "SEED=$SEED: a training seed other than 0" >&2; exit 2; }
  name=seed-224-seed$SEED member=(-S "train.seed=$SEED" --name "$name")
fi
if [ "${1:-}" = "--tiny" ]; then
  data=(--synthetic -S synthesize.n_maps=600 -S shard.input_px=32 --out "/tmp/gpu-lease-tiny/$name")
  limits=(--time-limit 240 --after-train 60 --train-time-limit 60)
  probe=(--size 32 --steps 3)
else
  data=()
  limits=(--time-limit 575 --after-train 160 --train-time-limit 400)
  probe=()
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
scripts/gpu_run.sh seed-224 "${data[@]}" -S train.epochs=30 "${member[@]}" --skip gradcam \
  --skip index "${limits[@]}" --return-file data/logits.npz 2>&1 | tee "$OUT/$name.log" |
  grep -v 'map/s\]'
status=${PIPESTATUS[0]}
[ -n "${SEED:-}" ] && exit "$status"  # a member: the probe was measured by the first lease
for b in on off; do  # each in its own process: each pays its own start-up; within 590 s in all
  left=$((590 - SECONDS))
  [ "$left" -ge 10 ] || { echo "first_steps $b: skipped, ${left} s left"; continue; }
  timeout "$((left < 40 ? left : 40))" env PYTHONPATH=src "${PYTHON:-python3}" \
    benchmarks/first_steps.py --benchmark "$b" "${probe[@]}" --out "$OUT/first_steps_$b.json" |
    tail -3
done
exit "$status"
