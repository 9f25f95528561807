"""Stage `shard`: resize every map to `shard.input_px` (block-max rule, see wafer.data.shard) and
write per-split uint8 arrays that can be memory-mapped: {train,val,test}_{x,y,rows}.npy
(wafer.data.files).

One-hot encoding into 3 channels happens later, on the training device.
"""

import time
from pathlib import Path

import numpy as np
import typer
from tqdm import tqdm

from wafer.config.params import load_section
from wafer.config.sections import ShardParams
from wafer.core.errors import one_line_errors
from wafer.core.io import write_json, write_timing
from wafer.data.files import Ingested, Shard, SplitFile
from wafer.data.shard import resize_ragged
from wafer.data.split import SPLITS

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section shard)"),
    ingested: Path = typer.Option(...),
    split: Path = typer.Option(...),
    out_dir: Path = typer.Option(...),
    metrics: Path = typer.Option(...),
) -> None:
    size = load_section(params, ShardParams).input_px  # output side in pixels (the seed used 224)
    t0 = time.perf_counter()
    ing = Ingested.load(ingested)
    assignment = SplitFile.load(split).split
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    with tqdm(total=len(assignment), desc=f"shard {size}px", unit="map") as bar:
        for s, name in enumerate(SPLITS):
            rows = np.flatnonzero(assignment == s)
            counts[name] = len(rows)
            x = np.empty((len(rows), size, size), dtype=np.uint8)
            for pos, resized in resize_ragged(ing.flat, ing.shapes, ing.offsets, rows, size):
                x[pos] = resized
                bar.update(len(pos))
            Shard(x, ing.labels[rows].astype(np.int64), rows).save(out_dir, name)
    seconds = time.perf_counter() - t0
    n = len(assignment)
    write_json(metrics, {"input_px": size, "maps": n, "per_split": counts})
    write_timing("shard", {"input_px": size, "seconds": seconds, "maps_per_s": n / seconds})
    print(f"shard: {n} maps at {size}px in {seconds:.1f} s ({n / seconds:.0f} maps/s)")


if __name__ == "__main__":
    app()
