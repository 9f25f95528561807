"""Stage `folds` of the cross-fitting pipeline: K folds over the root pipeline's training split
(wafer.data.crossfit.assign_folds; K = the length of ``crossfit.folds``, shuffled by
``crossfit.seed``), whole split-stage groups per fold, stratified by class. Validation and test
are not folded. Writes the folds file and the maps per fold and class."""

from pathlib import Path

import numpy as np
import typer

from wafer.config.crossfit import CrossfitParams
from wafer.config.params import load_section
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import write_json
from wafer.data.crossfit import FoldsFile, assign_folds
from wafer.data.files import SplitFile, load_shard

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section crossfit)"),
    split: Path = typer.Option(..., "--split", help="the root pipeline's split file"),
    shards: Path = typer.Option(..., "--shards", help="the root pipeline's shards"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, CrossfitParams)
    train = load_shard(shards, "train")
    groups = SplitFile.load(split).groups
    if len(train.rows) and int(train.rows.max()) >= len(groups):
        raise WaferInputError(split, "holds fewer rows than the training shard names")
    try:
        fold = assign_folds(train.y, groups[train.rows], len(p.folds), p.seed)
    except ValueError as exc:
        raise WaferInputError(shards, str(exc)) from None
    FoldsFile(fold, train.rows, p.seed).save(out)
    per_fold = {
        str(k): {
            "maps": int((fold == k).sum()),
            "per_class": {
                c: int(((fold == k) & (train.y == i)).sum()) for i, c in enumerate(CLASS_NAMES)
            },
        }
        for k in range(len(p.folds))
    }
    write_json(metrics, {"k": len(p.folds), "training_maps": int(len(fold)), "folds": per_fold})
    sizes = np.bincount(fold, minlength=len(p.folds)).tolist()
    print(f"folds: {len(p.folds)} folds over {len(fold)} training maps, sizes {sizes}")


if __name__ == "__main__":
    app()
