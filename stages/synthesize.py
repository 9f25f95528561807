"""Stage synthesize: WM-811K-like wafer maps in the LSWMD.pkl layout, plus a `patternMask`
column holding each map's ground-truth pattern mask."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from wafer.classes import CLASS_NAMES
from wafer.cli_util import one_line_errors
from wafer.io import atomic_path
from wafer.params import check_args
from wafer.synth import class_mix, generate

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    n_maps: Annotated[
        int, typer.Option("--n_maps", "--n-maps", help="Number of wafer maps.")
    ] = 5000,
    floor: Annotated[
        float, typer.Option("--floor", help="Minimum share of each class in the mix.")
    ] = 0.03,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    out: Annotated[Path, typer.Option("--out", help="Output pickle (LSWMD.pkl layout).")] = Path(
        "data/raw/synthetic.pkl"
    ),
) -> None:
    """Generate synthetic labelled wafer maps and their ground-truth pattern masks."""
    check_args("synthesize", locals())
    start = time.perf_counter()
    df, masks = generate(n_maps, class_mix(floor=floor), seed)
    # The ground-truth pattern masks travel with the maps as an extra column (bool, same shape
    # as waferMap); ingest keeps them for the Grad-CAM localisation check.
    df["patternMask"] = masks
    with atomic_path(out) as tmp:
        df.to_pickle(tmp)
    labels = [str(cell[0, 0]) for cell in df["failureType"]]
    per_class = " ".join(f"{c}={labels.count(c)}" for c in CLASS_NAMES)
    seconds = time.perf_counter() - start
    typer.echo(f"synthesize: {len(df)} maps ({per_class}) in {seconds:.1f}s -> {out}")


if __name__ == "__main__":
    app()
