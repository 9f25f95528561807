"""Rebuild a saved run's served ensemble checkpoint from its member files, byte for byte.

An ensemble checkpoint holds every member's weights (3 x 45 MB at 224 px), so a saved run
(``results/crossfit/<name>/served/``) keeps the member files and the served calibration and
thresholds instead, and this script rebuilds ``model.pt`` exactly as the pipeline's `ensemble`
stage built it (wafer.model.members.served_ensemble: the same files give the same bytes). The
result is written only when its SHA-256 is the one the served calibration was fit on, so what
it writes is the model the saved figures describe, or nothing::

    python scripts/build_ensemble.py --params results/crossfit/<name>/params.yaml \
        --root-model results/gpu/seed-224/served/model.pt \
        --seeds results/crossfit/<name>/served/seeds \
        --calibration results/crossfit/<name>/served/calibration.json \
        --out /tmp/ensemble/model.pt
    wafer predict maps.npz -o preds.csv --model /tmp/ensemble/model.pt \
        --calibration results/crossfit/<name>/served/calibration.json \
        --thresholds results/crossfit/<name>/served/thresholds.json

(served without the root pipeline's novelty index, which was built for another model:
``wafer predict`` says so in one warning line.)

The member files' names matter (the checkpoint records them): the root model is ``model.pt``
and a seed member ``<seed>.pt``, as in the pipeline.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from wafer.config.crossfit import EnsembleParams
from wafer.config.params import load_section
from wafer.core.errors import UsageError, WaferInputError
from wafer.core.io import atomic_path
from wafer.model.members import served_ensemble
from wafer.serving.files import Calibration


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, required=True, help="the run's params (ensemble)")
    ap.add_argument("--root-model", type=Path, required=True, help="the root's model (model.pt)")
    ap.add_argument("--seeds", type=Path, required=True, help="folder of the seed members")
    ap.add_argument("--members", type=Path, help="folder of the cross-fitted members (folds)")
    ap.add_argument("--folds", type=Path, help="the folds file (ensemble.members: folds)")
    ap.add_argument("--calibration", type=Path, required=True, help="the served calibration")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    try:
        ensemble = load_section(a.params, EnsembleParams)
        want = Calibration.load(a.calibration).model_sha256
        ckpt, _ = served_ensemble(
            ensemble, root_model=a.root_model, seeds=a.seeds, members=a.members, folds=a.folds
        )
    except (WaferInputError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or unreadable file: its name and the reason, one line
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    data = ckpt.to_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        print(
            f"error: {a.calibration}: fit on model {want[:12]}..., but these member files build "
            f"{got[:12]}...: not the served ensemble (nothing written)",
            file=sys.stderr,
        )
        return 2
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.out) as tmp:
        tmp.write_bytes(data)
    print(f"{a.out}: the served ensemble, SHA-256 {got}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
