"""Stage `ingest`: LSWMD-format pickle -> validated, compact intermediate (data/ingested.npz).

Reads Kaggle's legacy LSWMD.pkl, the real subset (.pkl.xz) or the synthetic pickle; keeps the
labeled rows; validates every map; writes one concatenated uint8 buffer + shapes + labels +
metadata, and metrics/ingest.json. Pickles run code when loaded: use trusted files only.
"""

import time
from pathlib import Path

import typer

from wafer.cli_util import one_line_errors
from wafer.ingest import read_lswmd, sha256_file, validate_frame
from wafer.io import save_npz, write_json, write_timing
from wafer.params import check_args

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    input: Path = typer.Option(Path("data/raw/synthetic.pkl"), help="LSWMD-format pickle"),
    on_invalid: str = typer.Option(
        "drop", "--on_invalid", "--on-invalid", help="invalid rows: 'drop' (counted) or 'fail'"
    ),
    out: Path = typer.Option(Path("data/ingested.npz"), help="compact intermediate"),
    metrics: Path = typer.Option(Path("metrics/ingest.json")),
) -> None:
    check_args("ingest", locals())
    t0 = time.perf_counter()
    digest = sha256_file(input)
    frame = read_lswmd(input)
    ing = validate_frame(frame, input, on_invalid=on_invalid)
    del frame
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
