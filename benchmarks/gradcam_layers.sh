#!/usr/bin/env bash
# Localisation of Grad-CAM / Grad-CAM++ by target layer, on the current pipeline outputs (run
# after `dvc repro`). Writes one metrics file per (layer, method) to $OUT (default
# docs/gradcam_layers/) and prints a table: energy share on the pattern and pointing-game hit rate,
# trained model vs an untrained one of the same architecture, with the chance level.
set -euo pipefail
OUT=${OUT:-docs/gradcam_layers}
mkdir -p "$OUT"
tmp=$(mktemp -d)
for layer in layer4 layer3 layer2; do
  for method in gradcam gradcam++; do
    # params.yaml with this layer and method; the stage's input paths from dvc.yaml's `paths`
    python - "$tmp/params.yaml" "$layer" "$method" <<'PY'
import sys, yaml
params = yaml.safe_load(open("params.yaml"))
params["gradcam"].update(layer=sys.argv[2], method=sys.argv[3])
yaml.safe_dump(params, open(sys.argv[1], "w"), sort_keys=False)
PY
    read -r model shards ingested predictions < <(python -c 'from wafer.config.pipeline import pipeline_paths as p; d = p(); print(d["model"], d["shards"], d["ingested"], d["predictions"])')
    python stages/gradcam.py --params "$tmp/params.yaml" --model "$model" --shards "$shards" \
      --ingested "$ingested" --predictions "$predictions" --out-dir "$tmp/$layer" \
      --metrics "$OUT/${layer}_${method}.json" > /dev/null
  done
done
rm -rf "$tmp"
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
print("| layer | method | CAM cells | energy share trained / untrained | pointing hit trained / untrained | chance |")
print("|---|---|---|---|---|---|")
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    d = json.loads(f.read_text())
    t, u = d["trained"], d["untrained"]
    h, w = d["cam_size"]
    print(f"| {d['layer']} | {d['method']} | {h}x{w} | {t['mean_energy_share']:.3f} / "
          f"{u['mean_energy_share']:.3f} | {t['mean_pointing_hit']:.3f} / "
          f"{u['mean_pointing_hit']:.3f} | {t['mean_chance']:.3f} |")
PY
