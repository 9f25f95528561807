# the stage commands as run (DVC's rendering of dvc.yaml), from a work folder that
# links the repository's stages/ and src/; PYTHONPATH=src
python stages/validate_params.py --params params.yaml --synthetic data/raw/synthetic.npz --out data/params.ok
python stages/ingest.py --params params.yaml --out data/ingested.npz --metrics metrics/ingest.json
python stages/split.py --params params.yaml --ingested data/ingested.npz --out data/split.npz --metrics metrics/split.json
python stages/shard.py --params params.yaml --ingested data/ingested.npz --split data/split.npz --out-dir data/shards --metrics metrics/shard.json
python stages/infer.py --params params.yaml --model models/model.pt --shards data/shards --out data/logits.npz
python stages/calibrate.py --params params.yaml --logits data/logits.npz --out models/calibration.json --metrics metrics/calibrate.json --plots-dir plots/reliability --png plots/reliability.png
python stages/thresholds.py --params params.yaml --logits data/logits.npz --calibration models/calibration.json --out models/thresholds.json --metrics metrics/thresholds.json --curve plots/sweep.csv --png plots/sweep.png --screen-png plots/screen.png --sets-curve plots/sets.csv --sets-png plots/sets.png
python stages/evaluate.py --params params.yaml --logits data/logits.npz --calibration models/calibration.json --thresholds models/thresholds.json --metrics metrics/evaluate.json --confusion-csv plots/confusion.csv --confusion-png plots/confusion.png --predictions data/predictions.csv
