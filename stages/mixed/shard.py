"""Stage `shard` of the mixed-type pipeline: every map resized to `shard.input_px` with the
9-class pipeline's block-max rule (wafer.data.shard.resize_stack) and written per split as its
shards (wafer.data.files.Shard; here ``y`` is the (N, 8) multi-hot target)."""

from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_section
from wafer.config.sections import ShardParams
from wafer.core.errors import one_line_errors
from wafer.core.io import write_json
from wafer.data.files import Shard, SplitFile
from wafer.data.shard import resize_stack
from wafer.data.split import SPLITS
from wafer.mixed.data import MixedSet

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    ingested: Path = typer.Option(...),
    split: Path = typer.Option(...),
    out_dir: Path = typer.Option(...),
    metrics: Path = typer.Option(...),
) -> None:
    size = load_section(params, ShardParams).input_px
    data = MixedSet.load(ingested)
    assignment = SplitFile.load(split).split
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for s, name in enumerate(SPLITS):
        rows = np.flatnonzero(assignment == s)
        counts[name] = len(rows)
        x = (
            resize_stack(data.maps[rows], size)
            if len(rows)
            else np.zeros((0, size, size), dtype=np.uint8)
        )
        Shard(x, data.labels[rows].astype(np.uint8), rows.astype(np.int64)).save(out_dir, name)
    write_json(metrics, {"input_px": size, "maps": len(assignment), "per_split": counts})
    print(f"shard: {len(assignment)} maps at {size}px")


if __name__ == "__main__":
    app()
