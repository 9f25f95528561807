"""Stage `synthesize` of the mixed-type pipeline: the embedded default data, MixedWM38-like maps
with up to four superposed patterns and a mask per label (wafer.mixed.synth), in the layout
the ingest stage reads (wafer.mixed.data)."""

from pathlib import Path

import typer

from wafer.config.mixed import MixedSynthesizeParams
from wafer.config.params import load_section
from wafer.core.errors import one_line_errors
from wafer.mixed.synth import generate_mixed

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    out: Path = typer.Option(..., "--out"),
) -> None:
    p = load_section(params, MixedSynthesizeParams)
    data = generate_mixed(p.n_maps, p.side, p.rare_share, p.seed)
    data.save(out)
    print(f"synthesize: {len(data)} maps of {p.side} x {p.side} dies -> {out}")


if __name__ == "__main__":
    app()
