"""Stage `split`: persisted train/val/test assignment (wafer.data.files.SplitFile) and its metrics.

`split.seed` is independent of `train.seed`. Maps identical up to a rotation or flip, and
(with `split.group_lots`) wafers of one lot, always share a split (wafer.data.split). With
`split.use_original`, WM-811K's own trianTestLabel split is used (val carved from Training; a
Training map with a twin in Test moves to test). With `split.holdout: [CLASS, ...]` every map
of that class goes to test, for measuring novelty detection on a class the model never saw
(wafer.data.split.hold_out).
"""

from pathlib import Path

import typer

from wafer.config.params import load_section
from wafer.config.sections import SplitParams
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import write_json
from wafer.data.files import Ingested, SplitFile
from wafer.data.split import (
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
    params: Path = typer.Option(..., "--params", help="params.yaml (section split)"),
    ingested: Path = typer.Option(...),
    out: Path = typer.Option(...),
    metrics: Path = typer.Option(...),
) -> None:
    p = load_section(params, SplitParams)
    ing = Ingested.load(ingested)
    groups, stats = group_ids(ing.flat, ing.shapes, ing.offsets, ing.lot if p.group_lots else None)
    if p.use_original:
        try:
            split, moved = original_split(ing.orig_split, ing.labels, groups, p.val, p.seed)
        except ValueError as exc:
            raise WaferInputError(ingested, f"split.use_original: {exc}") from None
        stats |= moved
    else:
        split = stratified_group_split(
            ing.labels, groups, (1 - p.val - p.test, p.val, p.test), p.seed
        )
    if p.holdout:  # recorded in the split file too: the index stage scores them as unknown
        split, held = hold_out(split, ing.labels, groups, p.holdout)
        stats |= held
    SplitFile(split, groups, tuple(p.holdout)).save(out)
    report = split_report(split, ing.labels, groups)
    write_json(
        metrics,
        {"seed": p.seed, "use_original": p.use_original, "group_lots": p.group_lots}
        | report
        | stats,
    )
    sizes = ", ".join(f"{k} {report[k]['total']}" for k in ("train", "val", "test"))
    print(
        f"split: {sizes}; {stats['groups']} groups, {stats['multi_map_groups']} with several maps "
        f"({stats['dihedral_duplicate_groups']} of rotated/flipped or identical twins, "
        f"{stats['lots']} lots); rows {len(split)}"
    )


if __name__ == "__main__":
    app()
