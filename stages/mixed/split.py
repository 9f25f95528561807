"""Stage `split` of the mixed-type pipeline: train/val/test by groups of identical (or rotated /
flipped) maps, stratified on the pattern code (wafer.mixed.split); `split.seed` is independent
of `train.seed`. Written as the 9-class pipeline's split file (wafer.data.files.SplitFile)."""

from pathlib import Path

import typer

from wafer.config.mixed import MixedSplitParams
from wafer.config.params import load_section
from wafer.core.errors import one_line_errors
from wafer.core.io import write_json
from wafer.data.files import SplitFile
from wafer.mixed.data import MixedSet
from wafer.mixed.split import mixed_split, split_report

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    ingested: Path = typer.Option(...),
    out: Path = typer.Option(...),
    metrics: Path = typer.Option(...),
) -> None:
    p = load_section(params, MixedSplitParams)
    data = MixedSet.load(ingested)
    split, groups, stats = mixed_split(data, p.val, p.test, p.seed)
    SplitFile(split, groups).save(out)
    report = split_report(split, data, groups)
    write_json(metrics, {"seed": p.seed} | report | stats)
    sizes = ", ".join(f"{k} {report[k]['total']}" for k in ("train", "val", "test"))
    print(f"split: {sizes}; {stats['exact_duplicate_groups']} groups of exact duplicates")


if __name__ == "__main__":
    app()
