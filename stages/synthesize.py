"""Stage synthesize: WM-811K-like wafer maps in the LSWMD.pkl layout, plus a `patternMask`
column holding each map's ground-truth pattern mask, written as the ragged-maps .npz that
`wafer convert` makes of such a frame: the default pipeline never unpickles anything."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import typer

from wafer.config.params import load_section
from wafer.config.sections import SynthesizeParams
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import one_line_errors
from wafer.core.io import save_npz
from wafer.data.ingest import ragged_npz_arrays
from wafer.data.synth import class_mix, generate

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section synthesize)"),
    out: Path = typer.Option(..., "--out", help="output ragged-maps .npz (LSWMD.pkl columns)"),
) -> None:
    """Generate synthetic labelled wafer maps and their ground-truth pattern masks."""
    p = load_section(params, SynthesizeParams)
    start = time.perf_counter()
    df, masks = generate(p.n_maps, class_mix(floor=p.floor), p.seed, unlabeled=p.unlabeled)
    # The ground-truth pattern masks travel with the maps as an extra column (bool, same shape
    # as waferMap); ingest keeps them for the Grad-CAM localisation check.
    df["patternMask"] = masks
    arrays, _ = ragged_npz_arrays(df, out)
    save_npz(out, **arrays)
    labels = Counter(str(cell[0, 0]) for cell in df["failureType"] if cell.size)
    per_class = " ".join(f"{c}={labels[c]}" for c in CLASS_NAMES)
    seconds = time.perf_counter() - start
    typer.echo(
        f"synthesize: {len(df)} maps, {p.unlabeled} unlabeled ({per_class}) in {seconds:.1f}s"
        f" -> {out}"
    )


if __name__ == "__main__":
    app()
