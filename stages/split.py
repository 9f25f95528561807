"""Stage `split`: persisted train/val/test assignment (data/split.npz) + metrics/split.json.

`split.seed` is independent of `train.seed`. Maps identical up to a rotation or flip, and (with
`--group_lots`) wafers of one lot, always share a split (wafer.split). With `--use-original`,
WM-811K's own trianTestLabel split is used (val carved from Training; a Training map with a twin
in Test moves to test). With `--holdout CLASS` (repeatable) every map of that class goes to
test, for measuring novelty detection on a class the model never saw (wafer.split.hold_out).
"""

from pathlib import Path

import numpy as np
import typer

from wafer.cli_util import one_line_errors
from wafer.ingest import Ingested
from wafer.io import WaferInputError, save_npz, write_json
from wafer.params import check_args
from wafer.split import (
    group_ids,
    hold_out,
    original_split,
    split_report,
    stratified_group_split,
)

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    seed: int = typer.Option(20150101, help="split seed (independent of train.seed)"),
    val: float = typer.Option(0.1, help="validation share"),
    test: float = typer.Option(0.2, help="test share"),
    use_original: bool = typer.Option(
        False, "--use_original/--no-use_original", help="use the trianTestLabel split"
    ),
    group_lots: bool = typer.Option(
        True, "--group_lots/--no-group_lots", help="keep the wafers of one lot together"
    ),
    holdout: list[str] = typer.Option(
        [], "--holdout", help="class left out of train and val (all its maps go to test)"
    ),
    ingested: Path = typer.Option(Path("data/ingested.npz")),
    out: Path = typer.Option(Path("data/split.npz")),
    metrics: Path = typer.Option(Path("metrics/split.json")),
) -> None:
    check_args("split", locals())
    ing = Ingested.load(ingested)
    groups, stats = group_ids(ing.flat, ing.shapes, ing.offsets, ing.lot if group_lots else None)
    if use_original:
        try:
            split, moved = original_split(ing.orig_split, ing.labels, groups, val, seed)
        except ValueError as exc:
            raise WaferInputError(ingested, f"--use-original: {exc}") from None
        stats |= moved
    else:
        split = stratified_group_split(ing.labels, groups, (1 - val - test, val, test), seed)
    extra = {}
    if holdout:  # recorded in the split file too: the index stage scores them as unknown
        split, held = hold_out(split, ing.labels, groups, holdout)
        stats |= held
        extra["holdout"] = np.array(holdout)
    save_npz(out, split=split, groups=groups, **extra)
    report = split_report(split, ing.labels, groups)
    write_json(
        metrics,
        {"seed": seed, "use_original": use_original, "group_lots": group_lots} | report | stats,
    )
    sizes = ", ".join(f"{k} {report[k]['total']}" for k in ("train", "val", "test"))
    print(
        f"split: {sizes}; {stats['groups']} groups, {stats['multi_map_groups']} with several maps "
        f"({stats['dihedral_duplicate_groups']} of rotated/flipped or identical twins, "
        f"{stats['lots']} lots); rows {len(split)}"
    )


if __name__ == "__main__":
    app()
