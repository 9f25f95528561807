"""Stage `ingest`: LSWMD-format pickle or ragged-maps .npz -> validated, compact intermediate
(dvc.yaml's paths.ingested).

Reads Kaggle's legacy LSWMD.pkl, the real subset (.pkl.xz), the synthetic pickle, or the
ragged-maps .npz that `wafer convert` makes of any of them; keeps the labeled rows; validates
every map; writes one concatenated uint8 buffer + shapes + labels + metadata, and
metrics/ingest.json. Pickles run code when loaded: naming one in `ingest.input` is trusting it;
the converted .npz runs no code.
"""

import time
from pathlib import Path

import typer

from wafer.config.params import load_section
from wafer.config.sections import IngestParams
from wafer.core.errors import one_line_errors
from wafer.core.io import save_npz, write_json, write_timing
from wafer.data.ingest import ingest_file, sha256_file

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section ingest)"),
    out: Path = typer.Option(..., help="compact intermediate"),
    metrics: Path = typer.Option(...),
) -> None:
    p = load_section(params, IngestParams)
    input = Path(p.input)  # a ragged-maps .npz, or an LSWMD pickle with ingest.trust_pickle
    t0 = time.perf_counter()
    digest = sha256_file(input)
    ing = ingest_file(input, p.on_invalid, p.max_side, p.trust_pickle)
    save_npz(out, **ing.arrays())
    seconds = time.perf_counter() - t0
    for reason, row in ing.first_dropped.items():
        print(f"dropped {ing.dropped[reason]} row(s) of {input} as {reason} (first: row {row})")
    write_json(
        metrics,
        {
            "input": str(input),
            "input_sha256": digest,
            "rows_read": ing.rows_read,
            "rows_kept": len(ing.labels),
            "per_class": ing.per_class(),
            "dropped": ing.dropped,
        },
    )
    write_timing("ingest", {"seconds": seconds, "maps_per_s": ing.rows_read / seconds})
    print(f"ingest: kept {len(ing.labels)} of {ing.rows_read} rows in {seconds:.1f} s -> {out}")


if __name__ == "__main__":
    app()
