#!/usr/bin/env bash
# Run a named recipe's stages without DVC (for the GPU machine of the `device` tool, which has
# no dvc): wafer.tools.run_stages renders dvc.yaml's commands as DVC does and runs them in a scratch
# folder; the results (metrics, timing, plots, params, command, commit, env.json, log) go to
# results/gpu/<name>/, and, where $OUT is set (the device machine), also to $OUT/<name>.tar.gz
# (the tool returns at most 8 files).
#
#   scripts/gpu_run.sh seed-224                                  # the real subset, 40 epochs
#   scripts/gpu_run.sh seed-224 -S train.epochs=1 --name seed-224-1ep --skip gradcam
#   scripts/gpu_run.sh seed-224 --dry-run                        # print the commands
#   python -m wafer.tools.run_stages --help                            # every option
#
# Data: data/external/LSWMD-subset.pkl.xz (git-ignored; carry it to the device machine), or
# --data PATH. Env: PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
args=("$@")
[ -n "${OUT:-}" ] && args+=(--archive-dir "$OUT")
exec "${PYTHON:-python3}" -m wafer.tools.run_stages "${args[@]}"
