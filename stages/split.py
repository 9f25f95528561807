"""Stage `split`: persisted train/val/test assignment (data/split.npz) + metrics/split.json.

`split.seed` is independent of `train.seed`; identical maps always share a split. With
`--use-original`, WM-811K's own trianTestLabel split is used (val carved from Training).
"""

from pathlib import Path

import typer

from wafer.cli_util import one_line_errors
from wafer.ingest import Ingested
from wafer.io import WaferInputError, save_npz, write_json
from wafer.params import check_args
from wafer.split import (
    duplicate_groups,
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
    ingested: Path = typer.Option(Path("data/ingested.npz")),
    out: Path = typer.Option(Path("data/split.npz")),
    metrics: Path = typer.Option(Path("metrics/split.json")),
) -> None:
    check_args("split", locals())
    ing = Ingested.load(ingested)
    groups = duplicate_groups(ing.flat, ing.shapes, ing.offsets)
    if use_original:
        try:
            split = original_split(ing.orig_split, ing.labels, groups, val, seed)
        except ValueError as exc:
            raise WaferInputError(ingested, f"--use-original: {exc}") from None
    else:
        split = stratified_group_split(ing.labels, groups, (1 - val - test, val, test), seed)
    save_npz(out, split=split, groups=groups)
    report = split_report(split, ing.labels, groups)
    write_json(metrics, {"seed": seed, "use_original": use_original} | report)
    sizes = ", ".join(f"{k} {report[k]['total']}" for k in ("train", "val", "test"))
    print(f"split: {sizes}; {report['duplicate_groups']} duplicate groups; rows {len(split)}")


if __name__ == "__main__":
    app()
